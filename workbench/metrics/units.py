"""Per-unit tables compiled to sufficient statistics in the engine: one row per unit, metrics
declared on its columns (:func:`~workbench.metrics.definition.mean`, ``proportion``, ``ratio``).

The unit values are the columns themselves (``y``, ``d``, ``x``, ``w`` of
:attr:`~workbench.metrics.definition.MetricDefinition.unit_columns`); NULL, NaN and inf count
as 0 (the data-quality checks report them), a proportion is 1 when its column is positive.
Everything after that is the event compiler's (:class:`~workbench.metrics.compiler.
StatisticsCompiler`): the same statistics generated from the stats schema, the same caps, one
Ibis aggregate per grouping (overall, per segment with top-N + "(other)", per day).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.data.sources import execute
from workbench.errors import SchemaError
from workbench.metrics import covariates
from workbench.metrics.compiler import N, StatisticsCompiler, _column
from workbench.metrics.definition import UNITS, MetricDefinition, fail
from workbench.metrics.window import ExperimentWindow
from workbench.stats.schema import GROUP_COLUMNS

VARIANT = "variant"  # the unit table's variant column, renamed
UNIT = "user_id"     # and its unit id (as the event path's units)
DAY = "day"


@dataclass
class UnitCompiler(StatisticsCompiler):
    """Compile per-unit metrics against a per-unit Ibis table.

    Same interface as :class:`~workbench.metrics.compiler.MetricCompiler`: :meth:`units`,
    :meth:`unit_values`, :meth:`cap_thresholds`, :meth:`sufficient_stats`,
    :meth:`segment_stats`, :meth:`daily_stats`, :meth:`with_metrics`.

    Parameters
    ----------
    table : ibis Table
        One row per unit (rows with a NULL variant are left out).
    window : ExperimentWindow
        Variants (control first) and planned weights; dates only with ``date``.
    metrics : list of MetricDefinition
        Per-unit metrics (``table='units'``).
    variant : str
        The variant column.
    unit : str, optional
        The unit id column (returned as ``user_id`` by :meth:`units`).
    date : str, optional
        A date/timestamp column (e.g. the assignment day): :meth:`daily_stats` gives the
        statistics of the units up to each day. Without it there is no time series.
    """

    table: Any
    window: ExperimentWindow
    metrics: list[MetricDefinition]
    variant: str = "variant"
    unit: str | None = None
    date: str | None = None
    _units: Any = field(default=None, init=False, repr=False)
    _caps: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for m in self.metrics:
            if m.table != UNITS:
                raise fail(m.name, "kind", "an event-log metric (event_type/aggregation) cannot "
                           "be computed from a per-unit table; declare it on columns "
                           "(wb.mean, wb.proportion, wb.ratio)")

    # -- units ---------------------------------------------------------------------------
    def units(self):
        """One row per unit: ``variant`` (as a string), ``user_id`` and ``assigned_at`` when
        ``unit`` and ``date`` are set, then every column of the table (prefixed ``u__``)."""
        if self._units is None:
            import ibis

            t = self.table
            t = t.filter(t[self.variant].notnull())
            keys = {VARIANT: t[self.variant].cast("string")}
            if self.unit is not None:
                keys[UNIT] = t[self.unit]
            if self.date is not None:
                keys["assigned_at"] = t[self.date].cast(ibis.dtype("timestamp"))
            self._units = t.select(**keys, **{f"u__{c}": t[c] for c in t.columns})
        return self._units

    @staticmethod
    def _value(col, binary: bool):
        """A unit value: float, NULL/NaN/inf as 0; a 0/1 flag for proportions."""
        import ibis

        if col.type().is_boolean():
            col = col.cast("int64")
        col = col.cast("float64")
        col = ibis.ifelse(col.isnan() | col.isinf(), 0.0, col).fill_null(0.0)
        return (col > 0).cast("float64") if binary else col

    def _values(self, capped: bool = True, keep: Sequence[str] = ()):
        u = self.units()
        cols = {}
        for m in self.metrics:
            for tag, column in m.unit_columns.items():
                binary = m.kind == "proportion" and tag in ("y", "x")
                cols[_column(m.name, tag)] = self._value(u[f"u__{column}"], binary)
            cols |= covariates.unit_columns(self, m, u)  # <metric>__c<j> (one-hot text)
        front = [c for c in (UNIT, VARIANT, "assigned_at") if c in u.columns]
        out = u.select(*front, *[u[f"u__{c}"].name(c) for c in keep], **cols)
        return self._cap(out) if capped else out

    def unit_values(self, capped: bool = True):
        """One row per unit: ``[user_id,] variant[, assigned_at]`` and ``<metric>__y`` (and
        ``__d``, ``__x``, ``__w``) columns, capped as the metrics say."""
        return self._values(capped)

    # -- per variant ---------------------------------------------------------------------
    def _wide(self, expr, keys: list[str]) -> pd.DataFrame:
        """Execute a wide aggregate; planned variants without a row get zeros (the stats
        engine then says "variant has no units")."""
        wide = execute(expr)
        if keys == [VARIANT]:
            missing = [v for v in self.window.variants if v not in set(wide[VARIANT])]
            if missing:
                zeros = pd.DataFrame({c: [0.0] * len(missing) for c in wide.columns
                                      if c != VARIANT})
                zeros.insert(0, VARIANT, missing)
                wide = pd.concat([wide, zeros], ignore_index=True)
        return wide

    def sufficient_stats(self) -> pd.DataFrame:
        """Stats-engine input: one row per metric x variant (planned variants included)."""
        from workbench.metrics import quantile

        plan = quantile.unit_plan(self)
        wide = self._wide(self.overall_expr(quantile.unit_aggregates(plan)), [VARIANT])
        return quantile.add_quantiles(self, self._to_long(wide, [VARIANT]), wide, plan)

    def _check_dimension(self, dimension: str) -> None:
        if dimension not in self.table.columns:
            raise SchemaError(f"segment column {dimension!r} is not a column of the per-unit "
                              f"table (columns: {', '.join(self.table.columns)})")

    def segment_expr(self, dimension: str):
        """Per-variant x value statistics of ``dimension`` (as strings), wide."""
        self._check_dimension(dimension)
        t = self._values(keep=[dimension])
        t = t.mutate(segment=t[dimension].cast("string"))
        return t.group_by(VARIANT, GROUP_COLUMNS[1]).aggregate(**self._statistics(t))

    # -- per day (cumulative) ------------------------------------------------------------
    def daily_stats(self) -> pd.DataFrame:
        """Cumulative statistics per ``date``: the units whose ``date`` is on or before each
        day. Empty without a ``date`` column (no time series). Quantile metrics are left out."""
        if self._additive() is not self:
            sub = self._additive()
            return pd.DataFrame() if sub is None else sub.daily_stats()
        if self.date is None:
            return pd.DataFrame()
        t = self._values()
        t = t.filter(t.assigned_at.notnull()).mutate(**{DAY: t.assigned_at.date()})
        daily = execute(t.group_by(VARIANT, DAY).aggregate(**self._statistics(t)))
        if daily.empty:
            return pd.DataFrame()
        wide = self._cumulate(daily.sort_values([VARIANT, DAY]))
        out = self._to_long(wide, [VARIANT, "date"])
        out = out[out[N] > 0].reset_index(drop=True)
        return out.sort_values(["metric", "date", VARIANT], kind="stable").reset_index(drop=True)


def unit_metrics(metrics: Any) -> list[MetricDefinition]:
    """Per-unit metric definitions from what :meth:`workbench.Experiment.from_units` accepts.

    Parameters
    ----------
    metrics : mapping, list, path
        ``{name: wb.mean(...) | wb.proportion(...) | wb.ratio(...) | YAML-like mapping}`` (the
        key names the metric), a list of definitions or mappings, a metrics YAML file or a
        parsed mapping with ``metrics`` (:func:`~workbench.metrics.definition.load_metrics`).

    Raises
    ------
    MetricDefinitionError
        Naming the metric and field at fault.
    """
    from collections.abc import Mapping
    from dataclasses import replace

    from workbench.errors import MetricDefinitionError
    from workbench.metrics.definition import load_metrics, parse_metric

    if metrics is None:
        raise MetricDefinitionError(
            "from_units needs metrics, e.g. {'revenue': wb.mean('revenue')}")
    if isinstance(metrics, Mapping) and "metrics" not in metrics:
        out = []
        for key, spec in metrics.items():
            if isinstance(spec, MetricDefinition):
                parse_metric({"name": key, "kind": "mean", "column": "c"})  # checks the name
                out.append(replace(spec, name=key))
            elif isinstance(spec, Mapping):
                out.append(parse_metric({"name": key, **spec}))
            else:
                raise MetricDefinitionError(
                    f"metric {key!r}: expected wb.mean(...), wb.proportion(...), wb.ratio(...) "
                    f"or a mapping, got {type(spec).__name__}")
        metrics = out
    return load_metrics(metrics)
