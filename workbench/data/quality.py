"""THE data-quality checks of experiment data, counted in the engine.

>>> report = check_source("data/warehouse.duckdb")   # `workbench validate`: schema + experiments
>>> report = exp.validate()                         # an Experiment's own tables and window
>>> report.ok, report.summary(), report.to_frame()   # check, table, column, status, ..., message

Every check is an aggregate query run by the source's engine (DuckDB, Spark... through Ibis);
only counts come back to Python. Statuses: ``ok``, ``warning`` (read results with care) and
``error`` (results would be wrong or cannot be computed).

Checks (the constants below)
----------------------------
``table``            a documented table is missing or empty (error)
``column``           a documented column is missing (error; an Experiment's own tables need
                     only the non-nullable ones)
``type``             a column has the wrong logical type (error)
``nulls``            NULLs in a non-nullable column (error)
``nan`` / ``inf``    NaN or +-inf in a float column (error: they poison sums; the metrics
                     ignore them)
``duplicates``       repeated ``users.user_id`` (error: joins would count users twice)
``experiment``       the experiment is not in ``experiments``, has no assignments, or its
                     planned weights do not sum to 1 (error)
``unknown_variant``  assignment rows whose variant is not planned (error)
``crossovers``       units assigned to more than one variant: warning below
                     :data:`CROSSOVER_THRESHOLD` (1 %) of the assigned units, error from it
``srm``              sample ratio mismatch (:func:`workbench.stats.srm.srm`, the stats
                     engine's test) of the units in exactly one planned variant; error at
                     ``p < SRM_THRESHOLD`` (0.001)
``events_before_exposure``  events between ``start_date`` and the unit's first exposure
                     (warning: exposure logged late; the metrics ignore them)
``assignment_window`` first exposures outside ``[start_date, end_date + 1 day)`` (warning)
``missing_users``    assigned units missing from ``users`` (warning: segments lose them)
"""
from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench import format as fmt
from workbench.data.schema import TABLES, Column
from workbench.data.sources import execute
from workbench.errors import SchemaError
from workbench.stats.srm import SRM_THRESHOLD
from workbench.summary import Summary

__all__ = ["QualityReport", "check_source", "check_experiment", "SRM_THRESHOLD",
           "CROSSOVER_THRESHOLD", "REPORT_COLUMNS", "OK", "WARNING", "ERROR"]

CROSSOVER_THRESHOLD = 0.01
OK, WARNING, ERROR = "ok", "warning", "error"
# Check names.
TABLE = "table"
COLUMN = "column"
TYPE = "type"
NULLS = "nulls"
NAN = "nan"
INF = "inf"
DUPLICATES = "duplicates"
EXPERIMENT = "experiment"
UNKNOWN_VARIANT = "unknown_variant"
CROSSOVERS = "crossovers"
SRM = "srm"
EVENTS_BEFORE_EXPOSURE = "events_before_exposure"
ASSIGNMENT_WINDOW = "assignment_window"
MISSING_USERS = "missing_users"
CHECKS = (TABLE, COLUMN, TYPE, NULLS, NAN, INF, DUPLICATES, EXPERIMENT, UNKNOWN_VARIANT,
          CROSSOVERS, SRM, EVENTS_BEFORE_EXPOSURE, ASSIGNMENT_WINDOW, MISSING_USERS)

REPORT_COLUMNS = ["check", "table", "column", "status", "count", "share", "p_value", "message"]
COUNT_COLUMNS = ["experiment_id", "variant", "planned_weight", "units", "expected_units",
                 "share"]
_STATUS_ORDER = {ERROR: 0, WARNING: 1, OK: 2}
# Tables joined on a key must have it unique, or metrics would count rows twice.
PRIMARY_KEYS = {"users": "user_id"}
_NEED_PLAN = {"experiment_id", "variant", "planned_weight", "start_date", "end_date"}
_NEED_ASSIGNMENTS = {"experiment_id", "user_id", "variant", "assigned_at"}


