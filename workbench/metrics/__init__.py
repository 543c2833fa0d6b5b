"""Metrics: definitions (YAML) -> Ibis expressions -> sufficient statistics, in the engine.

- :mod:`~workbench.metrics.definition` - :class:`MetricDefinition`, :func:`load_metrics`.
- :mod:`~workbench.metrics.window` - :class:`ExperimentWindow` (dates, variants, units).
- :mod:`~workbench.metrics.compiler` - :class:`MetricCompiler` (event logs).
- :mod:`~workbench.metrics.units` - :class:`UnitCompiler` (per-unit tables), :func:`unit_metrics`.
"""
from __future__ import annotations

from workbench.metrics.compiler import (
    ALL,
    OTHER,
    PRODUCTS,
    MetricCompiler,
    StatisticsCompiler,
    summands,
)
from workbench.metrics.definition import (
    AGGREGATIONS,
    KINDS,
    OPS,
    ROLES,
    SAMPLE_METRICS,
    Aggregate,
    Condition,
    MetricDefinition,
    load_metrics,
    mean,
    parse_metric,
    proportion,
    ratio,
)
from workbench.metrics.units import UnitCompiler, unit_metrics
from workbench.metrics.window import ExperimentWindow

__all__ = ["ALL", "OTHER", "PRODUCTS", "MetricCompiler", "summands", "AGGREGATIONS", "KINDS",
           "OPS", "ROLES", "SAMPLE_METRICS", "Aggregate", "Condition", "MetricDefinition",
           "load_metrics", "parse_metric", "ExperimentWindow", "StatisticsCompiler",
           "UnitCompiler", "unit_metrics", "mean", "proportion", "ratio"]
