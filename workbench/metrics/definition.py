"""Metric definitions: the YAML (or Python mapping) schema, validated into :class:`MetricDefinition`.

A metrics file is a YAML mapping with a ``metrics`` list (and optional ``defaults`` merged into
each metric). One metric::

    - name: revenue_per_user          # required, unique; letters, digits, underscores
      description: revenue per exposed user
      kind: mean                      # proportion | mean | ratio
      event_type: order               # one type or a list (omit: every event)
      where:                          # optional, SQL-free; all must hold
        - {column: revenue, op: ">", value: 0}   # op: == != > >= < <= in not_in is_null not_null
      aggregation: sum                # count | sum | any | distinct  (per unit)
      column: revenue                 # for sum and distinct
      # ratio metrics: numerator / denominator, each with event_type, where, aggregation, column
      window_days: null               # attribution window after exposure; null = to end of experiment
      cap: {percentile: 0.999}        # or {value: 500}; winsorizes unit values (computed in the engine)
      higher_is_better: true
      role: primary                   # primary | secondary | guardrail
      cuped: true                     # pre-period covariate: the same aggregation before start_date
      pre_period_days: 14
      covariates: [revenue_per_user, sessions]   # regression adjustment (metrics/covariates.py):
      attributes: [device]            # pre-period values of metrics; users columns, one-hot
      log_stats: false                # mean metrics: emit positive_n, log_sum, log_sum_squares
      margin: {relative: 0.01}        # or {absolute: 0.5}: tolerated harm (non-inferiority)
      margin_kind: non-inferiority    # or superiority (then the margin is the gain required)
      quantile: 0.9                   # kind: quantile only: the level (0.5 median, 0.9 p90)
      level: unit                     # quantiles: of the unit values (default), or `event`: of
                                      # `column` over all qualifying events (no aggregation)

Metrics of a per-unit table (one row per unit, :meth:`workbench.Experiment.from_units`) are
declared on its columns; ``role``, ``higher_is_better``, ``cap``, ``description`` and
``log_stats`` mean the same::

    - {name: revenue, kind: mean, column: revenue, pre_column: pre_revenue}   # CUPED on pre_revenue
    - {name: converted, kind: proportion, column: converted}                  # 1 when > 0
    - {name: p90_latency, kind: quantile, column: latency, quantile: 0.9}    # no CUPED, no cap
    - name: aov
      kind: ratio                     # sum of revenue / sum of orders
      numerator: revenue              # column names (not mappings)
      denominator: orders
      pre_numerator: pre_revenue      # optional CUPED covariates, both or neither
      pre_denominator: pre_orders

A metric is per-unit when it names ``pre_column``/``pre_numerator``/``pre_denominator``, a ratio
whose numerator is a column name, or a mean/proportion with a ``column`` but no
``aggregation``, ``event_type`` or ``where``. In Python: :func:`mean`, :func:`proportion`,
:func:`ratio`, :func:`quantile`.

An event log whose columns have other names maps them in a top-level ``columns:`` mapping of
the file (documented name -> yours; :func:`load_columns`)::

    columns: {user_id: customer_id, event_time: ts, event_type: kind, assigned_at: exposed_at}

:mod:`workbench.metrics.compiler` turns definitions into engine expressions.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import MetricDefinitionError
from workbench.stats.schema import KINDS  # the stats engine defines the kinds it analyses

AGGREGATIONS = ("count", "sum", "any", "distinct")
ROLES = ("primary", "secondary", "guardrail")
OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in", "is_null", "not_null")
SAMPLE_METRICS = Path(__file__).resolve().parent.parent / "data" / "checkout_metrics.yml"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRIC_KEYS = {
    "name", "description", "kind", "event_type", "where", "aggregation", "column", "numerator",
    "denominator", "window_days", "cap", "higher_is_better", "role", "cuped", "pre_period_days",
    "log_stats", "quantile", "level",
}
# Per-unit (column) metrics: the keys they may have; defaults with other keys are not applied.
_UNIT_KEYS = {
    "name", "description", "kind", "column", "pre_column", "numerator", "denominator",
    "pre_numerator", "pre_denominator", "cap", "higher_is_better", "role", "log_stats",
    "quantile",
}
_METRIC_KEYS |= {"margin", "margin_kind"}  # margins (workbench/stats/margin.py)
_UNIT_KEYS |= {"margin", "margin_kind"}
# regression adjustment with several covariates (workbench/metrics/covariates.py)
_METRIC_KEYS |= {"covariates", "attributes"}
_UNIT_KEYS |= {"covariates"}
MARGIN_SCALES = ("relative", "absolute")
MARGIN_KINDS = ("non-inferiority", "superiority")
_UNIT_MARKERS = ("pre_column", "pre_numerator", "pre_denominator")
EVENTS, UNITS = "events", "units"
LEVELS = ("unit", "event")  # quantile metrics: of unit values, or of all events (clustered)
_AGG_KEYS = {"event_type", "where", "aggregation", "column"}


@dataclass(frozen=True)
class Condition:
    """A filter on an events column: ``column op value``."""

    column: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Aggregate:
    """What is aggregated per unit: events of ``event_types`` passing ``where``, by ``aggregation``."""

    aggregation: str = "count"
    column: str | None = None
    event_types: tuple[str, ...] = ()
    where: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class MetricDefinition:
    """One metric, validated. See the module docstring for the YAML fields.

    Attributes
    ----------
    name, kind, description : str
    numerator : Aggregate
        The unit value ``y`` (the whole metric for proportion and mean metrics).
    denominator : Aggregate or None
        The unit denominator ``d`` of a ratio metric.
    window_days : float or None
        Attribution window after exposure; None runs to the end of the experiment.
    cap_value, cap_percentile : float or None
        Winsorization of unit values: a fixed upper bound, or a quantile in (0, 1).
    higher_is_better : bool
    role : str
        'primary', 'secondary' or 'guardrail'.
    cuped : bool
    pre_period_days : int
    log_stats : bool
    table : str
        ``'events'`` (aggregated from an event log) or ``'units'`` (columns of a per-unit table:
        ``numerator.column``, ``denominator.column``, :attr:`pre_numerator`,
        :attr:`pre_denominator`; see :attr:`unit_columns`).
    pre_numerator, pre_denominator : str or None
        Per-unit metrics: the CUPED covariate columns of ``y`` and ``d``.
    """

    name: str
    kind: str
    numerator: Aggregate
    denominator: Aggregate | None = None
    description: str = ""
    window_days: float | None = None
    cap_value: float | None = None
    cap_percentile: float | None = None
    higher_is_better: bool = True
    role: str = "secondary"
    cuped: bool = False
    pre_period_days: int = 14
    log_stats: bool = False
    table: str = EVENTS
    pre_numerator: str | None = None
    pre_denominator: str | None = None
    quantile: float | None = None
    level: str = "unit"
    margin: float | None = None
    margin_scale: str = "relative"
    margin_kind: str = "non-inferiority"
    covariates: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    covariate_parts: tuple[tuple[str, Aggregate], ...] = ()

    @property
    def unit_columns(self) -> dict[str, str]:
        """Per-unit metrics: the column of each unit value, keyed by tag (``y``, ``d``, ``x``,
        ``w``; see :attr:`parts`). Empty for event metrics."""
        if self.table != UNITS:
            return {}
        cols = {"y": self.numerator.column}
        if self.denominator is not None:
            cols["d"] = self.denominator.column
        if self.pre_numerator is not None:
            cols["x"] = self.pre_numerator
        if self.pre_denominator is not None:
            cols["w"] = self.pre_denominator
        return cols

    @property
    def capped(self) -> bool:
        """Whether unit values are winsorized."""
        return self.cap_value is not None or self.cap_percentile is not None

    @property
    def parts(self) -> tuple[tuple[str, Aggregate, str], ...]:
        """The unit values the metric is built from, as ``(tag, aggregate, period)``.

        ``y`` is the numerator during the experiment, ``d`` the ratio denominator, ``x`` and
        ``w`` their pre-period values (CUPED covariates); ``period`` is ``"during"`` or ``"pre"``.
        The compiler computes one column per part and the statistics that need only these.
        """
        if self.level == "event":  # computed from the events by metrics/quantile.py
            return ()
        parts = [("y", self.numerator, "during")]
        if self.denominator is not None:
            parts.append(("d", self.denominator, "during"))
        if self.cuped:
            parts.append(("x", self.numerator, "pre"))
            if self.denominator is not None:
                parts.append(("w", self.denominator, "pre"))
        # covariates c0, c1, ...: pre-period values of other metrics (workbench/metrics/covariates.py)
        parts += [(f"c{j}", agg, "pre") for j, (_, agg) in enumerate(self.covariate_parts)]
        return tuple(parts)


def fail(metric: str, fld: str, msg: str) -> MetricDefinitionError:
    """The error naming ``metric`` and the field ``fld`` at fault (also used by the compiler)."""
    return MetricDefinitionError(f"metric {metric!r}, field {fld!r}: {msg}")


def _parse_aggregate(name: str, spec: Mapping, prefix: str, default_agg: str) -> Aggregate:
    if prefix:
        for key in set(spec) - _AGG_KEYS:
            raise fail(name, f"{prefix}{key}", "unknown field")
    agg = spec.get("aggregation", default_agg)
    if agg not in AGGREGATIONS:
        raise fail(name, f"{prefix}aggregation", f"must be one of {AGGREGATIONS}, got {agg!r}")
    column = spec.get("column")
    if agg in ("sum", "distinct") and not column:
        raise fail(name, f"{prefix}column", f"aggregation {agg!r} needs a column")
    if column is not None and not isinstance(column, str):
        raise fail(name, f"{prefix}column", f"must be a column name, got {column!r}")
    et = spec.get("event_type")
    if et is None:
        types: tuple[str, ...] = ()
    elif isinstance(et, str):
        types = (et,)
    elif isinstance(et, Sequence) and all(isinstance(x, str) for x in et) and et:
        types = tuple(et)
    else:
        raise fail(name, f"{prefix}event_type", f"must be a string or list of strings, got {et!r}")
    where = spec.get("where") or []
    if isinstance(where, Mapping):
        where = [where]
    conds = []
    for i, c in enumerate(where):
        fld = f"{prefix}where[{i}]"
        if not isinstance(c, Mapping) or "column" not in c or "op" not in c:
            raise fail(name, fld, "must be a mapping with 'column', 'op' (and 'value')")
        if c["op"] not in OPS:
            raise fail(name, fld, f"op must be one of {OPS}, got {c['op']!r}")
        value = c.get("value")
        if c["op"] in ("in", "not_in"):
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise fail(name, fld, f"op {c['op']!r} needs a list value")
            value = tuple(value)
        elif c["op"] not in ("is_null", "not_null") and value is None:
            raise fail(name, fld, f"op {c['op']!r} needs a value")
        conds.append(Condition(str(c["column"]), c["op"], value))
    return Aggregate(agg, column, types, tuple(conds))


def parse_metric(spec: Mapping, defaults: Mapping | None = None) -> MetricDefinition:
    """Validate one metric mapping (YAML) and return its :class:`MetricDefinition`.

    Raises
    ------
    MetricDefinitionError
        Naming the metric and the field at fault.
    """
    if not isinstance(spec, Mapping):
        raise MetricDefinitionError(f"a metric must be a mapping, got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricDefinitionError(
            f"metric {name!r}, field 'name': must be an identifier (letters, digits, _)")
    if _is_unit_metric(spec, {**(defaults or {}), **spec}):
        return _parse_unit_metric(spec, defaults or {})
    own, spec = spec, {**(defaults or {}), **spec}
    for key in spec:
        if key not in _METRIC_KEYS:
            raise fail(name, key, "unknown field")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise fail(name, "kind", f"must be one of {KINDS}, got {kind!r}")
    denominator = None
    if kind == "ratio":
        for part in ("numerator", "denominator"):
            if not isinstance(spec.get(part), Mapping):
                raise fail(name, part, "a ratio metric needs a mapping "
                            "(event_type, aggregation, column)")
        for key in ("event_type", "where", "aggregation", "column"):
            if key in spec:
                raise fail(name, key, "a ratio metric sets it inside numerator/denominator")
        numerator = _parse_aggregate(name, spec["numerator"], "numerator.", "count")
        denominator = _parse_aggregate(name, spec["denominator"], "denominator.", "count")
    else:
        for part in ("numerator", "denominator"):
            if part in spec:
                raise fail(name, part, f"only ratio metrics have one (kind is {kind!r})")
        numerator = _parse_aggregate(
            name, {k: spec[k] for k in _AGG_KEYS if k in spec}, "",
            "any" if kind == "proportion" else "count")
    quantile, level = _quantile_fields(name, kind, spec, own)
    if level == "event":  # the values of `column` over the qualifying events
        for key in ("aggregation",):
            if key in own:
                raise fail(name, key, "an event-level quantile takes the values of `column` "
                           "over events (no per-unit aggregation)")
        if not spec.get("column"):
            raise fail(name, "column", "an event-level quantile needs a column")
        numerator = replace(numerator, aggregation="sum")
    window = spec.get("window_days")
    if window is not None and (not isinstance(window, int | float) or isinstance(window, bool)
                               or window <= 0):
        raise fail(name, "window_days", f"must be a positive number of days, got {window!r}")
    common = _common(name, kind, spec)
    cuped = spec.get("cuped", False)
    if not isinstance(cuped, bool):
        raise fail(name, "cuped", f"must be true or false, got {cuped!r}")
    if kind == "quantile":  # a `cuped: true` of the defaults is not for quantiles
        if own.get("cuped"):
            raise fail(name, "cuped", "CUPED does not apply to quantile metrics")
        cuped = False
    pre_days = spec.get("pre_period_days", 14)
    if not isinstance(pre_days, int) or isinstance(pre_days, bool) or pre_days <= 0:
        raise fail(name, "pre_period_days", f"must be a positive integer, got {pre_days!r}")
    return MetricDefinition(
        name=name, kind=kind, numerator=numerator, denominator=denominator,
        window_days=window, cuped=cuped, pre_period_days=pre_days, quantile=quantile,
        level=level, **common)


def _quantile_fields(name: str, kind: str, spec: Mapping, own: Mapping) -> tuple:
    """``quantile`` (the level q in (0, 1)) and ``level`` of a quantile metric; neither
    elsewhere."""
    if kind != "quantile":
        for key in ("quantile", "level"):
            if key in own:
                raise fail(name, key, f"only quantile metrics have one (kind is {kind!r})")
        return None, "unit"
    q = spec.get("quantile")
    if not isinstance(q, int | float) or isinstance(q, bool) or not 0 < q < 1:
        raise fail(name, "quantile", f"must be a level in (0, 1), e.g. 0.9, got {q!r}")
    level = spec.get("level", "unit")
    if level not in LEVELS:
        raise fail(name, "level", f"must be one of {LEVELS}, got {level!r}")
    return float(q), level


def _common(name: str, kind: str, spec: Mapping) -> dict:
    """The fields event and per-unit metrics share: description, cap, direction, role, log."""
    cap_value = cap_pct = None
    cap = spec.get("cap")
    if cap is not None:
        if kind == "proportion":
            raise fail(name, "cap", "a proportion cannot be capped")
        if kind == "quantile":
            raise fail(name, "cap", "a quantile is not moved by outliers: it needs no cap")
        if not isinstance(cap, Mapping) or len(cap) != 1 or not ({"value", "percentile"} & set(cap)):
            raise fail(name, "cap", "must be {value: X} or {percentile: q}")
        if "value" in cap:
            cap_value = cap["value"]
            if not isinstance(cap_value, int | float) or isinstance(cap_value, bool) \
                    or not np.isfinite(cap_value) or cap_value < 0:
                raise fail(name, "cap.value", f"must be a finite number >= 0, got {cap_value!r}")
            cap_value = float(cap_value)
        else:
            cap_pct = cap["percentile"]
            if not isinstance(cap_pct, int | float) or isinstance(cap_pct, bool) \
                    or not 0 < cap_pct < 1:
                raise fail(name, "cap.percentile", f"must be in (0, 1), got {cap_pct!r}")
            cap_pct = float(cap_pct)
    hib = spec.get("higher_is_better", True)
    if not isinstance(hib, bool):
        raise fail(name, "higher_is_better", f"must be true or false, got {hib!r}")
    role = spec.get("role", "secondary")
    if role not in ROLES:
        raise fail(name, "role", f"must be one of {ROLES}, got {role!r}")
    log_stats = spec.get("log_stats", False)
    if not isinstance(log_stats, bool):
        raise fail(name, "log_stats", f"must be true or false, got {log_stats!r}")
    if log_stats and kind != "mean":
        raise fail(name, "log_stats", "only mean metrics emit log statistics")
    return dict(description=str(spec.get("description") or ""), cap_value=cap_value,
                cap_percentile=cap_pct, higher_is_better=hib, role=role, log_stats=log_stats,
                **_margin(name, spec), **_covariate_fields(name, kind, spec))


def _covariate_fields(name: str, kind: str, spec: Mapping) -> dict:
    """``covariates: [...]`` (metric names, or columns of a per-unit table) and ``attributes:
    [...]`` (columns of the ``users`` table, one-hot): lists of names."""
    out = {}
    for fld in ("covariates", "attributes"):
        value = spec.get(fld)
        if value is None:
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, Sequence) or not all(isinstance(v, str) and v for v in value) \
                or len(set(value)) != len(value):
            raise fail(name, fld, f"must be a list of distinct names, got {value!r}")
        if kind == "quantile" and value:
            raise fail(name, fld, "regression adjustment does not apply to quantile metrics")
        out[fld] = tuple(value)
    return out


def _margin(name: str, spec: Mapping) -> dict:
    """``margin: {relative: 0.01}`` or ``{absolute: 0.5}`` (>= 0, tolerated harm or required
    gain in the good direction) and ``margin_kind``: non-inferiority (default) or
    superiority (declared; e.g. a primary metric's minimum worthwhile effect)."""
    margin = spec.get("margin")
    kind = spec.get("margin_kind", "non-inferiority")
    if kind not in MARGIN_KINDS:
        raise fail(name, "margin_kind", f"must be one of {MARGIN_KINDS}, got {kind!r}")
    if margin is None:
        if "margin_kind" in spec:
            raise fail(name, "margin_kind", "needs a margin ({relative: x} or {absolute: x})")
        return {}
    if not isinstance(margin, Mapping) or len(margin) != 1 or not set(margin) <= set(MARGIN_SCALES):
        raise fail(name, "margin", f"must be {{relative: x}} or {{absolute: x}}, got {margin!r}")
    (scale, value), = margin.items()
    if not isinstance(value, int | float) or isinstance(value, bool) or not np.isfinite(value) \
            or value < 0:
        raise fail(name, f"margin.{scale}", f"must be a finite number >= 0, got {value!r}")
    return dict(margin=float(value), margin_scale=scale, margin_kind=kind)


def _is_unit_metric(own: Mapping, merged: Mapping) -> bool:
    """Whether a metric mapping declares a per-unit (column) metric; see the module docstring."""
    if any(k in own for k in _UNIT_MARKERS):
        return True
    if merged.get("level") == "event":
        return False
    if merged.get("kind") == "ratio":
        return isinstance(own.get("numerator"), str) or isinstance(own.get("denominator"), str)
    return "column" in own and not ({"aggregation", "event_type", "where"} & set(merged))


def _column_name(name: str, fld: str, value: Any, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise fail(name, fld, f"must be a column name, got {value!r}")
    return value


def _parse_unit_metric(own: Mapping, defaults: Mapping) -> MetricDefinition:
    """A per-unit metric: unit values are columns of the table (no aggregation, no window)."""
    name = own["name"]
    for key in own:
        if key not in _UNIT_KEYS:
            raise fail(name, key, "unknown field for a per-unit metric (declared on columns)"
                       if key in _METRIC_KEYS else "unknown field")
    spec = {**{k: v for k, v in defaults.items() if k in _UNIT_KEYS}, **own}
    kind = spec.get("kind")
    if kind not in KINDS:
        raise fail(name, "kind", f"must be one of {KINDS}, got {kind!r}")
    if kind == "ratio":
        for key in ("column", "pre_column"):
            if key in spec:
                raise fail(name, key, "a ratio metric names numerator and denominator columns")
        num = _column_name(name, "numerator", spec.get("numerator"))
        den = _column_name(name, "denominator", spec.get("denominator"))
        pre_num = _column_name(name, "pre_numerator", spec.get("pre_numerator"), False)
        pre_den = _column_name(name, "pre_denominator", spec.get("pre_denominator"), False)
        if (pre_num is None) != (pre_den is None):
            raise fail(name, "pre_numerator" if pre_num is None else "pre_denominator",
                       "a ratio's CUPED needs both pre_numerator and pre_denominator")
    else:
        for key in ("numerator", "denominator", "pre_numerator", "pre_denominator"):
            if key in spec:
                raise fail(name, key, f"only ratio metrics have one (kind is {kind!r})")
        num = _column_name(name, "column", spec.get("column"))
        den = None
        pre_num = _column_name(name, "pre_column", spec.get("pre_column"), False)
        pre_den = None
    quantile, _ = _quantile_fields(name, kind, spec, spec)
    if kind == "quantile" and pre_num is not None:
        raise fail(name, "pre_column", "CUPED does not apply to quantile metrics")
    return MetricDefinition(
        name=name, kind=kind, numerator=Aggregate("sum", num),
        denominator=None if den is None else Aggregate("sum", den),
        cuped=pre_num is not None, table=UNITS, pre_numerator=pre_num,
        pre_denominator=pre_den, quantile=quantile, **_common(name, kind, spec))


def _unit_spec(kind: str, name: str | None, default_name: str, cap: Any, **fields) -> dict:
    if isinstance(cap, int | float) and not isinstance(cap, bool):
        cap = {"value": cap}
    if name is None:  # a column name that is not an identifier still gives a usable name
        name = re.sub(r"\W", "_", str(default_name))
        name = name if _NAME.match(name) else f"m_{name}"
    spec = {"name": name, "kind": kind, "cap": cap, **fields}
    return {k: v for k, v in spec.items() if v is not None}


def _listed(columns: Sequence[str] | str | None) -> list | None:
    """``covariates=`` of the per-unit helpers as the YAML's list (a single name allowed)."""
    if columns is None:
        return None
    return [columns] if isinstance(columns, str) else list(columns)


def mean(column: str, cuped: str | None = None, *, name: str | None = None,
         role: str = "secondary", higher_is_better: bool = True, cap: Any = None,
         description: str = "", log_stats: bool = False, margin: Any = None,
         margin_kind: str | None = None,
         covariates: Sequence[str] | None = None) -> MetricDefinition:
    """A per-unit mean metric: the average of ``column`` over units.

    Parameters
    ----------
    column : str
        Column of the per-unit table (NULL, NaN and inf count as 0; the checks report them).
    cuped : str, optional
        Pre-period covariate column (CUPED variance reduction).
    name : str, optional
        Default: the key it is given under in ``Experiment.from_units(metrics={...})``, else
        ``column``.
    role, higher_is_better, description, log_stats
        As in the YAML (module docstring).
    margin, margin_kind : mapping, str, optional
        ``{"relative": 0.01}`` or ``{"absolute": 0.5}``; "non-inferiority" (default) or
        "superiority" (:mod:`workbench.stats.margin`).
    covariates : list of str, optional
        Columns of the per-unit table to adjust for by regression (pre-period values, unit
        attributes; a text column is one-hot encoded): :mod:`workbench.metrics.covariates`.
    cap : float or mapping, optional
        Winsorize unit values: a number (upper bound), ``{"value": x}`` or
        ``{"percentile": q}``.
    """
    return parse_metric(_unit_spec(
        "mean", name, column, cap, column=column, pre_column=cuped, role=role,
        higher_is_better=higher_is_better, description=description, log_stats=log_stats,
        margin=margin, margin_kind=margin_kind, covariates=_listed(covariates)))


def proportion(column: str, cuped: str | None = None, *, name: str | None = None,
               role: str = "secondary", higher_is_better: bool = True,
               description: str = "", margin: Any = None,
               margin_kind: str | None = None,
               covariates: Sequence[str] | None = None) -> MetricDefinition:
    """A per-unit proportion: the share of units whose ``column`` is positive (or true).

    Parameters as :func:`mean` (a proportion cannot be capped).
    """
    return parse_metric(_unit_spec(
        "proportion", name, column, None, column=column, pre_column=cuped, role=role,
        higher_is_better=higher_is_better, description=description, margin=margin,
        margin_kind=margin_kind, covariates=_listed(covariates)))


def quantile(column: str, q: float, *, name: str | None = None, role: str = "secondary",
             higher_is_better: bool = True, description: str = "") -> MetricDefinition:
    """A per-unit quantile metric: the ``q`` quantile of ``column`` over units (e.g.
    ``wb.quantile("latency", 0.9)`` for p90), compared by the outer confidence interval
    (:mod:`workbench.stats.quantile`).

    Parameters
    ----------
    column : str
        Column of the per-unit table (NULL, NaN and inf count as 0, as for :func:`mean`).
    q : float
        The level, in (0, 1): 0.5 for the median, 0.9 for p90.
    name, role, higher_is_better, description
        As :func:`mean` (the default name is ``<column>_p<100 q>``, e.g. ``latency_p90``).
    """
    default = f"{column}_p{format(100 * q, 'g').replace('.', '_')}" \
        if isinstance(q, int | float) else column
    return parse_metric(_unit_spec(
        "quantile", name, default, None, column=column, quantile=q, role=role,
        higher_is_better=higher_is_better, description=description))


def ratio(numerator: str, denominator: str, cuped: tuple[str, str] | None = None, *,
          name: str | None = None, role: str = "secondary", higher_is_better: bool = True,
          cap: Any = None, description: str = "", margin: Any = None,
          margin_kind: str | None = None,
          covariates: Sequence[str] | None = None) -> MetricDefinition:
    """A per-unit ratio metric: ``sum(numerator) / sum(denominator)`` over units (delta method).

    Parameters
    ----------
    numerator, denominator : str
        Columns of the per-unit table.
    cuped : (str, str), optional
        Pre-period covariate columns of the numerator and of the denominator.
    name, role, higher_is_better, cap, description
        As :func:`mean` (the default name is ``<numerator>_per_<denominator>``).
    """
    if cuped is not None and (isinstance(cuped, str) or len(cuped) != 2):
        raise MetricDefinitionError(
            f"ratio({numerator!r}, {denominator!r}): cuped must be a pair of columns "
            f"(pre_numerator, pre_denominator), got {cuped!r}")
    pre_num, pre_den = cuped if cuped is not None else (None, None)
    return parse_metric(_unit_spec(
        "ratio", name, f"{numerator}_per_{denominator}", cap, numerator=numerator,
        denominator=denominator, pre_numerator=pre_num, pre_denominator=pre_den, role=role,
        higher_is_better=higher_is_better, description=description, margin=margin,
        margin_kind=margin_kind, covariates=_listed(covariates)))


def _read_yaml(source: Any) -> Any:
    """A metrics YAML file parsed (a path), or ``source`` itself (anything else)."""
    import yaml

    if not isinstance(source, str | Path):
        return source
    path = Path(source)
    if not path.exists():
        raise MetricDefinitionError(f"metrics file {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MetricDefinitionError(f"metrics file {str(path)!r} is not valid YAML: {exc}") \
            from exc


def load_metrics(source: str | Path | Mapping | Iterable | None = None) -> list[MetricDefinition]:
    """Read metric definitions.

    Parameters
    ----------
    source : path, mapping, list or None
        A YAML file, a parsed mapping with ``metrics`` (and ``defaults``), a list of metric
        mappings or :class:`MetricDefinition` objects; None loads the sample experiment's file.

    Raises
    ------
    MetricDefinitionError
        Naming the metric and the field at fault.
    """
    if source is None:
        source = SAMPLE_METRICS
    source = _read_yaml(source)
    defaults: Mapping = {}
    if isinstance(source, Mapping):
        defaults = source.get("defaults") or {}
        if "metrics" not in source:
            raise MetricDefinitionError("metrics file has no 'metrics' list")
        source = source["metrics"]
    if not isinstance(source, Iterable) or isinstance(source, str | bytes):
        raise MetricDefinitionError(f"'metrics' must be a list, got {type(source).__name__}")
    out = [m if isinstance(m, MetricDefinition) else parse_metric(m, defaults) for m in source]
    if not out:
        raise MetricDefinitionError("no metrics defined")
    seen: set[str] = set()
    for m in out:
        if m.name in seen:
            raise fail(m.name, "name", "defined twice")
        seen.add(m.name)
    return resolve_covariates(out)


def resolve_covariates(metrics: Sequence[MetricDefinition]) -> list[MetricDefinition]:
    """Event metrics: the aggregates of the metrics named in ``covariates`` (``covariate_parts``,
    turned into unit columns by :mod:`workbench.metrics.covariates`)."""
    by_name = {m.name: m for m in metrics}
    out = []
    for m in metrics:
        if m.table == UNITS and m.attributes:
            raise fail(m.name, "attributes", "per-unit metrics name their attribute columns in "
                       "`covariates` (a text column is one-hot)")
        if m.table != EVENTS or not m.covariates:
            out.append(m)
            continue
        parts = []
        for name in m.covariates:
            c = by_name.get(name)
            if c is None or c.table != EVENTS or c.level == "event" or c.kind == "quantile":
                raise fail(m.name, "covariates", f"{name!r} is not a mean, proportion or ratio "
                           f"metric of this file (metrics: {sorted(by_name)})")
            num = c.numerator
            if c.kind == "proportion" and num.aggregation == "count":
                num = replace(num, aggregation="any")  # a proportion's value is 0/1
            if c.denominator is None:
                parts.append((name, num))
            else:
                parts += [(f"{name}_numerator", num), (f"{name}_denominator", c.denominator)]
        out.append(replace(m, covariate_parts=tuple(parts)))
    return out


def renamed(metrics: list[MetricDefinition], mapping: Mapping[str, str]) -> list:
    """Metrics whose ``column``/``where`` name a mapped column of yours, reading its documented
    name (the tables are renamed by :func:`workbench.data.layout.conform`)."""
    back = {yours: ours for ours, yours in mapping.items()}
    if not back:
        return metrics

    def agg(a):
        if a is None:
            return None
        where = tuple(replace(c, column=back.get(c.column, c.column)) for c in a.where)
        return replace(a, column=back.get(a.column, a.column), where=where)

    return [replace(m, numerator=agg(m.numerator), denominator=agg(m.denominator))
            for m in metrics]


def load_columns(source: Any = None) -> dict[str, str]:
    """The column mapping of a metrics YAML (its top-level ``columns:``), validated.

    Keys are documented column names (:mod:`workbench.data.schema`), values the names the
    source uses, e.g. ``{user_id: customer_id, event_time: ts, event_type: kind}``: the event
    log is read as if its columns had the documented names. Metric ``column`` and ``where``
    fields name the source's own columns.

    Parameters
    ----------
    source : path, mapping or None
        A metrics YAML file, a parsed mapping or a plain ``{documented: yours}`` mapping; a
        list of metrics (or None) has no mapping.

    Raises
    ------
    MetricDefinitionError
        Naming the key at fault.
    """
    from workbench.data.schema import TABLES

    source = _read_yaml(source)
    if not isinstance(source, Mapping):
        return {}
    if "metrics" in source or "columns" in source:
        source = source.get("columns") or {}
    if not isinstance(source, Mapping):
        raise MetricDefinitionError(f"'columns' must be a mapping of documented column names to "
                                    f"yours, got {type(source).__name__}")
    documented = sorted({c.name for cols in TABLES.values() for c in cols})
    out = {}
    for key, value in source.items():
        if key not in documented:
            raise MetricDefinitionError(
                f"columns: {key!r} is not a documented column (one of {', '.join(documented)})")
        if not isinstance(value, str) or not value:
            raise MetricDefinitionError(f"columns: {key!r} must map to a column name, "
                                        f"got {value!r}")
        out[str(key)] = value
    return out