@dataclass(frozen=True)
class QualityReport:
    """The outcome of the data-quality checks.

    Attributes
    ----------
    checks : DataFrame
        One row per check, errors first: :data:`REPORT_COLUMNS`. ``count`` is the number of
        offending rows/units (for ``table``, the row count; for ``srm``, the units that would
        have to move to match the plan); ``share`` the offending share where a denominator
        exists (else NaN); ``p_value`` is set on ``srm`` rows.
    source : str
        What was checked (a source, or an experiment's tables).
    experiment_ids : tuple of str
    variant_counts : DataFrame
        :data:`COUNT_COLUMNS`: units in exactly one planned variant against the plan (the SRM
        test's input); ``planned_weight`` normalised.
    srm_p_values : dict
        Experiment id -> SRM p-value (absent when it could not be computed).
    srm_threshold, crossover_threshold : float
    """

    checks: pd.DataFrame = field(repr=False)
    source: str = ""
    experiment_ids: tuple = ()
    variant_counts: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=COUNT_COLUMNS), repr=False)
    srm_p_values: dict = field(default_factory=dict)
    srm_threshold: float = SRM_THRESHOLD
    crossover_threshold: float = CROSSOVER_THRESHOLD

    @property
    def ok(self) -> bool:
        """True when no check has status ``error``."""
        return not (self.checks["status"] == ERROR).any()

    @property
    def errors(self) -> pd.DataFrame:
        return self.checks[self.checks["status"] == ERROR].reset_index(drop=True)

    @property
    def warnings(self) -> pd.DataFrame:
        return self.checks[self.checks["status"] == WARNING].reset_index(drop=True)

    @property
    def srm_p_value(self) -> float:
        """The SRM p-value when exactly one experiment was checked (else NaN)."""
        if len(self.srm_p_values) == 1:
            return float(next(iter(self.srm_p_values.values())))
        return float("nan")

    @property
    def srm(self) -> bool:
        """True when the SRM check failed (a mismatch, or no unit to test)."""
        return self.status(SRM) == ERROR

    @property
    def crossover_units(self) -> int:
        """Units assigned to more than one variant."""
        return self.count(CROSSOVERS)

    def to_frame(self) -> pd.DataFrame:
        """The checks table (a copy), errors first."""
        return self.checks.copy()

    def _select(self, check: str, table: str | None, column: str | None) -> pd.Series:
        c = self.checks
        sel = c["check"] == check
        if table is not None:
            sel &= c["table"] == table
        if column is not None:
            sel &= c["column"] == column
        return sel

    def count(self, check: str, table: str | None = None, column: str | None = None) -> int:
        """Total ``count`` of the rows of one check (0 if absent)."""
        return int(self.checks.loc[self._select(check, table, column), "count"].sum())

    def status(self, check: str, table: str | None = None, column: str | None = None) -> str:
        """The worst status of one check (``ok`` if absent)."""
        statuses = self.checks.loc[self._select(check, table, column), "status"]
        return min(statuses, key=_STATUS_ORDER.get) if len(statuses) else OK

    def raise_if_errors(self) -> QualityReport:
        """Raise :class:`SchemaError` listing the errors; return ``self`` otherwise."""
        if not self.ok:
            lines = [f"{r.table}.{r.column}: {r.message}" if r.column else f"{r.table}: {r.message}"
                     for r in self.errors.itertuples()]
            raise SchemaError(f"source {self.source} failed validation:\n  " + "\n  ".join(lines))
        return self

    def _head(self) -> str:
        n_err = int((self.checks["status"] == ERROR).sum())
        n_warn = int((self.checks["status"] == WARNING).sum())
        return (f"Validation of {self.source}: {'OK' if self.ok else 'FAILED'} "
                f"({n_err} error(s), {n_warn} warning(s), {len(self.checks)} checks)")

    def summary(self) -> Summary:
        """Verdict, then the problems (or a one-line all-clear), then units per variant."""
        lines = [self._head()]
        problems = self.checks[self.checks["status"] != OK]
        for r in problems.itertuples():
            where = f"{r.table}.{r.column}" if r.column else r.table
            lines.append(f"  [{r.status.upper():7}] {r.check:<24} {where:<24} {r.message}")
        if not len(problems):
            lines.append("  every check passed")
        if len(self.variant_counts):
            lines.append("Units per variant (units in exactly one planned variant):")
            for r in self.variant_counts.itertuples():
                lines.append(f"  {r.experiment_id:<20} {r.variant:<14} {int(r.units):>10,}  "
                             f"planned {r.planned_weight:.3f}, expected {r.expected_units:,.0f}")
            for eid, p in self.srm_p_values.items():
                lines.append(f"  SRM chi-square p-value ({eid}): {fmt.p_value(p)}")
        return Summary("\n".join(lines), self._html())

    def _html(self) -> str:
        colours = {ERROR: "#f8d7da", WARNING: "#fff3cd", OK: "#ffffff"}
        head = "".join(f"<th>{c}</th>" for c in REPORT_COLUMNS)
        body = []
        for r in self.checks.itertuples(index=False):
            cells = "".join(
                f"<td>{html.escape('' if pd.isna(v) else str(v))}</td>"
                for v in (r.check, r.table, r.column, r.status, fmt.cell(r.count),
                          "" if pd.isna(r.share) else fmt.percent(r.share, 2),
                          "" if pd.isna(r.p_value) else fmt.p_value(r.p_value), r.message))
            body.append(f'<tr style="background:{colours[r.status]}">{cells}</tr>')
        verdict = "OK" if self.ok else "<span style='color:#b00'>FAILED</span>"
        counts = ""
        if len(self.variant_counts):
            counts = fmt.table_html(self.variant_counts, "Units per variant",
                                    {"planned_weight": lambda v: fmt.percent(v, 1),
                                     "expected_units": fmt.count, "units": fmt.count})
        return (f"<p><b>Validation of {html.escape(self.source)}: {verdict}</b></p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                + counts)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self._html()


class _Checks:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, check, table, column, status, count=0, share=float("nan"), message="",
            p_value=float("nan")):
        self.rows.append({"check": check, "table": table, "column": column or "",
                          "status": status, "count": int(count),
                          "share": float(share) if share is not None else float("nan"),
                          "p_value": float(p_value), "message": message})

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=REPORT_COLUMNS)
        order = df["status"].map(_STATUS_ORDER)
        return (df.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o")
                .reset_index(drop=True))


