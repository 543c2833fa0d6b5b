"""Quantile metrics in the engine: the order statistics the stats engine needs, no unit rows in
Python (method: :mod:`workbench.stats.quantile`).

- **Unit level** (``kind: quantile`` on a per-unit value, or a per-unit table column): the
  number of units ``n`` per variant comes with the other sufficient statistics; then one
  aggregate per variant takes the quantiles at ``q`` and ``q -/+ Z sqrt(q(1-q)/n)`` (one sort per
  variant and metric: a multi-quantile).
- **Event level** (``level: event``: the quantile of ``column`` over all qualifying events, the
  unit being a cluster of events): three small passes per metric: (1) the quantile ``Q`` per
  variant; (2) per unit ``y = #events <= Q`` and ``d = #events``, summed per variant into
  ``sum y, sum y^2, sum d, sum d^2, sum y d`` (the delta-method standard error ``sigma`` of the
  empirical CDF ``sum y / sum d`` accounts for the clustering); (3) the quantiles at
  ``q -/+ Z sigma``.

Quantiles go through Ibis ``quantile``: exact and interpolated like ``numpy.quantile``
(DuckDB ``percentile_cont``, Spark's exact ``percentile``); Spark's ``approx_percentile``
(``approx_quantile``) is not used, as its rank error (1/accuracy, 1e-4 by default) is of the
order of the interval's half-width ``Z sqrt(q(1-q)/n)`` for tens of millions of units.
Segments and the daily series leave quantile metrics out: their statistics do not add up.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.data.sources import execute
from workbench.metrics.definition import MetricDefinition, fail
from workbench.stats import quantile as sq

VARIANT = "variant"


def is_quantile(m: MetricDefinition) -> bool:
    return m.kind == "quantile"


def without_quantiles(metrics: Sequence[MetricDefinition]) -> list[MetricDefinition]:
    """The metrics whose statistics add over days and segments."""
    return [m for m in metrics if not is_quantile(m)]


def _probabilities(q: float, n: float, cdf_se: float) -> list[float]:
    lo, hi = sq.probabilities(q, cdf_se)
    return [q] + ([] if not np.isfinite(lo) else [float(lo), float(hi)])


def _multi(table, values: dict, probs: dict) -> dict:
    """``{(name, variant): {p: quantile}}``: one group-by-variant aggregate holding, per value
    column, the quantiles at the union of the probabilities its variants need."""
    aggs = {}
    union = {}
    for name, expr in values.items():
        ps = sorted({p for (nm, _), lst in probs.items() if nm == name for p in lst})
        if ps:
            union[name] = ps
            aggs[f"q{len(aggs)}"] = expr.quantile(ps)
    if not aggs:
        return {}
    names = dict(zip(aggs, union))
    wide = execute(table.group_by(VARIANT).aggregate(**aggs))
    out = {}
    for _, row in wide.iterrows():
        for col, name in names.items():
            got = row[col]
            if got is None or (np.ndim(got) == 0 and pd.isna(got)):
                continue
            out[(name, str(row[VARIANT]))] = dict(zip(union[name], np.asarray(got, float)))
    return out


def _fill(stats: pd.DataFrame, name: str, variant: str, q: float, got: dict | None,
          lohi: list[float]) -> None:
    mask = (stats["metric"] == name) & (stats[VARIANT] == variant)
    stats.loc[mask, "quantile_level"] = q
    if not got:
        return
    stats.loc[mask, "quantile"] = got.get(q, np.nan)
    if len(lohi) == 3:
        stats.loc[mask, "quantile_lower"] = got.get(lohi[1], np.nan)
        stats.loc[mask, "quantile_upper"] = got.get(lohi[2], np.nan)


def _ns(stats: pd.DataFrame, name: str) -> dict:
    rows = stats[stats["metric"] == name]
    return dict(zip(rows[VARIANT].astype(str), rows["n"].astype(float)))


def _prefix(m: MetricDefinition) -> str:
    return f"__q__|{m.name}"


def unit_plan(compiler) -> dict | None:
    """Unit-level quantile metrics: the probabilities each variant needs, from the units per
    variant (one small count query on the units, no events), so that the quantiles can be
    taken in the same aggregate as the sufficient statistics. None without such metrics.

    Returns ``{"metrics": [...], "probs": {(metric, variant): [q, lo, hi]}, "union": {metric:
    sorted probabilities}}``.
    """
    unit = [m for m in compiler.metrics if is_quantile(m) and m.level != "event"]
    if not unit:
        return None
    u = compiler.units()
    counts = execute(u.group_by(VARIANT).aggregate(n=u.count()))
    ns = dict(zip(counts[VARIANT].astype(str), counts["n"].astype(float)))
    probs = {(m.name, v): _probabilities(m.quantile, n, float(sq.unit_cdf_se(m.quantile, n)))
             for m in unit for v, n in ns.items() if n > 0}
    union = {m.name: sorted({p for (nm, _), lst in probs.items() if nm == m.name for p in lst})
             for m in unit}
    return {"metrics": unit, "probs": probs, "union": union}


def unit_aggregates(plan: dict | None):
    """``t -> {column: multi-quantile}`` to add to the per-variant aggregate of unit table ``t``
    (None without a plan)."""
    if plan is None:
        return None

    def aggs(t):
        return {_prefix(m): t[f"{m.name}__y"].quantile(plan["union"][m.name])
                for m in plan["metrics"] if plan["union"][m.name]}
    return aggs


def add_quantiles(compiler, stats: pd.DataFrame, wide: pd.DataFrame | None = None,
                  plan: dict | None = None) -> pd.DataFrame:
    """The overall statistics ``stats`` (one row per metric x variant) with the quantile
    columns of :data:`workbench.stats.schema.QUANTILE_INPUT` filled for quantile metrics: the
    unit-level ones read from ``wide`` (the per-variant aggregate that held
    :func:`unit_aggregates`), the event-level ones computed here (three small passes)."""
    metrics = [m for m in compiler.metrics if is_quantile(m)]
    if not metrics:
        return stats
    stats = stats.copy()
    for col in sq.COLUMNS:
        if col not in stats.columns:
            stats[col] = np.nan
    if plan is not None and wide is not None:
        for m in plan["metrics"]:
            col = _prefix(m)
            for _, row in wide.iterrows():
                v = str(row[VARIANT])
                got = row[col] if col in wide.columns else None
                lst = plan["probs"].get((m.name, v), [m.quantile])
                values = None
                if got is not None and np.ndim(got) == 1:
                    values = dict(zip(plan["union"][m.name], np.asarray(got, float)))
                _fill(stats, m.name, v, m.quantile, values, lst)
    for m in metrics:
        if m.level == "event":
            _event_level(compiler, m, stats)
    return stats


def event_values(compiler, m: MetricDefinition):
    """``user_id, variant, value``: the values of ``m``'s column over its qualifying events
    during the experiment (NaN/inf/NULL values left out)."""
    events = compiler.events
    agg = m.numerator
    for fld, col in [("column", agg.column)] + [(f"where[{i}]", c.column)
                                               for i, c in enumerate(agg.where)]:
        if col not in events.columns:
            raise fail(m.name, fld, f"column {col!r} is not in table 'events'")
    units = compiler.units()
    ev = events.filter(events.event_time < compiler.window.end_ts)
    j = ev.join(units, ev.user_id == units.user_id).select(
        *[ev[c] for c in ev.columns], units.assigned_at, units.variant)
    during, _ = compiler._periods(j, m)
    value = compiler._value(j, agg)
    j = j.mutate(value=value.cast("float64"))
    return j.filter(during & compiler._condition(j, agg) & j.value.notnull()).select(
        "user_id", VARIANT, "value")


def _event_level(compiler, m: MetricDefinition, stats: pd.DataFrame) -> None:
    import ibis

    e = event_values(compiler, m)
    q = m.quantile
    ns = _ns(stats, m.name)
    point = _multi(e, {m.name: e.value}, {(m.name, v): [q] for v in ns})
    centre = {v: d[q] for (_, v), d in point.items() if np.isfinite(d.get(q, np.nan))}
    if not centre:
        for v in ns:
            _fill(stats, m.name, v, q, None, [q])
        return
    cut = ibis.cases(*[(e[VARIANT] == v, float(c)) for v, c in centre.items()], else_=None)
    per_unit = e.mutate(below=(e.value <= cut).cast("float64")).group_by(
        "user_id", VARIANT).aggregate(y=lambda t: t.below.sum(),
                                      d=lambda t: t.count().cast("float64"))
    sums = execute(per_unit.group_by(VARIANT).aggregate(
        ys=per_unit.y.sum(), yy=(per_unit.y * per_unit.y).sum(), ds=per_unit.d.sum(),
        dd=(per_unit.d * per_unit.d).sum(), yd=(per_unit.y * per_unit.d).sum()))
    probs = {}
    for _, r in sums.iterrows():
        v = str(r[VARIANT])
        n = ns.get(v, 0.0)
        if v in centre and n > 0:
            se = sq.cluster_cdf_se(n, r["ys"], r["yy"], r["ds"], r["dd"], r["yd"])
            probs[(m.name, v)] = _probabilities(q, n, float(se))
    got = _multi(e, {m.name: e.value}, {k: lst[1:] for k, lst in probs.items()})
    for v in ns:
        lst = probs.get((m.name, v), [q])
        d = dict(got.get((m.name, v), {}))
        if v in centre:
            d[q] = centre[v]
        _fill(stats, m.name, v, q, d, lst)
