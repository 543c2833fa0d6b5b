"""Metric definitions (YAML) compiled to engine-side aggregations producing sufficient statistics.

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
      log_stats: false                # mean metrics: emit positive_n, log_sum, log_sum_squares

Unit values: per user, over events in ``[assigned_at, min(assigned_at + window, end_date + 1 day))``;
users without events count as zeros. A ``proportion`` is 1 when the aggregate is positive.
Percentile caps are computed over all units of the experiment (zeros included), the CUPED
covariate being capped at its own percentile. NaN/inf values of a summed column are ignored
(:meth:`workbench.experiment.Experiment.validate` counts them).

Compilation (:class:`MetricCompiler`) makes one scan of the events joined to the units, one
aggregation per unit and one per variant (x segment, x day), all inside the engine; only the
few rows of sufficient statistics reach pandas.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.data.sources import execute as _execute
from workbench.errors import MetricDefinitionError, SourceError

KINDS = ("proportion", "mean", "ratio")
AGGREGATIONS = ("count", "sum", "any", "distinct")
ROLES = ("primary", "secondary", "guardrail")
OPS = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in", "is_null", "not_null")
OTHER = "(other)"
ALL = "(all)"
SAMPLE_METRICS = Path(__file__).resolve().parent / "data" / "checkout_metrics.yml"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METRIC_KEYS = {
    "name", "description", "kind", "event_type", "where", "aggregation", "column", "numerator",
    "denominator", "window_days", "cap", "higher_is_better", "role", "cuped", "pre_period_days",
    "log_stats",
}
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

    @property
    def capped(self) -> bool:
        return self.cap_value is not None or self.cap_percentile is not None


def _fail(metric: str, fld: str, msg: str) -> MetricDefinitionError:
    return MetricDefinitionError(f"metric {metric!r}, field {fld!r}: {msg}")


def _parse_aggregate(name: str, spec: Mapping, prefix: str, default_agg: str) -> Aggregate:
    if prefix:
        for key in set(spec) - _AGG_KEYS:
            raise _fail(name, f"{prefix}{key}", "unknown field")
    agg = spec.get("aggregation", default_agg)
    if agg not in AGGREGATIONS:
        raise _fail(name, f"{prefix}aggregation", f"must be one of {AGGREGATIONS}, got {agg!r}")
    column = spec.get("column")
    if agg in ("sum", "distinct") and not column:
        raise _fail(name, f"{prefix}column", f"aggregation {agg!r} needs a column")
    if column is not None and not isinstance(column, str):
        raise _fail(name, f"{prefix}column", f"must be a column name, got {column!r}")
    et = spec.get("event_type")
    if et is None:
        types: tuple[str, ...] = ()
    elif isinstance(et, str):
        types = (et,)
    elif isinstance(et, Sequence) and all(isinstance(x, str) for x in et) and et:
        types = tuple(et)
    else:
        raise _fail(name, f"{prefix}event_type", f"must be a string or list of strings, got {et!r}")
    where = spec.get("where") or []
    if isinstance(where, Mapping):
        where = [where]
    conds = []
    for i, c in enumerate(where):
        fld = f"{prefix}where[{i}]"
        if not isinstance(c, Mapping) or "column" not in c or "op" not in c:
            raise _fail(name, fld, "must be a mapping with 'column', 'op' (and 'value')")
        if c["op"] not in OPS:
            raise _fail(name, fld, f"op must be one of {OPS}, got {c['op']!r}")
        value = c.get("value")
        if c["op"] in ("in", "not_in"):
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise _fail(name, fld, f"op {c['op']!r} needs a list value")
            value = tuple(value)
        elif c["op"] not in ("is_null", "not_null") and value is None:
            raise _fail(name, fld, f"op {c['op']!r} needs a value")
        conds.append(Condition(str(c["column"]), c["op"], value))
    return Aggregate(agg, column, types, tuple(conds))


def parse_metric(spec: Mapping, defaults: Mapping | None = None) -> MetricDefinition:
    """Validate one metric mapping (YAML) and return its :class:`MetricDefinition`."""
    if not isinstance(spec, Mapping):
        raise MetricDefinitionError(f"a metric must be a mapping, got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricDefinitionError(
            f"metric {name!r}, field 'name': must be an identifier (letters, digits, _)")
    spec = {**(defaults or {}), **spec}
    for key in spec:
        if key not in _METRIC_KEYS:
            raise _fail(name, key, "unknown field")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise _fail(name, "kind", f"must be one of {KINDS}, got {kind!r}")
    denominator = None
    if kind == "ratio":
        for part in ("numerator", "denominator"):
            if not isinstance(spec.get(part), Mapping):
                raise _fail(name, part, "a ratio metric needs a mapping "
                            "(event_type, aggregation, column)")
        for key in ("event_type", "where", "aggregation", "column"):
            if key in spec:
                raise _fail(name, key, "a ratio metric sets it inside numerator/denominator")
        numerator = _parse_aggregate(name, spec["numerator"], "numerator.", "count")
        denominator = _parse_aggregate(name, spec["denominator"], "denominator.", "count")
    else:
        for part in ("numerator", "denominator"):
            if part in spec:
                raise _fail(name, part, f"only ratio metrics have one (kind is {kind!r})")
        numerator = _parse_aggregate(
            name, {k: spec[k] for k in _AGG_KEYS if k in spec}, "",
            "any" if kind == "proportion" else "count")
    window = spec.get("window_days")
    if window is not None and (not isinstance(window, int | float) or isinstance(window, bool)
                               or window <= 0):
        raise _fail(name, "window_days", f"must be a positive number of days, got {window!r}")
    cap_value = cap_pct = None
    cap = spec.get("cap")
    if cap is not None:
        if kind == "proportion":
            raise _fail(name, "cap", "a proportion cannot be capped")
        if not isinstance(cap, Mapping) or len(cap) != 1 or not ({"value", "percentile"} & set(cap)):
            raise _fail(name, "cap", "must be {value: X} or {percentile: q}")
        if "value" in cap:
            cap_value = cap["value"]
            if not isinstance(cap_value, int | float) or isinstance(cap_value, bool) \
                    or not np.isfinite(cap_value) or cap_value < 0:
                raise _fail(name, "cap.value", f"must be a finite number >= 0, got {cap_value!r}")
            cap_value = float(cap_value)
        else:
            cap_pct = cap["percentile"]
            if not isinstance(cap_pct, int | float) or isinstance(cap_pct, bool) \
                    or not 0 < cap_pct < 1:
                raise _fail(name, "cap.percentile", f"must be in (0, 1), got {cap_pct!r}")
            cap_pct = float(cap_pct)
    hib = spec.get("higher_is_better", True)
    if not isinstance(hib, bool):
        raise _fail(name, "higher_is_better", f"must be true or false, got {hib!r}")
    role = spec.get("role", "secondary")
    if role not in ROLES:
        raise _fail(name, "role", f"must be one of {ROLES}, got {role!r}")
    cuped = spec.get("cuped", False)
    if not isinstance(cuped, bool):
        raise _fail(name, "cuped", f"must be true or false, got {cuped!r}")
    pre_days = spec.get("pre_period_days", 14)
    if not isinstance(pre_days, int) or isinstance(pre_days, bool) or pre_days <= 0:
        raise _fail(name, "pre_period_days", f"must be a positive integer, got {pre_days!r}")
    log_stats = spec.get("log_stats", False)
    if not isinstance(log_stats, bool):
        raise _fail(name, "log_stats", f"must be true or false, got {log_stats!r}")
    if log_stats and kind != "mean":
        raise _fail(name, "log_stats", "only mean metrics emit log statistics")
    return MetricDefinition(
        name=name, kind=kind, numerator=numerator, denominator=denominator,
        description=str(spec.get("description") or ""), window_days=window,
        cap_value=cap_value, cap_percentile=cap_pct, higher_is_better=hib, role=role,
        cuped=cuped, pre_period_days=pre_days, log_stats=log_stats)


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
    import yaml

    if source is None:
        source = SAMPLE_METRICS
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise MetricDefinitionError(f"metrics file {str(path)!r} does not exist")
        try:
            source = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise MetricDefinitionError(f"metrics file {str(path)!r} is not valid YAML: {exc}") \
                from exc
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
            raise _fail(m.name, "name", "defined twice")
        seen.add(m.name)
    return out


# --------------------------------------------------------------------------------------------
# Compilation


@dataclass(frozen=True)
class ExperimentWindow:
    """Dates of an experiment: exposure runs from ``start_date`` to ``end_date`` inclusive."""

    experiment_id: str
    start_date: dt.date
    end_date: dt.date
    variants: tuple[str, ...] = ()
    planned_weights: tuple[float, ...] = ()
    control: str = "control"

    @property
    def start_ts(self) -> dt.datetime:
        return dt.datetime.combine(self.start_date, dt.time())

    @property
    def end_ts(self) -> dt.datetime:
        """Exclusive end: midnight after ``end_date``."""
        return dt.datetime.combine(self.end_date + dt.timedelta(days=1), dt.time())


def _col_names(*tags: str, metric: str) -> list[str]:
    return [f"{metric}__{t}" for t in tags]


@dataclass
class MetricCompiler:
    """Compile metrics against ``assignments`` / ``events`` / ``users`` Ibis tables.

    Parameters
    ----------
    assignments, events : ibis Table
        Tables with the columns of :mod:`workbench.data.schema`.
    window : ExperimentWindow
    metrics : list of MetricDefinition
    users : ibis Table, optional
        Needed for segment breakdowns.
    exclude_crossovers : bool
        Drop units seen in more than one variant (default). If False they count in the
        variant of their first exposure.
    """

    assignments: Any
    events: Any
    window: ExperimentWindow
    metrics: list[MetricDefinition]
    users: Any = None
    exclude_crossovers: bool = True
    _units: Any = field(default=None, init=False, repr=False)
    _caps: Any = field(default=None, init=False, repr=False)

    # -- units ---------------------------------------------------------------------------
    def units(self):
        """One row per unit: ``user_id, variant, assigned_at`` (crossovers handled)."""
        import ibis

        if self._units is not None:
            return self._units
        a = self.assignments.filter(self.assignments.experiment_id == self.window.experiment_id)
        # min != max instead of a distinct count: same answer, far cheaper on Spark
        per = a.group_by("user_id").aggregate(
            variant=a.variant.argmin(a.assigned_at),
            v_min=a.variant.min(),
            v_max=a.variant.max(),
            assigned_at=a.assigned_at.min(),
        )
        if self.exclude_crossovers:
            per = per.filter(per.v_min == per.v_max)
        self._units = per.select("user_id", "variant", assigned_at=per.assigned_at.cast(
            ibis.dtype("timestamp")))
        return self._units

    # -- events --------------------------------------------------------------------------
    def _check_columns(self) -> None:
        cols = set(self.events.columns)
        for m in self.metrics:
            for part, agg in (("", m.numerator), ("denominator.", m.denominator)):
                if agg is None:
                    continue
                prefix = part if m.kind == "ratio" or part else ""
                if m.kind == "ratio" and not part:
                    prefix = "numerator."
                if agg.column is not None and agg.column not in cols:
                    raise _fail(m.name, f"{prefix}column",
                                f"column {agg.column!r} is not in table 'events'")
                for i, c in enumerate(agg.where):
                    if c.column not in cols:
                        raise _fail(m.name, f"{prefix}where[{i}]",
                                    f"column {c.column!r} is not in table 'events'")

    @staticmethod
    def _condition(e, agg: Aggregate):
        import ibis

        cond = ibis.literal(True)
        if agg.event_types:
            cond = cond & (e.event_type.isin(list(agg.event_types)) if len(agg.event_types) > 1
                           else e.event_type == agg.event_types[0])
        for c in agg.where:
            col = e[c.column]
            if c.op == "is_null":
                cond = cond & col.isnull()
            elif c.op == "not_null":
                cond = cond & col.notnull()
            elif c.op == "in":
                cond = cond & col.isin(list(c.value))
            elif c.op == "not_in":
                cond = cond & ~col.isin(list(c.value))
            else:
                cond = cond & {
                    "==": col.__eq__, "!=": col.__ne__, ">": col.__gt__, ">=": col.__ge__,
                    "<": col.__lt__, "<=": col.__le__}[c.op](c.value)
        return cond

    @staticmethod
    def _value(e, agg: Aggregate):
        """The column to aggregate, with NaN/inf turned into NULL (ignored)."""
        import ibis

        col = e[agg.column]
        if col.type().is_floating():
            col = ibis.ifelse(col.isnan() | col.isinf(), ibis.null(col.type()), col)
        return col

    def _aggregate(self, e, agg: Aggregate, cond):
        cond = cond & self._condition(e, agg)
        if agg.aggregation == "count":
            return e.user_id.count(where=cond)
        if agg.aggregation == "any":
            return e.user_id.count(where=cond)  # made 0/1 after the zero fill
        if agg.aggregation == "sum":
            return self._value(e, agg).sum(where=cond)
        return self._value(e, agg).nunique(where=cond)

    def _periods(self, e, m: MetricDefinition):
        import ibis

        w = self.window
        during = (e.event_time >= e.assigned_at) & (e.event_time < w.end_ts)
        if m.window_days is not None:
            during = during & (e.event_time < e.assigned_at + ibis.interval(
                seconds=int(round(m.window_days * 86400))))
        pre = (e.event_time >= w.start_ts - dt.timedelta(days=m.pre_period_days)) & (
            e.event_time < w.start_ts)
        return during, pre

    def _joined_events(self):
        units = self.units()
        max_pre = max([m.pre_period_days for m in self.metrics if m.cuped] or [0])
        lo = self.window.start_ts - dt.timedelta(days=max_pre)
        ev = self.events.filter((self.events.event_time >= lo)
                                & (self.events.event_time < self.window.end_ts))
        return ev.join(units, ev.user_id == units.user_id).select(
            *[ev[c] for c in ev.columns], units.assigned_at)

    def _parts(self, m: MetricDefinition) -> list[tuple[str, Aggregate, str]]:
        """(tag, aggregate, period) of the unit-level columns of a metric."""
        parts = [("y", m.numerator, "during")]
        if m.denominator is not None:
            parts.append(("d", m.denominator, "during"))
        if m.cuped:
            parts.append(("x", m.numerator, "pre"))
            if m.denominator is not None:
                parts.append(("w", m.denominator, "pre"))
        return parts

    def unit_values(self, capped: bool = True):
        """One row per unit with ``<metric>__y`` (and ``__d``, ``__x``, ``__w``) columns."""

        self._check_columns()
        units = self.units()
        e = self._joined_events()
        # Metrics sharing an aggregate (e.g. revenue in revenue_per_user and revenue_per_order)
        # share one column of the per-unit aggregation.
        aggs, source = {}, {}
        for m in self.metrics:
            during, pre = self._periods(e, m)
            for tag, agg, period in self._parts(m):
                key = (agg, period, m.window_days if period == "during" else m.pre_period_days)
                if key not in source:
                    source[key] = f"a{len(source)}"
                    aggs[source[key]] = self._aggregate(
                        e, agg, during if period == "during" else pre)
                source[(m.name, tag)] = source[key]
        per_unit = e.group_by("user_id").aggregate(**aggs)
        joined = units.left_join(per_unit, units.user_id == per_unit.user_id)
        cols = {}
        for m in self.metrics:
            for tag, agg, _ in self._parts(m):
                name = f"{m.name}__{tag}"
                v = joined[source[(m.name, tag)]].fill_null(0)
                if agg.aggregation == "any" or (m.kind == "proportion" and tag in ("y", "x")):
                    v = (v > 0).cast("int64")
                cols[name] = v.cast("float64")
        out = joined.select(units.user_id, units.variant, units.assigned_at, **cols)
        if capped:
            out = self._cap(out)
        return out

    def _cap(self, t):
        import ibis

        caps = self.cap_thresholds()
        repl = {}
        for _, r in caps.iterrows():
            name = f"{r['metric']}__{r['column']}"
            if name in t.columns:
                repl[name] = ibis.least(t[name], float(r["cap"]))
        return t.mutate(**repl) if repl else t

    def cap_thresholds(self) -> pd.DataFrame:
        """The caps in force: one row per capped metric x column (``y``, or ``x`` for the CUPED
        covariate). Percentiles are computed in the engine (one small query, run once) and then
        applied as constants, so engines without common-subexpression reuse (Spark) do not
        recompute the unit table.
        """
        if self._caps is not None:
            return self._caps
        rows = []
        for m in self.metrics:
            if m.cap_value is not None:
                rows.append({"metric": m.name, "column": "y", "cap": m.cap_value})
                if m.cuped:
                    rows.append({"metric": m.name, "column": "x", "cap": m.cap_value})
        pct = [m for m in self.metrics if m.cap_percentile is not None]
        if pct:
            sub = replace(self, metrics=pct)
            t = sub.unit_values(capped=False)
            exprs = {}
            for m in pct:
                for tag in ("y", "x") if m.cuped else ("y",):
                    exprs[f"{m.name}__{tag}"] = t[f"{m.name}__{tag}"].quantile(m.cap_percentile)
            res = _execute(t.aggregate(**exprs)).iloc[0]
            for k, v in res.items():
                name, tag = k.split("__")
                rows.append({"metric": name, "column": tag, "cap": float(v)})
        self._caps = pd.DataFrame(rows, columns=["metric", "column", "cap"])
        return self._caps

    # -- per variant ---------------------------------------------------------------------
    @staticmethod
    def _stat_exprs(t, m: MetricDefinition) -> dict:
        import ibis

        y = t[f"{m.name}__y"]
        out = {f"{m.name}|sum": y.sum(), f"{m.name}|sum_squares": (y * y).sum()}
        d = t[f"{m.name}__d"] if m.denominator is not None else None
        if d is not None:
            out |= {f"{m.name}|den_sum": d.sum(), f"{m.name}|den_sum_squares": (d * d).sum(),
                    f"{m.name}|sum_product": (y * d).sum()}
        if m.cuped:
            x = t[f"{m.name}__x"]
            out |= {f"{m.name}|pre_sum": x.sum(), f"{m.name}|pre_sum_squares": (x * x).sum(),
                    f"{m.name}|pre_sum_product": (y * x).sum()}
            if d is not None:
                w = t[f"{m.name}__w"]
                out |= {f"{m.name}|pre_den_sum": w.sum(),
                        f"{m.name}|pre_den_sum_squares": (w * w).sum(),
                        f"{m.name}|pre_den_sum_product": (x * w).sum(),
                        f"{m.name}|den_pre_sum_product": (d * x).sum(),
                        f"{m.name}|sum_pre_den_product": (y * w).sum(),
                        f"{m.name}|den_pre_den_sum_product": (d * w).sum()}
        if m.log_stats:
            pos = y > 0
            ly = ibis.ifelse(pos, y, 1.0).ln()
            out |= {f"{m.name}|positive_n": pos.cast("int64").sum(),
                    f"{m.name}|log_sum": ly.sum(), f"{m.name}|log_sum_squares": (ly * ly).sum()}
        return out

    def _to_long(self, wide: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        rows = []
        for _, r in wide.iterrows():
            for m in self.metrics:
                row = {k: r[k] for k in keys}
                row |= {"metric": m.name, "kind": m.kind, "n": int(r["__n"])}
                prefix = f"{m.name}|"
                for c in wide.columns:
                    if c.startswith(prefix):
                        row[c[len(prefix):]] = r[c]
                rows.append(row)
        df = pd.DataFrame(rows)
        from workbench.stats.schema import INPUT_COLUMNS

        front = ["metric", "variant", "kind", "n"]
        groups = [k for k in keys if k != "variant"]
        rest = [c for c in INPUT_COLUMNS if c in df.columns and c not in front]
        df = df[front + rest + groups]
        for c in rest:
            df[c] = df[c].astype("float64")
        order = {m.name: i for i, m in enumerate(self.metrics)}
        df["__o"] = df["metric"].map(order)
        vorder = {v: i for i, v in enumerate(self.window.variants)}
        df["__v"] = df["variant"].map(lambda v: vorder.get(v, len(vorder)))
        df = df.sort_values(["__o", *groups, "__v", "variant"], kind="stable")
        return df.drop(columns=["__o", "__v"]).reset_index(drop=True)

    def overall_expr(self):
        """The Ibis expression of the per-variant statistics (wide: ``<metric>|<stat>``)."""
        t = self.unit_values()
        aggs = {"__n": t.count()}
        for m in self.metrics:
            aggs |= self._stat_exprs(t, m)
        return t.group_by("variant").aggregate(**aggs)

    def sufficient_stats(self) -> pd.DataFrame:
        """Stats-engine input: one row per metric x variant."""
        wide = _execute(self.overall_expr())
        return self._to_long(wide, ["variant"])

    def segment_expr(self, dimension: str, top: Sequence[str]):
        import ibis

        if self.users is None:
            raise SourceError("segment breakdowns need a 'users' table")
        if dimension not in self.users.columns:
            raise SourceError(f"dimension {dimension!r} is not a column of table 'users'")
        t = self.unit_values()
        u = self.users.select(user_id=self.users.user_id,
                              __seg=self.users[dimension].cast("string"))
        j = t.left_join(u, t.user_id == u.user_id)
        seg = j["__seg"]
        seg = ibis.ifelse(seg.isin(list(top)), seg, OTHER) if top else ibis.literal(OTHER)
        j = j.mutate(segment=seg.fill_null(OTHER))
        aggs = {"__n": j.count()}
        for m in self.metrics:
            aggs |= self._stat_exprs(j, m)
        return j.group_by("variant", "segment").aggregate(**aggs)

    def top_values(self, dimension: str, top_n: int) -> list[str]:
        """The ``top_n`` most frequent values of a ``users`` column among the units."""
        if self.users is None:
            raise SourceError("segment breakdowns need a 'users' table")
        if dimension not in self.users.columns:
            raise SourceError(f"dimension {dimension!r} is not a column of table 'users'")
        units = self.units()
        u = self.users
        j = units.join(u, units.user_id == u.user_id)
        counts = _execute(j.group_by(seg=u[dimension].cast("string")).aggregate(n=j.count()))
        counts = counts.dropna().sort_values(["n", "seg"], ascending=[False, True])
        values = list(counts["seg"])
        # Keep every value when at most one would fall in "(other)".
        return values if len(values) <= top_n + 1 else values[:top_n]

    def segment_stats(self, dimensions: Sequence[str], top_n: int = 5) -> pd.DataFrame:
        """Stats-engine input per metric x variant x segment (``dimension``, ``segment``)."""
        frames = []
        for dim in dimensions:
            top = self.top_values(dim, top_n)
            wide = _execute(self.segment_expr(dim, top))
            wide["dimension"] = dim
            frames.append(self._to_long(wide, ["variant", "dimension", "segment"]))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)

    # -- per day (cumulative) ------------------------------------------------------------
    def daily_stats(self) -> pd.DataFrame:
        """Cumulative statistics per day (``date``): units exposed and events seen up to the end
        of that day. Percentile caps use the end-of-experiment thresholds. Metrics counting
        distinct values are left out (their daily increments are not additive).
        """
        import ibis

        metrics = [m for m in self.metrics
                   if "distinct" not in (m.numerator.aggregation,
                                         getattr(m.denominator, "aggregation", None))]
        if not metrics:
            return pd.DataFrame()
        caps = {}
        for _, r in self.cap_thresholds().iterrows():
            caps[(r["metric"], r["column"])] = r["cap"]
        final = self.unit_values(capped=True)
        e = self._joined_events()
        e = e.filter(e.event_time >= e.assigned_at).mutate(day=e.event_time.date())
        incs = {}
        for m in metrics:
            during, _ = self._periods(e, m)
            incs[f"{m.name}__y"] = self._aggregate(e, m.numerator, during)
            if m.denominator is not None:
                incs[f"{m.name}__d"] = self._aggregate(e, m.denominator, during)
        inc = e.group_by("user_id", "day").aggregate(**incs)
        inc = inc.mutate(**{k: inc[k].cast("float64") for k in incs}, entry=ibis.literal(0))
        units = self.units()
        entry = units.select(units.user_id, day=units.assigned_at.date(),
                             **{k: ibis.literal(0.0) for k in incs}, entry=ibis.literal(1))
        both = entry.union(inc.select(entry.columns))
        both = both.group_by("user_id", "day").aggregate(
            entry=both.entry.max(), **{k: both[k].sum() for k in incs})
        keep = ["user_id", "variant"] + [c for c in final.columns if c.endswith(("__x", "__w"))]
        f = final.select(*keep)
        j = both.join(f, both.user_id == f.user_id).select(both, *[f[c] for c in keep[1:]])
        win = ibis.cumulative_window(group_by=j.user_id, order_by=j.day)
        cum = j.mutate(**{k: j[k].sum().over(win) for k in incs})
        g = {}
        for m in metrics:
            y = cum[f"{m.name}__y"]
            if m.numerator.aggregation == "any" or m.kind == "proportion":
                y = (y > 0).cast("float64")
            if m.cap_value is not None:
                y = ibis.least(y, m.cap_value)
            elif (m.name, "y") in caps:
                y = ibis.least(y, float(caps[(m.name, "y")]))
            g[f"{m.name}__y"] = y
            if m.denominator is not None:
                d = cum[f"{m.name}__d"]
                if m.denominator.aggregation == "any":
                    d = (d > 0).cast("float64")
                g[f"{m.name}__d"] = d
        cur = cum.select("user_id", "variant", "day", "entry",
                         *[c for c in keep[2:]], **g)
        lag_win = ibis.window(group_by=cur.user_id, order_by=cur.day)
        prev = cur.mutate(**{f"prev__{k}": cur[k].lag().over(lag_win).fill_null(0.0) for k in g})
        deltas = {"__n": prev.entry.sum()}
        for m in metrics:
            cur_t = {t: prev[f"{m.name}__{t}"] for t in ("y", "d", "x", "w")
                     if f"{m.name}__{t}" in prev.columns}
            old_t = dict(cur_t)
            old_t["y"] = prev[f"prev__{m.name}__y"]
            if "d" in cur_t:
                old_t["d"] = prev[f"prev__{m.name}__d"]
            # entry rows add the fixed covariates once
            ent = prev.entry.cast("float64")
            for tag in ("x", "w"):
                if tag in cur_t:
                    old_t[tag] = cur_t[tag] * (1 - ent)
            new = self._stat_exprs_from(cur_t, m)
            old = self._stat_exprs_from(old_t, m)
            for k in new:
                deltas[k] = (new[k] - old[k]).sum()
        daily = _execute(prev.group_by("variant", "day").aggregate(**deltas))
        daily = daily.sort_values(["variant", "day"])
        value_cols = [c for c in daily.columns if c not in ("variant", "day")]
        days = pd.date_range(self.window.start_date, self.window.end_date, freq="D").date
        frames = []
        for v, grp in daily.groupby("variant", sort=False):
            grp = grp.set_index(pd.to_datetime(grp["day"]).dt.date)[value_cols]
            grp = grp.groupby(level=0).sum().reindex(
                sorted(set(grp.index) | set(days))).fillna(0.0).cumsum()
            grp = grp.loc[[d for d in grp.index if self.window.start_date <= d
                           <= self.window.end_date]]
            grp["variant"] = v
            grp["date"] = grp.index
            frames.append(grp.reset_index(drop=True))
        wide = pd.concat(frames, ignore_index=True)
        sub = replace(self, metrics=metrics)
        out = sub._to_long(wide, ["variant", "date"])
        out = out[out["n"] > 0].reset_index(drop=True)
        return out.sort_values(["metric", "date", "variant"], kind="stable").reset_index(drop=True)

    @staticmethod
    def _stat_exprs_from(v: dict, m: MetricDefinition) -> dict:
        """The per-unit summands of every statistic of ``m`` given values y, d, x, w."""
        import ibis

        y = v["y"]
        out = {f"{m.name}|sum": y, f"{m.name}|sum_squares": y * y}
        if "d" in v:
            d = v["d"]
            out |= {f"{m.name}|den_sum": d, f"{m.name}|den_sum_squares": d * d,
                    f"{m.name}|sum_product": y * d}
        if "x" in v:
            x = v["x"]
            out |= {f"{m.name}|pre_sum": x, f"{m.name}|pre_sum_squares": x * x,
                    f"{m.name}|pre_sum_product": y * x}
            if "w" in v:
                w, d = v["w"], v["d"]
                out |= {f"{m.name}|pre_den_sum": w, f"{m.name}|pre_den_sum_squares": w * w,
                        f"{m.name}|pre_den_sum_product": x * w,
                        f"{m.name}|den_pre_sum_product": d * x,
                        f"{m.name}|sum_pre_den_product": y * w,
                        f"{m.name}|den_pre_den_sum_product": d * w}
        if m.log_stats:
            pos = y > 0
            ly = ibis.ifelse(pos, y, 1.0).ln()
            out |= {f"{m.name}|positive_n": pos.cast("float64"), f"{m.name}|log_sum": ly,
                    f"{m.name}|log_sum_squares": ly * ly}
        return out