def _type_ok(dtype, logical: str) -> bool:
    if logical == "int":
        return dtype.is_integer()
    if logical == "float":
        return dtype.is_floating() or dtype.is_decimal()
    if logical == "string":
        return dtype.is_string()
    if logical == "timestamp":
        return dtype.is_timestamp()
    if logical == "date":
        return dtype.is_date()
    raise ValueError(logical)


def _connect(source: Any):
    try:
        import duckdb

        if isinstance(source, duckdb.DuckDBPyConnection):
            import ibis

            return ibis.duckdb.from_connection(source)
    except ImportError:  # pragma: no cover
        pass
    from workbench.data.sources import connect

    return connect(source)


def _describe(source: Any, con) -> str:
    if source is None:
        from workbench.config import get_settings

        return str(get_settings().warehouse)
    if isinstance(source, str | bytes) or hasattr(source, "__fspath__"):
        return str(source)
    return f"{getattr(con, 'name', type(con).__name__)} connection"


def _scalar_row(expr) -> dict:
    row = execute(expr).iloc[0].to_dict()
    return {k: (0 if pd.isna(v) else v) for k, v in row.items()}


def _table_or_none(con, name: str):
    # Not con.list_tables(): it fails with ibis 12 + duckdb 2.0 (fetch_arrow_table removed).
    try:
        return con.table(name)
    except Exception as exc:  # TableNotFound, or a backend-specific error
        if "not found" in str(exc).lower() or type(exc).__name__ == "TableNotFound" or \
                "does not exist" in str(exc).lower():
            return None
        raise


def _check_table(checks: _Checks, t, name: str, columns: Sequence[Column], *,
                 strict: bool = True) -> set[str]:
    """Structure and values of one table; returns the names of the usable columns.

    ``strict``: every documented column must exist (a source); otherwise only the
    non-nullable ones (an Experiment's own tables, whose metrics name the rest).
    """
    if t is None:
        checks.add(TABLE, name, "", ERROR, message=f"table {name!r} is missing")
        return set()
    schema = t.schema()
    usable = set()
    for col in columns:
        if col.name not in schema:
            if strict or not col.nullable:
                checks.add(COLUMN, name, col.name, ERROR,
                           message=f"column {name}.{col.name} is missing (expected {col.dtype})")
        elif not _type_ok(schema[col.name], col.dtype):
            checks.add(TYPE, name, col.name, ERROR,
                       message=f"column {name}.{col.name} has type {schema[col.name]}, "
                       f"expected {col.dtype}")
        else:
            usable.add(col.name)
    # One aggregate for the whole table: row count, NULLs, NaN and inf (of every float column).
    aggs = {"n_rows": t.count()}
    for col in columns:
        if col.name in usable and not col.nullable:
            aggs[f"{NULLS}|{col.name}"] = t[col.name].isnull().sum()
    for cname, dtype in schema.items():
        if dtype.is_floating():
            aggs[f"{NAN}|{cname}"] = t[cname].isnan().sum()
            aggs[f"{INF}|{cname}"] = t[cname].isinf().sum()
    key = PRIMARY_KEYS.get(name)
    if key in usable:
        aggs["distinct_keys"] = t[key].nunique()
    res = _scalar_row(t.aggregate(**aggs))
    n = int(res.pop("n_rows"))
    if "distinct_keys" in res:
        dup = n - int(res.pop("distinct_keys")) - int(res.get(f"{NULLS}|{key}", 0))
        checks.add(DUPLICATES, name, key, ERROR if dup else OK, dup,
                   dup / n if n else float("nan"),
                   f"{dup:,} duplicate {name}.{key} value(s): joins would repeat rows" if dup
                   else f"{name}.{key} is unique")
    if n == 0:
        checks.add(TABLE, name, "", ERROR, 0, message=f"table {name!r} is empty")
    else:
        checks.add(TABLE, name, "", OK, n, message=f"{n:,} rows")
    for agg, value in res.items():
        kind, col = agg.split("|", 1)
        value = int(value)
        share = value / n if n else float("nan")
        label = {NULLS: "NULL", NAN: "NaN", INF: "+-inf"}[kind]
        if value:
            checks.add(kind, name, col, ERROR, value, share,
                       f"{value:,} {label} value(s) in {name}.{col} ({share:.2%} of rows)")
        else:
            checks.add(kind, name, col, OK, 0, 0.0, f"no {label} in {name}.{col}")
    return usable


@dataclass(frozen=True)
class _Plan:
    experiment_id: str
    variants: tuple
    weights: tuple
    start_date: dt.date
    end_date: dt.date


