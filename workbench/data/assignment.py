"""Deterministic, hash-based assignment of units to variants, the same in numpy and in the engine.

API (stable; ``wb.assign`` is :func:`assign`)::

    assign(unit_ids, experiment, weights, seed=0, *, traffic=1.0, namespace=None,
           assigned_at=None) -> DataFrame          # experiment_id, user_id, variant, assigned_at
    assign_expr(table, experiment, weights, seed=0, *, unit_column="user_id", traffic=1.0,
                namespace=None, assigned_at=None) -> ibis Table   # same columns, in the engine
    variants_table(table, experiment, weights, seed=0, *, unit_column="user_id", traffic=1.0,
                   namespace=None, name="variant") -> ibis Table: + a variant column, NULL outside
    variants_numpy(unit_ids, experiment, weights, seed=0, *, traffic=1.0, namespace=None)
        -> object array, None for units outside the experiment
    experiments_frame(experiment, weights, start_date, end_date) -> DataFrame  # experiments rows
    write(rows, con, table="assignments")            # insert (or create) a table of the source
    Namespace(name, {experiment: (lo, hi), ...});  Namespace.allocate(name, {experiment: share})

``weights``: ``{variant: weight}`` (or ``"control=0.5,treatment=0.5"``), in arm order, any
positive sum (normalised). The control is the variant named ``control``, else the first.

Three independent draws of :func:`workbench.data.hashing.hash_numpy` / ``hash_expr``, each
``h in [0, P)``, ``P = 2^31 - 1``, with ``k(name)`` the MD5 key of a name:

- namespace (only with one): ``h_ns = hash(unit, k(namespace), 0, ASSIGN_NAMESPACE)``; the unit
  is eligible when ``round(lo P) <= h_ns < round(hi P)``. It depends on the namespace alone, so
  experiments given disjoint slices ``[lo, hi)`` of one namespace never share a unit.
- traffic: ``h_t = hash(unit, k(experiment), seed, ASSIGN_TRAFFIC)``; in the experiment when
  eligible and ``h_t < round(traffic P)``. Raising ``traffic`` only adds units.
- arm: ``h_a = hash(unit, k(experiment), seed, ASSIGN_ARM)``; arm ``j`` when
  ``c_{j-1} <= h_a < c_j`` with ``c_j = round(P sum_{i<=j} w_i / sum w)``
  (:func:`~workbench.data.hashing.thresholds`). It does not depend on ``traffic``: a ramp
  10% -> 25% -> 50% -> 100% never changes the variant of a unit already in.

Changing weights moves the cut points ``c_j`` only: a unit changes arm iff its ``h_a`` lies
between an old and a new cut point, so (arms in a fixed order) the share of units that move is
``sum_j |c_j - c'_j| / P`` at most (50/50 -> 60/40 moves 10% of units, from the second arm to the
first); appending an arm with weight ``w`` takes its units from the arms before it. Stable across
weight changes are therefore only units far from the cut points; for a split change mid-test,
analyse the phases separately. Changing ``seed`` or the experiment id re-draws everything.

Unit ids: integers (any engine; ``id mod P`` is hashed, so ids that differ by a multiple of P
share their draws) or strings (the MD5 key: the first 8 hex digits of ``md5(utf-8 text)``, equal
in Python, DuckDB and Spark). The ``user_id`` column of the returned rows keeps the ids as given.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.data.hashing import (
    ASSIGN_ARM,
    ASSIGN_NAMESPACE,
    ASSIGN_TRAFFIC,
    PRIME,
    hash_numpy,
    name_key,
    string_key_numpy,
    thresholds,
)
from workbench.errors import DataError, ParameterError

CONTROL = "control"
COLUMNS = ("experiment_id", "user_id", "variant", "assigned_at")
EXPERIMENT_COLUMNS = ("experiment_id", "variant", "planned_weight", "is_control", "start_date",
                      "end_date")


# --- parameters -----------------------------------------------------------------------------

def parse_weights(weights: Any) -> dict[str, float]:
    """``{variant: weight}`` from a mapping, pairs or ``"a=0.5,b=0.5"``; normalised to sum 1.

    Raises
    ------
    ParameterError
        Naming ``weights``: empty, a duplicate or empty variant name, a weight that is not a
        finite number >= 0, or weights whose sum is not positive.
    """
    if isinstance(weights, str):
        pairs = []
        for part in (p.strip() for p in weights.split(",") if p.strip()):
            name, sep, value = part.partition("=")
            if not sep:
                raise ParameterError(f"weights: {part!r} is not 'variant=weight' "
                                     f"(e.g. 'control=0.5,treatment=0.5')")
            try:
                pairs.append((name.strip(), float(value)))
            except ValueError:
                raise ParameterError(f"weights: the weight of {name.strip()!r} is not a number, "
                                     f"got {value.strip()!r}") from None
    elif isinstance(weights, Mapping):
        pairs = list(weights.items())
    elif isinstance(weights, Sequence) and all(
            isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2 for p in weights):
        pairs = [tuple(p) for p in weights]
    else:
        raise ParameterError(f"weights must be a mapping {{variant: weight}}, pairs or "
                             f"'a=0.5,b=0.5', got {weights!r}")
    if not pairs:
        raise ParameterError("weights: no variant given")
    out: dict[str, float] = {}
    for name, w in pairs:
        if not isinstance(name, str) or not name:
            raise ParameterError(f"weights: variant names must be non-empty strings, got {name!r}")
        if name in out:
            raise ParameterError(f"weights: variant {name!r} is given twice")
        if isinstance(w, bool) or not isinstance(w, int | float | np.integer | np.floating) \
                or not math.isfinite(w) or w < 0:
            raise ParameterError(f"weights: the weight of {name!r} must be a finite number >= 0, "
                                 f"got {w!r}")
        out[name] = float(w)
    total = sum(out.values())
    if not total > 0:
        raise ParameterError(f"weights must sum to a positive number, got {total:g} ({out})")
    return {k: v / total for k, v in out.items()}


def control_of(weights: Mapping[str, float]) -> str:
    """The baseline: the variant named ``control`` if there is one, else the first."""
    return CONTROL if CONTROL in weights else next(iter(weights))


def _check_experiment(experiment: Any) -> str:
    if not isinstance(experiment, str) or not experiment.strip():
        raise ParameterError(f"experiment must be a non-empty string, got {experiment!r}")
    return experiment


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def _check_traffic(traffic: Any) -> float:
    if isinstance(traffic, bool) or not isinstance(traffic, int | float | np.integer | np.floating) \
            or not (0 < traffic <= 1):
        raise ParameterError(f"traffic must be a share in (0, 1], got {traffic!r}")
    return float(traffic)


def _check_share(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not (0 <= value <= 1):
        raise ParameterError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


# --- namespaces -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Namespace:
    """A layer of mutually exclusive experiments: each gets a slice ``[lo, hi)`` of the
    namespace's hash space (the unit's ``h_ns / P``); slices may not overlap.

    >>> ns = Namespace("checkout", {"redesign": (0.0, 0.5), "shipping_banner": (0.5, 1.0)})
    >>> ns = Namespace.allocate("checkout", {"redesign": 0.5, "shipping_banner": 0.3})
    >>> wb.assign(ids, "redesign", "control=0.5,treatment=0.5", namespace=ns)

    Raises
    ------
    ParameterError
        Naming ``namespace``: an empty name, a slice outside ``[0, 1]`` or empty, two slices
        that overlap.
    """

    name: str
    slices: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError(f"namespace: the name must be a non-empty string, "
                                 f"got {self.name!r}")
        clean = {}
        for exp, sl in dict(self.slices).items():
            if not (isinstance(sl, Sequence) and len(sl) == 2):
                raise ParameterError(f"namespace {self.name!r}: the slice of {exp!r} must be "
                                     f"(lo, hi), got {sl!r}")
            lo = _check_share(f"namespace {self.name!r}: lo of {exp!r}", sl[0])
            hi = _check_share(f"namespace {self.name!r}: hi of {exp!r}", sl[1])
            if not lo < hi:
                raise ParameterError(f"namespace {self.name!r}: the slice of {exp!r} is empty "
                                     f"(lo {lo:g} >= hi {hi:g})")
            clean[str(exp)] = (lo, hi)
        ordered = sorted(clean.items(), key=lambda kv: kv[1])
        for (a, (_, a_hi)), (b, (b_lo, _)) in zip(ordered, ordered[1:]):
            if b_lo < a_hi:
                raise ParameterError(f"namespace {self.name!r}: the slices of {a!r} "
                                     f"{clean[a]} and {b!r} {clean[b]} overlap")
        object.__setattr__(self, "slices", clean)

    @classmethod
    def allocate(cls, name: str, shares: Mapping[str, float]) -> Namespace:
        """Consecutive slices from 0 in the given order: ``{a: 0.5, b: 0.3}`` gives
        ``a: [0, 0.5)``, ``b: [0.5, 0.8)``."""
        lo, slices = 0.0, {}
        for exp, share in shares.items():
            share = _check_share(f"namespace {name!r}: share of {exp!r}", share)
            slices[exp] = (lo, min(lo + share, 1.0))
            lo += share
        if lo > 1 + 1e-12:
            raise ParameterError(f"namespace {name!r}: the shares sum to {lo:g} > 1")
        return cls(name, slices)

    def slice_of(self, experiment: str) -> tuple[float, float]:
        if experiment not in self.slices:
            raise ParameterError(f"namespace {self.name!r} has no slice for experiment "
                                 f"{experiment!r} (slices: {sorted(self.slices)}); add one")
        return self.slices[experiment]


def _namespace(namespace: Any, experiment: str) -> tuple[str, int, int] | None:
    """(name, lo, hi) bounds on ``h_ns``, or None without a namespace."""
    if namespace is None:
        return None
    if isinstance(namespace, Namespace):
        lo, hi = namespace.slice_of(experiment)
        name = namespace.name
    elif isinstance(namespace, Sequence) and not isinstance(namespace, str) \
            and len(namespace) == 3:
        ns = Namespace(namespace[0], {experiment: (namespace[1], namespace[2])})
        name, (lo, hi) = ns.name, ns.slices[experiment]
    else:
        raise ParameterError(f"namespace must be a Namespace or (name, lo, hi), got "
                             f"{namespace!r}")
    return name, int(round(lo * PRIME)), PRIME if hi >= 1 else int(round(hi * PRIME))


@dataclass(frozen=True)
class _Plan:
    experiment: str
    weights: dict
    seed: int
    traffic: float
    namespace: tuple | None

    @property
    def key(self) -> int:
        return name_key(self.experiment)

    @property
    def cut(self) -> int:
        return PRIME if self.traffic >= 1 else int(round(self.traffic * PRIME))


def _plan(experiment, weights, seed, traffic, namespace) -> _Plan:
    experiment = _check_experiment(experiment)
    return _Plan(experiment, parse_weights(weights), _check_seed(seed), _check_traffic(traffic),
                 _namespace(namespace, experiment))


# --- numpy ----------------------------------------------------------------------------------

def _keys_numpy(unit_ids) -> np.ndarray:
    arr = np.asarray(unit_ids)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ParameterError("unit_ids: unsigned ids above 2^63 - 1 are not supported")
        return arr.astype(np.int64)
    if arr.dtype.kind in "US" or (arr.dtype == object and all(isinstance(v, str) for v in arr)):
        return string_key_numpy([str(v) for v in arr])
    if arr.dtype == object and all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                                   for v in arr):
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise ParameterError(f"unit_ids must be integers or strings (no NULLs), got dtype "
                         f"{arr.dtype}")


def _variants_from_keys(keys: np.ndarray, plan: _Plan) -> np.ndarray:
    names = np.asarray(list(plan.weights), object)
    arm = np.searchsorted(thresholds(list(plan.weights.values())),
                          hash_numpy(keys, plan.key, plan.seed, ASSIGN_ARM), side="right")
    inside = hash_numpy(keys, plan.key, plan.seed, ASSIGN_TRAFFIC) < plan.cut
    if plan.namespace is not None:
        name, lo, hi = plan.namespace
        h = hash_numpy(keys, name_key(name), 0, ASSIGN_NAMESPACE)
        inside &= (h >= lo) & (h < hi)
    out = names[arm]
    out[~inside] = None
    return out


def variants_numpy(unit_ids, experiment: str, weights, seed: int = 0, *, traffic: float = 1.0,
                   namespace=None) -> np.ndarray:
    """The variant of each unit (object array), None for units outside the experiment."""
    plan = _plan(experiment, weights, seed, traffic, namespace)
    return _variants_from_keys(_keys_numpy(unit_ids), plan)


def _timestamp(assigned_at) -> pd.Timestamp:
    if assigned_at is None:
        return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    try:
        ts = pd.Timestamp(assigned_at)
    except (ValueError, TypeError):
        raise ParameterError(f"assigned_at must be a timestamp, got {assigned_at!r}") from None
    if ts is pd.NaT:
        raise ParameterError("assigned_at must be a timestamp, got NaT")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


def assign(unit_ids, experiment: str, weights, seed: int = 0, *, traffic: float = 1.0,
           namespace=None, assigned_at=None) -> pd.DataFrame:
    """Assignment rows (schema table ``assignments``) of the units in the experiment.

    Parameters
    ----------
    unit_ids : array-like of int or str
        The units (no NULLs); the rows keep their order, units outside the experiment dropped.
    experiment : str
        The experiment id (it salts the draws: two experiments draw independently).
    weights : mapping, pairs or str
        ``{variant: weight}`` in arm order, e.g. ``{"control": 0.5, "treatment": 0.5}``.
    seed : int
        Re-draws every unit when changed.
    traffic : float in (0, 1]
        Share of the (namespace-eligible) units in the experiment; ramp-stable.
    namespace : Namespace, (name, lo, hi) or None
        Mutually exclusive slice of a namespace.
    assigned_at : timestamp-like, optional
        The ``assigned_at`` of every row (UTC, naive); default now, to the second.

    Returns
    -------
    DataFrame with columns ``experiment_id, user_id, variant, assigned_at``.
    """
    plan = _plan(experiment, weights, seed, traffic, namespace)
    ts = _timestamp(assigned_at)
    ids = pd.Series(np.asarray(unit_ids).reshape(-1))
    v = _variants_from_keys(_keys_numpy(ids.to_numpy()), plan)
    keep = pd.notna(v)
    return pd.DataFrame({
        "experiment_id": plan.experiment,
        "user_id": ids[keep].reset_index(drop=True),
        "variant": pd.Series(v[keep], dtype=object),
        "assigned_at": pd.Series(ts, index=range(int(keep.sum())), dtype="datetime64[us]"),
    }, columns=list(COLUMNS))


# --- engine (Ibis: DuckDB, Spark, ...) -----------------------------------------------------

def variants_table(table, experiment: str, weights, seed: int = 0, *,
                   unit_column: str = "user_id", traffic: float = 1.0, namespace=None,
                   name: str = "variant"):
    """The engine twin of :func:`variants_numpy`: ``table`` with a string column ``name``, the
    unit's variant, NULL outside the experiment (every row kept).

    Raises
    ------
    DataError
        ``unit_column`` missing, or neither an integer nor a string column.
    """
    plan = _plan(experiment, weights, seed, traffic, namespace)
    return _variants_table(table, unit_column, plan, name)


def _variants_table(table, unit_column: str, plan: _Plan, name: str):
    import ibis

    from workbench.data.hashing import hash_columns, hex_key_expr

    if unit_column not in table.columns:
        raise DataError(f"unit_column {unit_column!r} is not a column of the table "
                        f"(columns: {list(table.columns)})")
    kind = table[unit_column].type()
    keep = list(table.columns)
    if kind.is_integer():
        t, key = table, unit_column
    elif kind.is_string():  # md5 once, in its own SELECT
        t = table.mutate(__assign_hex=table[unit_column].hexdigest("md5").lower())
        t = t.mutate(__assign_key=hex_key_expr(t.__assign_hex))
        key = "__assign_key"
    else:
        raise DataError(f"unit_column {unit_column!r} must be an integer or a string, got {kind}")
    draws = {"__assign_arm": (plan.key, plan.seed, ASSIGN_ARM),
             "__assign_in": (plan.key, plan.seed, ASSIGN_TRAFFIC)}
    if plan.namespace is not None:
        draws["__assign_ns"] = (name_key(plan.namespace[0]), 0, ASSIGN_NAMESPACE)
    t = hash_columns(t, key, draws)
    names, cut = list(plan.weights), thresholds(list(plan.weights.values()))
    h_a = t.__assign_arm
    arm = ibis.cases(*[(h_a < int(c), v) for c, v in zip(cut[:-1], names[:-1])],
                     else_=names[-1]) if len(names) > 1 else ibis.literal(names[0], "string")
    inside = t.__assign_in < plan.cut
    if plan.namespace is not None:
        _, lo, hi = plan.namespace
        inside = inside & (t.__assign_ns >= lo) & (t.__assign_ns < hi)
    return t.select(*keep, **{name: ibis.ifelse(inside, arm, ibis.null("string"))})


def assign_expr(table, experiment: str, weights, seed: int = 0, *, unit_column: str = "user_id",
                traffic: float = 1.0, namespace=None, assigned_at=None):
    """The engine twin of :func:`assign`: an Ibis table of assignment rows
    (``experiment_id, user_id, variant, assigned_at``) of the units of ``table`` in the
    experiment, computed where ``table`` lives (DuckDB, Spark, ...).

    ``assigned_at``: a timestamp for every row (default now) or the name of a timestamp column
    of ``table`` (e.g. a first-exposure time).

    Raises
    ------
    DataError
        ``unit_column`` (or an ``assigned_at`` column) missing or of the wrong type.
    """
    import ibis

    plan = _plan(experiment, weights, seed, traffic, namespace)
    if isinstance(assigned_at, str) and assigned_at in table.columns:
        if not table[assigned_at].type().is_timestamp():
            raise DataError(f"assigned_at column {assigned_at!r} must be a timestamp, got "
                            f"{table[assigned_at].type()}")
        when = table[assigned_at]
    else:
        when = ibis.literal(_timestamp(assigned_at).to_pydatetime(), "timestamp")
    if unit_column not in table.columns:
        raise DataError(f"unit_column {unit_column!r} is not a column of the table "
                        f"(columns: {list(table.columns)})")
    base = table.select(**{unit_column: table[unit_column], "__assign_at": when})
    t = _variants_table(base, unit_column, plan, "__assign_variant")
    t = t.filter(t.__assign_variant.notnull())
    return t.select(experiment_id=ibis.literal(plan.experiment, "string"),
                    user_id=t[unit_column], variant=t.__assign_variant,
                    assigned_at=t.__assign_at)


# --- experiments rows and writing ----------------------------------------------------------

def experiments_frame(experiment: str, weights, start_date, end_date) -> pd.DataFrame:
    """Rows of the ``experiments`` table (schema): one per variant, the planned weight
    normalised, ``is_control`` 1 for :func:`control_of`, the dates (end inclusive)."""
    experiment = _check_experiment(experiment)
    w = parse_weights(weights)
    try:
        start, end = pd.Timestamp(start_date).date(), pd.Timestamp(end_date).date()
    except (ValueError, TypeError):
        raise ParameterError(f"start_date and end_date must be dates, got {start_date!r}, "
                             f"{end_date!r}") from None
    if end < start:
        raise ParameterError(f"end_date {end} is before start_date {start}")
    control = control_of(w)
    return pd.DataFrame({
        "experiment_id": experiment, "variant": list(w), "planned_weight": list(w.values()),
        "is_control": [int(v == control) for v in w], "start_date": start, "end_date": end,
    }, columns=list(EXPERIMENT_COLUMNS))


def write(rows, con, table: str = "assignments") -> None:
    """Append ``rows`` (a DataFrame or an Ibis table of ``con``) to ``table`` of ``con``,
    creating it when absent.

    Raises
    ------
    SourceError
        The engine refused (the table read-only, columns that do not match, ...).
    """
    import ibis

    from workbench.errors import SourceError

    if isinstance(rows, pd.DataFrame):  # ibis 12 + duckdb 2: create_table(DataFrame) fails
        rows = ibis.memtable(rows)
    try:
        exists = table in con.list_tables()
    except Exception:  # ibis 12 list_tables can fail on duckdb 2.0
        try:
            con.table(table)
            exists = True
        except Exception:
            exists = False
    try:
        if exists:
            con.insert(table, rows)
        else:
            con.create_table(table, rows)
    except Exception as exc:
        raise SourceError(f"cannot write the rows to table {table!r}: "
                          f"{str(exc).splitlines()[0][:300]}") from exc


def counts(rows) -> dict[str, int]:
    """Units per variant of assignment rows (a DataFrame or an Ibis table), in engine."""
    if isinstance(rows, pd.DataFrame):
        return {str(k): int(v) for k, v in rows["variant"].value_counts(sort=False).items()}
    from workbench.data.sources import execute

    got = execute(rows.group_by("variant").aggregate(n=rows.variant.count()))
    return {str(k): int(v) for k, v in zip(got["variant"], got["n"])}
