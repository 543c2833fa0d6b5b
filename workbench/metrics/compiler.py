"""Metric definitions compiled to Ibis expressions that yield sufficient statistics in the engine.

Unit values: per user, over events in ``[assigned_at, min(assigned_at + window, end_date + 1 day))``;
users without events count as zeros. A ``proportion`` is 1 when the aggregate is positive.
Percentile caps are computed over all units of the experiment (zeros included), the CUPED
covariate being capped at its own percentile. NaN/inf values of a summed column are ignored
(the data-quality checks count them).

Statistics are declared, not written per metric: each metric declares its unit values
(:attr:`~workbench.metrics.definition.MetricDefinition.parts`: ``y``, ``d``, ``x``, ``w``) and
gets every statistic of the stats engine's input schema (:mod:`workbench.stats.schema`) that is a
sum of products of those values (:data:`workbench.stats.schema.PRODUCTS`), plus the hurdle model's
log statistics when ``log_stats`` is set.

:class:`MetricCompiler` makes one scan of the events joined to the units, one aggregation per
unit and one per variant (x segment, x day), all inside the engine; only the few rows of
sufficient statistics reach pandas.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from workbench.data.sources import execute
from workbench.errors import SourceError
from workbench.metrics import covariates
from workbench.metrics.definition import Aggregate, MetricDefinition, fail
from workbench.metrics.window import ExperimentWindow
from workbench.stats.regression import COVARIATES
from workbench.stats.schema import GROUP_COLUMNS, HURDLE_INPUT, INPUT_COLUMNS, PRODUCTS

OTHER = covariates.OTHER  # the pooled values of a segment breakdown
ALL = "(all)"
N = "n"  # units per group: the one statistic that is a count, not a sum


def summands(values: Mapping[str, Any], metric: MetricDefinition) -> dict[str, Any]:
    """The per-unit summand of every statistic of ``metric``, keyed ``<metric>|<statistic>``.

    ``values`` maps the tags of the metric's unit values (``y``, ``d``, ``x``, ``w``) to Ibis
    expressions; a statistic is emitted when all its factors are present. Summing a summand over
    units gives the statistic.
    """
    import ibis

    out = {}
    for stat, factors in PRODUCTS.items():
        if all(f in values for f in factors):
            expr = values[factors[0]]
            for f in factors[1:]:
                expr = expr * values[f]
            out[f"{metric.name}|{stat}"] = expr
    if metric.log_stats and "y" in values:
        positive_n, log_sum, log_sum_squares = HURDLE_INPUT
        positive = values["y"] > 0
        log_y = ibis.ifelse(positive, values["y"], 1.0).ln()
        out |= {f"{metric.name}|{positive_n}": positive.cast("float64"),
                f"{metric.name}|{log_sum}": log_y,
                f"{metric.name}|{log_sum_squares}": log_y * log_y}
    return out


def _aggregate_key(m: MetricDefinition, agg: Aggregate, period: str) -> tuple:
    """The key of one per-unit aggregate, ``(Aggregate, period, days)``: metrics with the same
    key share its column (the incremental state's columns are keyed by it too)."""
    return agg, period, m.window_days if period == "during" else m.pre_period_days


def _column(metric: str, tag: str) -> str:
    """Name of a unit-value column: ``<metric>__<tag>``."""
    return f"{metric}__{tag}"


def _temporary(expr, name: str):
    """``expr`` computed once into a temporary table of its engine (dropped with the
    connection), or ``expr`` itself on an engine that cannot create one. Not
    ``Table.cache()``: its finalizer's DROP fails noisily on DuckDB (ibis 12), and on Spark
    Connect at exit. Spark has no temporary tables (ibis raises): see :func:`_spark_checkpoint`."""
    import uuid

    name = f"_wb_{name}_{uuid.uuid4().hex[:12]}"
    try:
        backend = expr._find_backend()
        if backend.name == "pyspark":
            return _spark_checkpoint(backend, expr, name)
        return backend.create_table(name, expr, temp=True)
    except Exception:  # noqa: BLE001 (an engine without temporary tables)
        return expr


def _spark_checkpoint(backend, expr, name: str):
    """On Spark, ``expr`` computed now (``localCheckpoint``: kept by the executors, memory and
    disk) as a temporary view of the session. Without it Spark, which has no temporary
    tables, recomputes the units from all the assignments and events in every query. A
    checkpoint, not ``cache()``: no later query of the same SQL can match it, so it cannot
    serve stale rows after the tables change. The view is dropped when the returned table is
    garbage collected, else with the session; the client releases the checkpoint itself."""
    import weakref

    df = backend._session.sql(backend.compile(expr)).localCheckpoint(eager=True)
    df.createOrReplaceTempView(name)
    t = backend.table(name)
    drop = weakref.finalize(t.op(), _drop_view, backend._session, name)
    drop.atexit = False  # at exit the Connect client cannot send; the session drops its views
    return t


def _drop_view(session, name: str) -> None:
    try:
        session.catalog.dropTempView(name)
    except Exception:  # noqa: BLE001 (session gone: its views went with it)
        pass


def _pooled(wide: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """Wide statistics per variant x value -> per variant x segment: the ``top_n`` values with
    the most units (ties: by value) and :data:`OTHER` for the rest and for no value (NULL);
    every value when at most one would be pooled."""
    segment, n = GROUP_COLUMNS[1], f"__{N}"
    top = covariates.top_values(wide.groupby(segment)[n].sum(), top_n)  # NULL is not a value
    out = wide.assign(**{segment: wide[segment].where(wide[segment].isin(top), OTHER)})
    sums = [c for c in out.columns if c not in ("variant", segment)]
    return out.groupby(["variant", segment], as_index=False, sort=False)[sums].sum(min_count=1)


class StatisticsCompiler:
    """What every compiler shares: statistics generated from the stats schema over a unit table
    (``<metric>__<tag>`` columns), caps, and the wide -> long reshaping into the stats engine's
    input. A subclass provides ``metrics``, ``window``, ``_units``, ``units()``,
    ``unit_values(capped)``, ``segment_expr()`` and ``daily_stats()``.
    """

    def with_metrics(self, metrics: Sequence[MetricDefinition]):
        """The same experiment and tables, other metrics (the unit table is reused)."""
        out = replace(self, metrics=list(metrics))
        out._units = self._units
        return out

    def _cap(self, t):
        import ibis

        repl = {}
        for _, r in self.cap_thresholds().iterrows():
            name = _column(r["metric"], r["column"])
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
                for tag in ("y", "x") if m.cuped else ("y",):
                    rows.append({"metric": m.name, "column": tag, "cap": m.cap_value})
        pct = [m for m in self.metrics if m.cap_percentile is not None]
        if pct:
            t = self.unit_values(capped=False)  # the pct metrics' columns are among its own
            exprs = {_column(m.name, tag): t[_column(m.name, tag)].quantile(m.cap_percentile)
                     for m in pct for tag in (("y", "x") if m.cuped else ("y",))}
            for k, v in execute(t.aggregate(**exprs)).iloc[0].items():
                name, tag = k.split("__")
                rows.append({"metric": name, "column": tag, "cap": float(v)})
        self._caps = pd.DataFrame(rows, columns=["metric", "column", "cap"])
        return self._caps

    # -- per variant ---------------------------------------------------------------------
    def _statistics(self, t, metrics: Sequence[MetricDefinition] | None = None) -> dict:
        """Aggregations of every statistic over the rows of unit table ``t`` (wide names)."""
        aggs = {f"__{N}": t.count()}
        for m in metrics if metrics is not None else self.metrics:
            values = {tag: t[_column(m.name, tag)] for tag, _, _ in m.parts}
            aggs |= {k: v.sum() for k, v in summands(values, m).items()}
            aggs |= {k: v.sum() for k, v in covariates.summands(t, m).items()}
        return aggs

    def _to_long(self, wide: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        """Wide ``<metric>|<stat>`` rows to the stats engine's input: one row per metric x key."""
        groups = [k for k in keys if k != "variant"]
        frames = []
        for m in self.metrics:
            prefix = f"{m.name}|"
            cols = [c for c in wide.columns if c.startswith(prefix)]
            part = wide[keys + cols].rename(columns={c: c[len(prefix):] for c in cols})
            part.insert(0, "metric", m.name)
            part["kind"] = m.kind
            part[N] = wide[f"__{N}"].astype("int64")
            if covariates.names(self, m) and f"{prefix}cov_sum__0" in wide.columns:
                part[COVARIATES] = covariates.names(self, m)
            frames.append(part)
        df = pd.concat(frames, ignore_index=True)
        front = ["metric", "variant", "kind", N]
        rest = [c for c in INPUT_COLUMNS if c in df.columns and c not in front]
        rest += covariates.stat_columns(df)  # cov_sum__0, ... (stats/regression.py)
        df = df[front + rest + groups]
        numeric = [c for c in rest if c != COVARIATES]
        df[numeric] = df[numeric].astype("float64")
        order = {m.name: i for i, m in enumerate(self.metrics)}
        vorder = {v: i for i, v in enumerate(self.window.variants)}
        df["__o"] = df["metric"].map(order)
        df["__v"] = df["variant"].map(lambda v: vorder.get(v, len(vorder)))
        df = df.sort_values(["__o", *groups, "__v", "variant"], kind="stable")
        return df.drop(columns=["__o", "__v"]).reset_index(drop=True)

    def overall_expr(self, extra=None):
        """The Ibis expression of the per-variant statistics (wide: ``<metric>|<stat>``);
        ``extra(t)`` adds aggregates of the unit table ``t`` (the quantiles)."""
        t = self.unit_values()
        return t.group_by("variant").aggregate(**self._statistics(t),
                                               **(extra(t) if extra else {}))

    def sufficient_stats(self) -> pd.DataFrame:
        """Stats-engine input: one row per metric x variant."""
        from workbench.metrics import quantile

        plan = quantile.unit_plan(self)
        wide = execute(self.overall_expr(quantile.unit_aggregates(plan)))
        return quantile.add_quantiles(self, self._to_long(wide, ["variant"]), wide, plan)

    def _additive(self):
        """This compiler without quantile metrics (their statistics do not add over segments or
        days), or None when nothing is left; ``self`` when there is none."""
        from workbench.metrics.quantile import without_quantiles

        rest = without_quantiles(self.metrics)
        if len(rest) == len(self.metrics):
            return self
        if not rest:
            return None
        out = self.with_metrics(rest)
        out._caps = self._caps
        return out

    def segment_stats(self, dimensions: Sequence[str], top_n: int = 5) -> pd.DataFrame:
        """Stats-engine input per metric x variant x segment (``dimension``, ``segment``): the
        ``top_n`` most frequent values of each dimension among the units, the others and units
        without a value pooled as :data:`OTHER` (every value is kept when at most one would
        be pooled). One engine query per dimension, per variant x value (``segment_expr``);
        the pooling is done here, exactly: every statistic is a sum. (So a column with many
        values brings a row per value and variant back: segments are for columns with few.)"""
        if self._additive() is not self:  # quantile metrics are left out
            sub = self._additive()
            return pd.DataFrame() if sub is None else sub.segment_stats(dimensions, top_n)
        dimension, segment = GROUP_COLUMNS[:2]
        frames = []
        for dim in dimensions:
            wide = _pooled(execute(self.segment_expr(dim)), top_n)
            wide[dimension] = dim
            frames.append(self._to_long(wide, ["variant", dimension, segment]))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _cumulate(self, daily: pd.DataFrame) -> pd.DataFrame:
        """Daily increments per variant -> cumulative values on every day of the window."""
        value_cols = [c for c in daily.columns if c not in ("variant", "day")]
        days = pd.date_range(self.window.start_date, self.window.end_date, freq="D").date
        frames = []
        for v, grp in daily.groupby("variant", sort=False):
            grp = grp.set_index(pd.to_datetime(grp["day"]).dt.date)[value_cols]
            grp = grp.groupby(level=0).sum().reindex(
                sorted(set(grp.index) | set(days))).fillna(0.0).cumsum()
            grp = grp.loc[[d for d in grp.index
                           if self.window.start_date <= d <= self.window.end_date]]
            grp["variant"] = v
            grp["date"] = grp.index
            frames.append(grp.reset_index(drop=True))
        return pd.concat(frames, ignore_index=True)

    # -- per phase (staged rollouts) -----------------------------------------------------
    def phase_stats(self, phases: Sequence[tuple[str, Any, Any]]) -> pd.DataFrame:
        """Stats-engine input per metric x variant x ``phase``: a unit belongs to the phase
        ``(name, start, end)`` whose ``[start, end)`` holds its first exposure ``assigned_at``
        (units outside every phase are left out). Every variant of the window gets a row in
        every phase (zeros when it has no unit there). Quantile metrics are left out.
        """
        import ibis

        if self._additive() is not self:
            sub = self._additive()
            return pd.DataFrame() if sub is None else sub.phase_stats(phases)
        phase = GROUP_COLUMNS[4]
        t = self.unit_values()
        if "assigned_at" not in t.columns:
            raise SourceError("phases need each unit's assignment time (a per-unit table: "
                              "pass date=)")
        at = t.assigned_at
        branches = [((at >= start) & (at < end), str(name)) for name, start, end in phases]
        t = t.mutate(**{phase: ibis.cases(*branches, else_=ibis.null("string"))})
        t = t.filter(t[phase].notnull())
        wide = execute(t.group_by("variant", phase).aggregate(**self._statistics(t)))
        names = [str(name) for name, _, _ in phases]
        full = pd.MultiIndex.from_product([list(self.window.variants), names],
                                          names=["variant", phase])
        wide = (wide.set_index(["variant", phase]).reindex(full.union(
            pd.MultiIndex.from_frame(wide[["variant", phase]]), sort=False)).fillna(0.0)
            .reset_index())
        out = self._to_long(wide, ["variant", phase])
        metric_order = {m.name: i for i, m in enumerate(self.metrics)}
        phase_order = {n: i for i, n in enumerate(names)}
        return (out.assign(__m=out["metric"].map(metric_order), __p=out[phase].map(phase_order))
                .sort_values(["__m", "__p"], kind="stable").drop(columns=["__m", "__p"])
                .reset_index(drop=True))


@dataclass
class MetricCompiler(StatisticsCompiler):
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
    per_unit: Any = field(default=None, repr=False)  # (compiler, events) -> per-unit aggregates
    per_day: Any = field(default=None, repr=False)  # (compiler, keys) -> per-unit x day ones
    _units: Any = field(default=None, init=False, repr=False)
    _caps: Any = field(default=None, init=False, repr=False)
    _values: Any = field(default=None, init=False, repr=False)  # materialised unit table

    def with_metrics(self, metrics: Sequence[MetricDefinition]):
        """The same experiment and tables, other metrics: the units are reused, and so is the
        unit table when it has every value these metrics need (the same metrics but for their
        caps, which apply to its values, or some of them: robustness' caps, ``_additive``)."""
        out = super().with_metrics(metrics)
        mine = [replace(m, cap_value=None, cap_percentile=None) for m in self.metrics]
        if all(replace(m, cap_value=None, cap_percentile=None) in mine for m in out.metrics):
            out._values = self._values
        return out

    # -- units ---------------------------------------------------------------------------
    def units(self):
        """One row per unit: ``user_id, variant, assigned_at`` (crossovers handled)."""
        if self._units is None:
            units = self.window.units(self.assignments, self.exclude_crossovers)
            # computed once: the unit table, the per-day series and the checks read it
            # (incremental state keeps its own units table)
            self._units = units if self.per_unit is not None else _temporary(units, "a")
        return self._units

    # -- events --------------------------------------------------------------------------
    def _check_columns(self) -> None:
        cols = set(self.events.columns)
        for m in self.metrics:
            for tag, agg, _ in m.parts:
                if tag not in ("y", "d"):
                    continue
                prefix = "" if m.kind != "ratio" else (
                    "numerator." if tag == "y" else "denominator.")
                if agg.column is not None and agg.column not in cols:
                    raise fail(m.name, f"{prefix}column",
                               f"column {agg.column!r} is not in table 'events'")
                for i, c in enumerate(agg.where):
                    if c.column not in cols:
                        raise fail(m.name, f"{prefix}where[{i}]",
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
        if agg.aggregation in ("count", "any"):  # "any" is made 0/1 after the zero fill
            return e.user_id.count(where=cond)
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
        pre = (e.event_time >= w.pre_start_ts(m.pre_period_days)) & (e.event_time < w.start_ts)
        return during, pre

    def _joined_events(self):
        units = self.units()
        max_pre = max([m.pre_period_days for m in self.metrics
                       if m.cuped or m.covariate_parts] or [0])
        ev = self.events.filter((self.events.event_time >= self.window.pre_start_ts(max_pre))
                                & (self.events.event_time < self.window.end_ts))
        return ev.join(units, ev.user_id == units.user_id).select(
            *[ev[c] for c in ev.columns], units.assigned_at)

    @staticmethod
    def _binary(m: MetricDefinition, tag: str, agg: Aggregate) -> bool:
        """Whether a unit value is 0/1: an ``any`` aggregate, or a proportion's value."""
        return agg.aggregation == "any" or (m.kind == "proportion" and tag in ("y", "x"))

    def unit_aggregates(self, e) -> tuple[dict, dict]:
        """The per-unit aggregations over joined events ``e``: ``({column: expr}, {key:
        column})``, a key being ``(Aggregate, period, days)`` or ``(metric, tag)``. Metrics
        sharing an aggregate (e.g. revenue in revenue_per_user and revenue_per_order) share one
        column of the per-unit aggregation."""
        aggs, source = {}, {}
        for m in self.metrics:
            during, pre = self._periods(e, m)
            for tag, agg, period in m.parts:
                key = _aggregate_key(m, agg, period)
                if key not in source:
                    source[key] = f"a{len(source)}"
                    aggs[source[key]] = self._aggregate(
                        e, agg, during if period == "during" else pre)
                source[(m.name, tag)] = source[key]
        return aggs, source

    def unit_values(self, capped: bool = True):
        """One row per unit with ``<metric>__y`` (and ``__d``, ``__x``, ``__w``) columns."""
        self._check_columns()
        units = self.units()
        e = self._joined_events()
        aggs, source = self.unit_aggregates(e)
        per_unit = (e.group_by("user_id").aggregate(**aggs) if self.per_unit is None
                    else self.per_unit(self, e))  # incremental state (metrics/incremental.py)
        stored = "variant" in per_unit.columns  # the incremental state's table of the units
        joined = per_unit if stored else units.left_join(per_unit,
                                                         units.user_id == per_unit.user_id)
        base = joined if stored else units
        cols = {}
        for m in self.metrics:
            for tag, agg, _ in m.parts:
                v = joined[source[(m.name, tag)]].fill_null(0)
                if self._binary(m, tag, agg):
                    v = (v > 0).cast("int64")
                cols[_column(m.name, tag)] = v.cast("float64")
        out = joined.select(base.user_id, base.variant, base.assigned_at, **cols)
        attributed = covariates.add_attributes(self, out)  # one-hot users columns, if any
        # a projection of the state's stored table is read as it is, not copied
        out = out if stored and attributed is out else self._materialised(attributed)
        return self._cap(out) if capped else out

    def _materialised(self, out):
        """The unit table computed once in the engine (a temporary table, dropped with the
        connection) and reused by the caps, the overall and the segment statistics, so the
        events are scanned once for them (the per-day series scans them again, by day).
        Engines that cannot create one keep the expression. With incremental state
        (``per_unit``) the state's table of the units is read instead (no copy), unless
        ``users`` attributes are joined to it."""
        if self._values is None:
            self._values = _temporary(out, "units")
        return self._values

    def _check_dimension(self, dimension: str) -> None:
        if self.users is None:
            raise SourceError("segment breakdowns need a 'users' table")
        if dimension not in self.users.columns:
            raise SourceError(f"dimension {dimension!r} is not a column of table 'users'")

    def segment_expr(self, dimension: str):
        """The per-variant x value statistics of the ``users`` column ``dimension`` (as
        strings; NULL for units not in ``users``), wide like :meth:`overall_expr`."""
        self._check_dimension(dimension)
        t = self.unit_values()
        u = self.users.select(user_id=self.users.user_id,
                              __seg=self.users[dimension].cast("string"))
        j = t.left_join(u, t.user_id == u.user_id)
        j = j.mutate(segment=j["__seg"])
        return j.group_by("variant", "segment").aggregate(**self._statistics(j))

    # -- per day (cumulative) ------------------------------------------------------------
    def daily_stats(self) -> pd.DataFrame:
        """Cumulative statistics per day (``date``): units exposed and events seen up to the end
        of that day. Percentile caps use the end-of-experiment thresholds. Metrics counting
        distinct values are left out (their daily increments are not additive).

        A unit's statistics as of day D are the summands of its values at the end of D, summed
        per variant in two parts, cumulated over the days: on its day of exposure, the summands
        with no 'during' value yet (its pre-period covariates, and the unit itself); on each
        day it has events, the change of its summands, from its values before that day's events
        (the cumulative aggregates less the day's) to its values after them. One engine query;
        the per-day aggregates of each unit are cumulated in one window, carrying only them
        (an incremental state, ``per_day``, holds them cumulated already).
        """
        import ibis

        metrics = [m for m in self.metrics if m.kind != "quantile"
                   and all(agg.aggregation != "distinct" for _, agg, _ in m.parts)]
        if not metrics:
            return pd.DataFrame()
        caps = {(r["metric"], r["column"]): float(r["cap"])
                for _, r in self.cap_thresholds().iterrows()}
        final = self.unit_values(capped=True)
        e = self._joined_events()
        e = e.filter(e.event_time >= e.assigned_at).mutate(day=e.event_time.date())
        incs, column = {}, {}  # the 'during' aggregates (metrics may share one) by unit x day
        for m in metrics:
            during, _ = self._periods(e, m)
            for tag, agg, period in m.parts:
                if period == "during":
                    key = _aggregate_key(m, agg, period)
                    if key not in column:
                        column[key] = f"i{len(column)}"
                        incs[column[key]] = (key, self._aggregate(e, agg, during))
                    column[(m.name, tag)] = column[key]
        if self.per_day is None:
            inc = e.group_by("user_id", "day").aggregate(**{k: v for k, (_, v) in incs.items()})
            inc = inc.mutate(**{k: inc[k].cast("float64").fill_null(0.0) for k in incs})
            win = ibis.cumulative_window(group_by=inc.user_id, order_by=inc.day)
            inc = inc.mutate(**{f"cum_{k}": inc[k].sum().over(win) for k in incs})
        else:  # the incremental state's, with their cumulative values (metrics/incremental.py)
            inc = self.per_day(self, {k: key for k, (key, _) in incs.items()})
        # The pre-period covariates are fixed per unit: take them from the final unit table.
        fixed = [c for c in final.columns
                 if c.endswith(("__x", "__w")) or covariates.is_column(c)]
        f = final.select("user_id", "variant", "assigned_at", *fixed)
        j = inc.join(f, inc.user_id == f.user_id).select(inc, f.variant, *[f[c] for c in fixed])

        def value(m, tag, agg, raw):
            if self._binary(m, tag, agg):
                raw = (raw > 0).cast("float64")
            return ibis.least(raw, caps[(m.name, tag)]) if (m.name, tag) in caps else raw

        entry, change = {}, {}
        for m in metrics:
            now, before, pre = {}, {}, {}
            for tag, agg, period in m.parts:
                if period == "during":
                    k = column[(m.name, tag)]
                    now[tag] = value(m, tag, agg, j[f"cum_{k}"])
                    before[tag] = value(m, tag, agg, j[f"cum_{k}"] - j[k])
                else:
                    now[tag] = before[tag] = j[_column(m.name, tag)]
                    pre[tag] = f[_column(m.name, tag)]
            new, old = summands(now, m), summands(before, m)
            entry |= {k: v.sum() for k, v in summands(pre, m).items()}
            change |= {k: (new[k] - old[k]).sum() for k in new if k not in entry}
        zero = {f"__{N}": ibis.literal(0, "int64")} | {k: ibis.literal(0.0) for k in change}
        zero |= {k: ibis.literal(0.0) for k in entry}
        a = f.group_by("variant", day=f.assigned_at.date()).aggregate(
            **{f"__{N}": f.count()}, **entry)
        b = j.group_by("variant", "day").aggregate(**change)
        a, b = (t.select("variant", "day", **{c: t[c] if c in t.columns else v
                                              for c, v in zero.items()}) for t in (a, b))
        daily = execute(a.union(b))  # a variant x day in both: summed by _cumulate
        wide = self._cumulate(daily.sort_values(["variant", "day"]))
        out = self.with_metrics(metrics)._to_long(wide, ["variant", "date"])
        out = out[out[N] > 0].reset_index(drop=True)
        return out.sort_values(["metric", "date", "variant"], kind="stable").reset_index(drop=True)