def _plan_from_table(checks: _Checks, eid: str, plan: pd.DataFrame) -> _Plan | None:
    """The ``experiments`` rows of one experiment, checked; None when it is not there."""
    if plan.empty:
        checks.add(EXPERIMENT, "experiments", "experiment_id", ERROR, 0, float("nan"),
                   f"experiment {eid!r} is not in experiments")
        return None
    weights = plan.groupby("variant", sort=False)["planned_weight"].sum()
    total_w = float(weights.sum())
    if "phase" in plan.columns:  # one row per variant x phase: each phase sums to 1
        sums = plan.groupby("phase", sort=False)["planned_weight"].sum()
        bad = sums[(sums - 1.0).abs() > 1e-6]
        total_w = 1.0 if bad.empty else float(bad.iloc[0])
        weights = plan.groupby("variant", sort=False)["planned_weight"].mean()
    if abs(total_w - 1.0) > 1e-6:
        checks.add(EXPERIMENT, "experiments", "planned_weight", ERROR, len(plan), float("nan"),
                   f"planned weights of {eid!r} sum to {total_w:.6g}, not 1")
    known = sorted(weights.index.astype(str))
    return _Plan(eid, tuple(known), tuple(float(weights[v]) for v in known),
                 pd.Timestamp(plan["start_date"].min()).date(),
                 pd.Timestamp(plan["end_date"].max()).date())


def _srm_row(checks: _Checks, table: str, column: str, eid: str, observed: pd.Series,
             weights: dict, srm_threshold: float, *,
             impossible: str) -> tuple[list[dict], float | None]:
    """The ``srm`` check of one experiment, through THE SRM (:func:`workbench.stats.srm.srm`).

    ``observed`` holds the units per planned variant (in plan order), ``weights`` the plan.
    Returns the per-variant count rows and the p-value (None when no test was possible).
    """
    from workbench.stats.srm import srm

    known = list(observed.index)
    result = srm(observed, weights, srm_threshold) if any(w > 0 for w in weights.values()) \
        else None
    counts = [{"experiment_id": eid, "variant": v, "planned_weight": float(r.planned_weight),
               "units": int(r.units), "expected_units": float(r.expected),
               "share": float(r.observed_share)}
              for v, r in zip(known, result.table.itertuples())] if result is not None else []
    n = int(observed.sum())
    if result is None or pd.isna(result.p_value):
        if n == 0:
            checks.add(SRM, table, column, ERROR, 0, float("nan"),
                       f"SRM test impossible: {impossible}")
        else:
            checks.add(SRM, table, column, OK, 0, float("nan"),
                       "SRM test not applicable: fewer than 2 variants with a planned weight")
        return counts, None
    p = float(result.p_value)
    tab = result.table.set_index("variant")
    # Units that would have to move to match the plan (half the total absolute deviation).
    moved = int(round(float((tab.units - tab.expected).abs().sum() / 2)))
    detail = ", ".join(f"{v} {int(tab.units[v]):,} (expected {tab.expected[v]:,.0f})"
                       for v in known)
    head = (f"{result.message}; " if result.message and p == 0 else
            f"sample ratio mismatch: chi-square p = {p:.3g} < {srm_threshold:g}; "
            if result.flagged else f"no sample ratio mismatch (p = {p:.3g}); ")
    checks.add(SRM, table, column, ERROR if result.flagged else OK, moved, moved / n,
               head + detail, p_value=p)
    return counts, p


