"""What a readout template runs: the experiment from any source, and which sections apply.

>>> experiment = open_experiment("data/warehouse.duckdb", "checkout_redesign")  # event log
>>> experiment = open_experiment("outcomes.csv", "pricing", "metrics.yml")      # per-unit table
>>> sections = plan_sections(experiment, segments=["device"], pymc_draws=1000)
>>> result = experiment.analyze(segments=sections.segments)
>>> models = sections.fit_models(experiment, result, draws=1000)   # {table name: BayesResult}
>>> sections.notes         # one sentence per section skipped or adapted, and why

A source is a **per-unit table** (one row per unit, :meth:`Experiment.from_units`) when it is
a ``.csv``/``.csv.gz``/``.tsv``/``.parquet`` file, a DataFrame or an Ibis table; anything else
(a DuckDB file, an Ibis URL or backend, a SparkSession, None for the settings' warehouse) is an
**event log** (:meth:`Experiment.from_source`). The choices are made here, once, so that the
``ab_test`` template, the CLI and a notebook decide alike and the template stays a list of
calls.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.config import project_path
from workbench.errors import ParameterError
from workbench.readout.experiment import Experiment
from workbench.readout.record import HIERARCHICAL, REVENUE_HURDLE

__all__ = ["Sections", "open_experiment", "plan_sections", "is_units_source"]


def is_units_source(source: Any) -> bool:
    """Whether ``source`` is a per-unit table (see the module docstring)."""
    import ibis

    from workbench.data.sources import FILE_SUFFIXES, _frame_kind

    if isinstance(source, ibis.expr.types.Table) or _frame_kind(source) is not None:
        return True
    return isinstance(source, str | Path) and str(source).lower().endswith(FILE_SUFFIXES)


def open_experiment(source: Any = None, experiment_id: str = "checkout_redesign",
                    metrics: Any = None, *, columns: Mapping[str, str] | None = None,
                    variant: str = "variant", unit: str | None = None, date: str | None = None,
                    control: str | None = None,
                    planned_weights: Mapping[str, float] | None = None,
                    incremental: Any = None, lookback_days: int = 2) -> Experiment:
    """An :class:`~workbench.readout.experiment.Experiment` from an event log or a per-unit
    table (:func:`is_units_source`).

    Parameters
    ----------
    source, experiment_id, metrics, control, planned_weights
        As :meth:`Experiment.from_source`; a per-unit table needs ``metrics`` declared on its
        columns (a metrics YAML of ``kind``/``column``/``pre_column`` metrics).
    columns : mapping, optional
        Event logs: your column names (``{documented: yours}``).
    variant, unit, date : str
        Per-unit tables: the variant, unit id and date columns (:meth:`Experiment.from_units`).
    incremental, lookback_days
        Event logs in DuckDB: a state file of per-unit aggregates, updated with the events since
        the last run only (:mod:`workbench.metrics.incremental`), and its lookback.
    """
    if is_units_source(source):
        if columns:
            raise ParameterError("columns= maps an event log's columns; a per-unit table names "
                                 "its columns in the metrics (and variant=, unit=, date=)")
        if incremental is not None:
            raise ParameterError("incremental keeps per-unit aggregates of an event log's "
                                 "events; a per-unit table has none to keep")
        return Experiment.from_units(project_path(source), variant, project_path(metrics),
                                     unit=unit, control=control, planned_weights=planned_weights,
                                     experiment_id=experiment_id, date=date)
    return Experiment.from_source(source, experiment_id, metrics, columns=columns,
                                  control=control, planned_weights=planned_weights,
                                  incremental=project_path(incremental),
                                  lookback_days=lookback_days)


@dataclass(frozen=True)
class Sections:
    """Which optional sections of a readout apply to an experiment.

    Attributes
    ----------
    segments : tuple of str
        The requested segment dimensions that exist (``users`` columns, or per-unit columns).
    dimension : str or None
        The segment dimension shown first (plots) and pooled by the hierarchical model: the
        requested one if it exists, else the first segment that exists.
    timeseries : bool
        Whether the experiment has dates (a per-unit table needs ``date=``).
    hurdle_metric : str or None
        Metric of the PyMC revenue hurdle model (a mean metric with ``log_stats``), or None.
    hierarchical_metric, hierarchical_dimension : str or None
        Metric (proportion or mean) and segment dimension of the PyMC hierarchical model.
    notes : tuple of str
        The experiment's own notes (defaults it took), then one sentence per section skipped
        or adapted, and why: what the record's ``notes`` and the report show.
    """

    segments: tuple[str, ...] = ()
    dimension: str | None = None
    timeseries: bool = True
    hurdle_metric: str | None = None
    hierarchical_metric: str | None = None
    hierarchical_dimension: str | None = None
    notes: tuple[str, ...] = ()

    def fit_models(self, experiment: Experiment, result: Any, *, draws: int = 1000,
                   chains: int = 4, random_seed: int | None = None,
                   **options) -> dict[str, Any]:
        """Fit the PyMC models that apply: ``{record table name: BayesResult}`` (empty when none
        does). The hierarchical model reads the readout's per-segment statistics (reused).

        ``options`` go to both models (e.g. ``sampler``); ``control``, ``alpha`` and
        ``difference`` are the result's.
        """
        if not (self.hurdle_metric or self.hierarchical_metric) or draws <= 0:
            return {}
        from workbench.stats import pymc

        opts = dict(draws=draws, tune=draws, chains=chains, random_seed=random_seed,
                    control=result.control, alpha=result.alpha, difference=result.difference,
                    progressbar=False) | options
        out = {}
        if self.hurdle_metric:
            stats = result.stats[result.stats["metric"] == self.hurdle_metric]
            out[REVENUE_HURDLE] = pymc.revenue_hurdle(stats, metrics=self.hurdle_metric, **opts)
        if self.hierarchical_metric:
            dim = self.hierarchical_dimension
            out[HIERARCHICAL] = pymc.hierarchical(experiment.sufficient_stats(segments=[dim]),
                                                  metrics=self.hierarchical_metric,
                                                  dimensions=dim, **opts)
        return out


def _dimensions(experiment: Experiment) -> tuple[list[str] | None, str]:
    """The columns segments can be taken from (None: no table for them), and its name."""
    units = getattr(experiment, "units_table", None)
    if units is not None:
        return list(units.columns), "the per-unit table"
    if experiment.users is None:
        return None, "no 'users' table"
    return [c for c in experiment.users.columns if c != "user_id"], "table 'users'"


def plan_sections(experiment: Experiment, *, segments: Sequence[str] | str | None = (),
                  dimension: str | None = None, metric: str | None = None,
                  pymc_draws: int = 1000) -> Sections:
    """Decide which sections of a readout apply, and say why the others do not.

    Parameters
    ----------
    experiment : Experiment
    segments : list of str
        Requested segment dimensions; those that do not exist are skipped (a note each).
    dimension : str, optional
        Segment dimension of the hierarchical model; default (or when it is not among the
        segments that exist) the first segment that exists.
    metric : str, optional
        Metric of the PyMC models; default the first ``primary`` metric, else the first metric.
        The hurdle model needs a mean metric with ``log_stats`` (unnamed: the first such
        metric); the hierarchical model a proportion or mean (unnamed: the first such).
    pymc_draws : int
        0 skips the PyMC models.

    Raises
    ------
    ParameterError
        ``metric`` is not a metric of the experiment.
    """
    if isinstance(segments, str):
        segments = [segments]
    segments = list(dict.fromkeys(segments or ()))
    notes = list(experiment.notes)
    by_name = {m.name: m for m in experiment.metrics}
    if metric is not None and metric not in by_name:
        raise ParameterError(f"metric {metric!r} is not one of the experiment's metrics "
                             f"({', '.join(by_name)})")

    available, where = _dimensions(experiment)
    if available is None:
        usable = []
        if segments:
            notes.append(f"segments: skipped ({where}; pass users= for segment breakdowns)")
    else:
        usable = [d for d in segments if d in available]
        missing = [d for d in segments if d not in available]
        if missing:
            notes.append(f"segments: {', '.join(map(repr, missing))} skipped (not "
                         f"column(s) of {where})")
    timeseries = experiment.window.start_date is not None
    dim = dimension if dimension in usable else (usable[0] if usable else None)
    if dimension is not None and usable and dimension != dim:
        notes.append(f"segment plot and hierarchical model: on {dim!r} ({dimension!r} is not "
                     "among the segments analysed)")

    hurdle = hier = None
    if pymc_draws <= 0:
        notes.append(f"PyMC models: skipped (pymc_draws = {pymc_draws})")
    else:
        primary = metric or next((m.name for m in experiment.metrics if m.role == "primary"),
                                 experiment.metrics[0].name)

        def hurdle_ok(name):
            return by_name[name].kind == "mean" and by_name[name].log_stats

        if hurdle_ok(primary):
            hurdle = primary
        elif metric is not None:
            kind = by_name[metric].kind + (" metric without log_stats"
                                           if by_name[metric].kind == "mean" else " metric")
            notes.append(f"PyMC revenue hurdle model: skipped ({metric!r} is a {kind}; the "
                         "model needs a mean metric with log_stats: true)")
        else:
            hurdle = next((m.name for m in experiment.metrics if hurdle_ok(m.name)), None)
            if hurdle is None:
                notes.append("PyMC revenue hurdle model: skipped (no mean metric has "
                             "log_stats: true, which the model needs)")
        kinds = ("proportion", "mean")
        hier = primary if by_name[primary].kind in kinds else (
            None if metric is not None else
            next((m.name for m in experiment.metrics if m.kind in kinds), None))
        if hier is None:
            notes.append("PyMC hierarchical model: skipped ("
                         + (f"{metric!r} is a {by_name[metric].kind} metric; "
                            if metric is not None else "")
                         + "the model needs a proportion or mean metric)")
        elif dim is None:
            notes.append("PyMC hierarchical model: skipped (no segment dimension to pool "
                         "across)")
            hier = None
    return Sections(segments=tuple(usable), dimension=dim, timeseries=timeseries,
                    hurdle_metric=hurdle, hierarchical_metric=hier,
                    hierarchical_dimension=dim if hier else None, notes=tuple(notes))