def _check_assignments(checks: _Checks, plan: _Plan, assignments, events=None, users=None,
                       units=None, *, usable: dict, srm_threshold: float,
                       crossover_threshold: float) -> tuple[float | None, list[dict]]:
    """Assignment-level checks of one experiment; returns the SRM p-value and the counts."""
    import ibis


    eid, known = plan.experiment_id, list(plan.variants)
    start_ts = dt.datetime.combine(plan.start_date, dt.time())
    end_ts = dt.datetime.combine(plan.end_date + dt.timedelta(days=1), dt.time())
    a = assignments.filter(assignments.experiment_id == eid)
    # Per unit: its variants (min != max: a crossover; cheaper than a distinct count on Spark),
    # first exposure, and the rows in a variant that is not planned.
    per_user = a.group_by("user_id").aggregate(
        v_min=a.variant.min(), v_max=a.variant.max(), first_at=a.assigned_at.min(),
        unknown=(~a.variant.isin(known)).cast("int64").sum())
    with_users = users is not None and "user_id" in usable.get("users", set())
    c, extra = per_user, {}
    if with_users:  # in the same scan: a left join to the distinct users ids (duplicate users
        # rows do not count twice); not NOT IN, which Spark plans as a nested-loop join
        ids = users.select(_in_users=users.user_id).distinct()
        c = per_user.left_join(ids, per_user.user_id == ids._in_users)
        extra["missing"] = c._in_users.isnull().cast("int64").sum()
    totals = _scalar_row(c.aggregate(
        **extra,
        users=c.count(),
        multi=(c.v_min != c.v_max).cast("int64").sum(),
        unknown_users=(c.unknown > 0).cast("int64").sum(),
        unknown_rows=c.unknown.sum(),
        early=(c.first_at < ibis.literal(start_ts)).cast("int64").sum(),
        late=(c.first_at >= ibis.literal(end_ts)).cast("int64").sum(),
    ))
    n_users = int(totals["users"])
    if n_users == 0:
        checks.add(EXPERIMENT, "assignments", "experiment_id", ERROR, 0, float("nan"),
                   f"no assignments for experiment {eid!r}")
        checks.add(SRM, "assignments", "variant", ERROR, 0, float("nan"),
                   "SRM test impossible: no assigned unit")
        return None, []
    checks.add(EXPERIMENT, "assignments", "experiment_id", OK, n_users, float("nan"),
               f"{eid!r}: {n_users:,} assigned units, {plan.start_date} .. {plan.end_date}")

    unknown = int(totals["unknown_rows"])
    if unknown:
        checks.add(UNKNOWN_VARIANT, "assignments", "variant", ERROR, unknown,
                   int(totals["unknown_users"]) / n_users,
                   f"{unknown:,} assignment row(s) of {int(totals['unknown_users']):,} unit(s) "
                   f"have a variant not planned (planned: {', '.join(known)})")
    else:
        checks.add(UNKNOWN_VARIANT, "assignments", "variant", OK, 0, 0.0,
                   "every variant is planned")

    multi = int(totals["multi"])
    share = multi / n_users
    status = OK if multi == 0 else ERROR if share >= crossover_threshold else WARNING
    checks.add(CROSSOVERS, "assignments", "user_id", status, multi, share,
               f"{multi:,} unit(s) ({share:.2%}) assigned to more than one variant"
               + (f" (an error from {crossover_threshold:.0%})" if multi else ""))

    outside = int(totals["early"]) + int(totals["late"])
    checks.add(ASSIGNMENT_WINDOW, "assignments", "assigned_at", WARNING if outside else OK,
               outside, outside / n_users,
               f"{outside:,} first exposure(s) outside {plan.start_date} .. {plan.end_date}"
               if outside else "every first exposure is within the experiment dates")

    # The analysed units (the readout's, when given) or the units in exactly one variant.
    if units is None:
        units = per_user.filter((per_user.v_min == per_user.v_max) & (per_user.unknown == 0)) \
            .select("user_id", variant=per_user.v_min, assigned_at=per_user.first_at)
    planned_units = units.filter(units.variant.isin(known))
    observed = execute(planned_units.group_by("variant").aggregate(units=planned_units.count()))
    observed = observed.set_index("variant")["units"].reindex(known).fillna(0).astype(int)
    counts, p_value = _srm_row(checks, "assignments", "variant", eid, observed,
                               dict(zip(known, plan.weights)), srm_threshold,
                               impossible="no unit is in exactly one planned variant")

    # Events between start_date and the unit's first exposure (the metric window starts at
    # assigned_at, so such events are dropped from metrics: exposure was likely logged late).
    if events is not None and {"user_id", "event_time"} <= usable.get("events", set()):
        e = events.filter((events.event_time >= ibis.literal(start_ts))
                          & (events.event_time < ibis.literal(end_ts)))
        j = e.inner_join(units.select("user_id", first_at=units.assigned_at), "user_id")
        before = j.event_time < j.first_at
        res = _scalar_row(j.aggregate(in_window=j.count(), before=before.cast("int64").sum(),
                                      users_before=j.user_id.nunique(where=before)))
        n_before, in_window = int(res["before"]), int(res["in_window"])
        checks.add(EVENTS_BEFORE_EXPOSURE, "events", "event_time", WARNING if n_before else OK,
                   n_before, n_before / in_window if in_window else 0.0,
                   f"{n_before:,} event(s) of {int(res['users_before']):,} unit(s) between "
                   f"{plan.start_date} and the unit's first exposure (excluded from metrics)"
                   if n_before else "no event between the start date and a unit's exposure")
    elif events is not None:
        checks.add(EVENTS_BEFORE_EXPOSURE, "events", "event_time", WARNING, 0, float("nan"),
                   "not checked: events.user_id / events.event_time unusable")

    if with_users:
        missing = int(totals["missing"])
        checks.add(MISSING_USERS, "users", "user_id", WARNING if missing else OK, missing,
                   missing / n_users,
                   f"{missing:,} assigned unit(s) missing from users (lost to segments)"
                   if missing else "every assigned unit is in users")
    return p_value, counts


def _report(checks: _Checks, source: str, eids: tuple, counts: list, p_values: dict,
            srm_threshold: float, crossover_threshold: float) -> QualityReport:
    return QualityReport(checks=checks.frame(), source=source, experiment_ids=eids,
                         variant_counts=pd.DataFrame(counts, columns=COUNT_COLUMNS),
                         srm_p_values=p_values, srm_threshold=srm_threshold,
                         crossover_threshold=crossover_threshold)


def check_source(source: Any = None, experiment_id: str | None = None, *,
                 raise_on_error: bool = False, srm_threshold: float = SRM_THRESHOLD,
                 crossover_threshold: float = CROSSOVER_THRESHOLD) -> QualityReport:
    """Check a source against :mod:`workbench.data.schema`, then each of its experiments.

    Parameters
    ----------
    source : None, str, Path, ibis backend or duckdb connection
        A DuckDB file (default: the settings' warehouse), an Ibis URL or backend, or an open
        ``duckdb`` connection.
    experiment_id : str, optional
        Experiment to check; default every experiment in ``experiments``.
    raise_on_error : bool
        Raise :class:`~workbench.errors.SchemaError` when a check fails.
    srm_threshold, crossover_threshold : float
        Error levels of the ``srm`` and ``crossovers`` checks.

    Returns
    -------
    QualityReport

    Raises
    ------
    SourceError
        The source cannot be opened.
    SchemaError
        With ``raise_on_error=True``, naming each failing table and column.
    """
    con = _connect(source)
    checks = _Checks()
    tables = {name: _table_or_none(con, name) for name in TABLES}
    usable = {name: _check_table(checks, tables[name], name, cols)
              for name, cols in TABLES.items()}
    counts: list[dict] = []
    p_values: dict = {}
    eids: tuple = ()
    if _NEED_PLAN <= usable["experiments"] and _NEED_ASSIGNMENTS <= usable["assignments"]:
        plans = execute(tables["experiments"].select(*sorted(
            _NEED_PLAN | ({"phase"} & set(tables["experiments"].columns)))))
        eids = ((experiment_id,) if experiment_id is not None
                else tuple(sorted(plans["experiment_id"].astype(str).unique())))
        for eid in eids:
            plan = _plan_from_table(checks, eid, plans[plans["experiment_id"] == eid])
            if plan is None:
                continue
            p, rows = _check_assignments(
                checks, plan, tables["assignments"], tables["events"], tables["users"],
                usable=usable, srm_threshold=srm_threshold,
                crossover_threshold=crossover_threshold)
            counts += rows
            if p is not None:
                p_values[eid] = p
    else:
        checks.add(EXPERIMENT, "assignments", "", WARNING, 0, float("nan"),
                   "experiment checks skipped: assignments/experiments unusable")
    report = _report(checks, _describe(source, con), eids, counts, p_values, srm_threshold,
                     crossover_threshold)
    if raise_on_error:
        report.raise_if_errors()
    return report


def check_experiment(window: Any, assignments, events, *, users=None, experiments=None,
                     units=None, srm_threshold: float = SRM_THRESHOLD,
                     crossover_threshold: float = CROSSOVER_THRESHOLD) -> QualityReport:
    """Check the tables of one experiment as a readout uses them.

    Parameters
    ----------
    window : ExperimentWindow
        Anything with ``experiment_id, variants, planned_weights, start_date, end_date`` (the
        plan the SRM test compares with).
    assignments, events : ibis Table
    users, experiments : ibis Table, optional
        Checked when given (``experiments``: the experiment's planned weights sum to 1).
    units : ibis Table, optional
        The readout's units (``user_id, variant, assigned_at``; e.g.
        ``MetricCompiler.units()``): the SRM test and the events before exposure use them.
        Default: the units in exactly one planned variant.
    srm_threshold, crossover_threshold : float

    Returns
    -------
    QualityReport
    """
    checks = _Checks()
    given = {"assignments": assignments, "events": events, "users": users,
             "experiments": experiments}
    usable = {name: _check_table(checks, t, name, TABLES[name], strict=False)
              for name, t in given.items() if t is not None}
    eid = window.experiment_id
    plan = _Plan(eid, tuple(window.variants), tuple(float(w) for w in window.planned_weights),
                 window.start_date, window.end_date)
    if experiments is not None and _NEED_PLAN <= usable["experiments"]:
        rows = execute(experiments.filter(experiments.experiment_id == eid)
                       .select(*sorted(_NEED_PLAN | ({"phase"} & set(experiments.columns)))))
        if len(rows):
            _plan_from_table(checks, eid, rows)
    p_values: dict = {}
    counts: list = []
    if _NEED_ASSIGNMENTS <= usable["assignments"]:
        p, counts = _check_assignments(checks, plan, assignments, events, users, units,
                                       usable=usable, srm_threshold=srm_threshold,
                                       crossover_threshold=crossover_threshold)
        if p is not None:
            p_values[eid] = p
    else:
        checks.add(EXPERIMENT, "assignments", "", ERROR, 0, float("nan"),
                   "experiment checks impossible: assignments unusable")
    return _report(checks, repr(eid), (eid,), counts, p_values, srm_threshold,
                   crossover_threshold)


# -- per-unit tables (Experiment.from_units) ---------------------------------------------------
UNITS_TABLE = "units"  # the name per-unit tables have in reports


def _numeric(dtype) -> bool:
    return dtype.is_numeric() or dtype.is_boolean()


def unit_columns(metrics: Sequence[Any]) -> dict[str, list[str]]:
    """Column -> the metrics reading it (from ``MetricDefinition.unit_columns``)."""
    out: dict[str, list[str]] = {}
    for m in metrics:
        for col in m.unit_columns.values():
            out.setdefault(col, []).append(m.name)
    return out


def require_unit_columns(table, metrics: Sequence[Any], *, variant: str, unit: str | None = None,
                         date: str | None = None, segments: Sequence[str] = ()) -> None:
    """Raise :class:`SchemaError` naming the column when a per-unit table cannot be analysed:
    a missing column, a non-numeric metric column, a date column that is not a date. Reads
    only the schema (before any query is compiled)."""
    schema = table.schema()
    cols = list(schema.names)

    def missing(col: str, role: str) -> SchemaError:
        return SchemaError(f"column {col!r} ({role}) is not in the per-unit table "
                           f"(columns: {', '.join(cols)})")

    for col, role in ((variant, "the variant column"), (unit, "the unit id column"),
                      (date, "the date column")):
        if col is not None and col not in schema:
            raise missing(col, role)
    for col in segments:
        if col not in schema:
            raise missing(col, "a segment column")
    for col, names in unit_columns(metrics).items():
        if col not in schema:
            raise missing(col, f"metric {names[0]!r}")
        if not _numeric(schema[col]):
            raise SchemaError(f"column {col!r} of the per-unit table has type {schema[col]}; "
                              f"metric {names[0]!r} needs numbers (or booleans)")
    if date is not None and not (schema[date].is_date() or schema[date].is_timestamp()):
        raise SchemaError(f"column {date!r} of the per-unit table has type {schema[date]}; "
                          "the date column needs dates or timestamps")


def check_units(table, window: Any, metrics: Sequence[Any], *, variant: str,
                unit: str | None = None, srm_threshold: float = SRM_THRESHOLD,
                notes: Sequence[str] = ()) -> QualityReport:
    """The data-quality checks of a per-unit table (one row per unit), counted in the engine.

    Checks (same names as the event path's): ``table`` (rows; error when empty),
    ``experiment`` (error with fewer than 2 units), ``nulls`` (NULL variants: error, the rows
    are left out; NULL metric values, pandas' NaN included: error, counted as 0),
    ``nan``/``inf`` per metric column (error; counted as 0), ``duplicates`` of ``unit`` (error), ``unknown_variant`` (variants
    not planned: error) and ``srm`` against ``window.planned_weights``
    (:func:`workbench.stats.srm.srm`; a planned variant without units is a mismatch).

    Parameters
    ----------
    table : ibis Table
    window : ExperimentWindow
        ``experiment_id``, ``variants`` (the plan) and ``planned_weights``.
    metrics : list of MetricDefinition
        Per-unit metrics (their ``unit_columns`` are checked).
    variant, unit : str
        The variant column and the optional unit id column.
    srm_threshold : float
    notes : list of str
        What the plan took by default (control, split, time series): ``experiment`` rows
        with status ok, so the report states them.
    """

    require_unit_columns(table, metrics, variant=variant, unit=unit)
    checks = _Checks()
    name, eid = UNITS_TABLE, window.experiment_id
    schema = table.schema()
    aggs = {"n_rows": table.count(), "null_variant": table[variant].isnull().sum()}
    columns = list(unit_columns(metrics))
    for col in columns:
        aggs[f"{NULLS}|{col}"] = table[col].isnull().sum()
        if schema[col].is_floating():
            aggs[f"{NAN}|{col}"] = table[col].isnan().sum()
            aggs[f"{INF}|{col}"] = table[col].isinf().sum()
    if unit is not None:
        aggs["distinct_units"] = table[unit].nunique()
        aggs["null_units"] = table[unit].isnull().sum()
    res = _scalar_row(table.aggregate(**aggs))
    n = int(res["n_rows"])
    checks.add(TABLE, name, "", OK if n else ERROR, n,
               message=f"{n:,} rows" if n else "the per-unit table is empty")
    null_variant = int(res["null_variant"])
    checks.add(NULLS, name, variant, ERROR if null_variant else OK, null_variant,
               null_variant / n if n else float("nan"),
               f"{null_variant:,} row(s) with a NULL {variant!r} (left out)" if null_variant
               else f"no NULL in {variant!r}")
    for col in columns:
        # pandas' NaN arrives as NULL; either way the metrics count it as 0 (an imputation
        # the user should make on purpose, hence an error)
        for kind, label, status, note in ((NULLS, "missing (NULL/NaN)", ERROR, "counted as 0"),
                                          (NAN, "NaN", ERROR, "counted as 0"),
                                          (INF, "+-inf", ERROR, "counted as 0")):
            if f"{kind}|{col}" not in res:
                continue
            value = int(res[f"{kind}|{col}"])
            share = value / n if n else float("nan")
            checks.add(kind, name, col, status if value else OK, value, share,
                       f"{value:,} {label} value(s) in {col!r} ({share:.2%} of rows; {note})"
                       if value else f"no {label} in {col!r}")
    if unit is not None:
        dup = n - int(res["distinct_units"]) - int(res["null_units"])
        checks.add(DUPLICATES, name, unit, ERROR if dup else OK, dup,
                   dup / n if n else float("nan"),
                   f"{dup:,} duplicated {unit!r} value(s): a unit counted more than once"
                   if dup else f"{unit!r} is unique")
    analysed = n - null_variant
    checks.add(EXPERIMENT, name, variant, OK if analysed >= 2 else ERROR, analysed,
               message=f"{eid!r}: {analysed:,} units" if analysed >= 2 else
               f"{eid!r}: {analysed} unit(s): nothing to compare")
    for note in notes:
        checks.add(EXPERIMENT, name, "", OK, message=note)

    known = list(window.variants)
    t = table.filter(table[variant].notnull())
    observed = execute(t.group_by(v=t[variant].cast("string")).aggregate(units=t.count()))
    observed = observed.set_index("v")["units"]
    unknown = observed[[v not in known for v in observed.index]]
    n_unknown = int(unknown.sum())
    checks.add(UNKNOWN_VARIANT, name, variant, ERROR if n_unknown else OK, n_unknown,
               n_unknown / analysed if analysed else float("nan"),
               f"{n_unknown:,} unit(s) in variant(s) not planned: {', '.join(unknown.index)} "
               f"(planned: {', '.join(known)})" if n_unknown else "every variant is planned")
    planned = observed.reindex(known).fillna(0).astype(int)
    weights = dict(zip(known, (float(w) for w in window.planned_weights)))
    counts, p = _srm_row(checks, name, variant, eid, planned, weights, srm_threshold,
                         impossible="no unit is in a planned variant")
    p_values = {} if p is None else {eid: p}
    return _report(checks, f"{eid!r} (per-unit table)", (eid,), counts, p_values,
                   srm_threshold, CROSSOVER_THRESHOLD)


# -- event logs of any schema (Experiment.from_source) ----------------------------------------
def _where_value_ok(dtype, value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_where_value_ok(dtype, v) for v in value)
    if dtype.is_boolean():
        return isinstance(value, bool | int)
    if dtype.is_numeric():
        return isinstance(value, int | float) and not isinstance(value, bool)
    if dtype.is_string():
        return isinstance(value, str)
    return True  # dates, timestamps...: the engine compares them


def require_event_columns(tables: dict, metrics: Sequence[Any],
                          names: dict | None = None) -> None:
    """Raise :class:`SchemaError` naming the column when an event log cannot be analysed, before
    any query is compiled (reads only the schemas).

    Checked: the documented columns the readout needs (``user_id`` integers in every table,
    ``variant`` and ``event_type`` text, ``assigned_at``/``event_time`` timestamps), the
    columns metrics sum (numbers), and the values of ``where`` conditions (a number for a
    numeric column, a text for a text column).

    Parameters
    ----------
    tables : dict
        ``{"assignments": t, "events": t, "users": t or None}`` (Ibis tables, documented names).
    metrics : list of MetricDefinition
        Event-log metrics.
    names : dict, optional
        Documented name -> the source's own name (the ``columns`` mapping), for the messages.
    """
    names = names or {}

    def label(table: str, col: str) -> str:
        own = names.get(col, col)
        return f"column {table}.{own}" + (f" (mapped to {col})" if own != col else "")

    needed = {"assignments": ("user_id", "variant", "assigned_at"),
              "events": ("user_id", "event_time", "event_type"), "users": ("user_id",)}
    for tname, cols in needed.items():
        t = tables.get(tname)
        if t is None:
            continue
        schema = t.schema()
        documented = {c.name: c for c in TABLES[tname]}
        for col in cols:
            if col not in schema:
                raise SchemaError(f"{label(tname, col)} is missing (columns: "
                                  f"{', '.join(schema.names)}); map yours with columns=")
            want = documented[col].dtype
            if not _type_ok(schema[col], want):
                raise SchemaError(f"{label(tname, col)} has type {schema[col]}, expected "
                                  f"{want}" + (" (text timestamps: convert them, or cast in a "
                                               "view)" if want == "timestamp" else ""))
    events = tables.get("events")
    if events is None:
        return
    schema = events.schema()
    for m in metrics:
        parts = [("", m.numerator)] + ([("denominator ", m.denominator)]
                                       if m.denominator is not None else [])
        for prefix, agg in parts:
            col = agg.column
            if col is not None and col in schema and agg.aggregation == "sum" \
                    and not (schema[col].is_numeric() or schema[col].is_boolean()):
                raise SchemaError(f"{label('events', col)} has type {schema[col]}; metric "
                                  f"{m.name!r} sums it ({prefix}aggregation: sum) and needs "
                                  "numbers")
            for i, cond in enumerate(agg.where):
                if cond.column in schema and not _where_value_ok(schema[cond.column],
                                                                 cond.value):
                    raise SchemaError(
                        f"metric {m.name!r}, {prefix}where[{i}]: {label('events', cond.column)}"
                        f" has type {schema[cond.column]}, but the value {cond.value!r} is a "
                        f"{type(cond.value).__name__}")
