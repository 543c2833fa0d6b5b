"""The A/B facade: source -> data quality -> sufficient statistics (in the engine) -> decision.

>>> import workbench as wb
>>> exp = wb.Experiment.from_source("data/warehouse.duckdb", "checkout_redesign")
>>> exp.validate().summary()
>>> result = exp.analyze(method="frequentist", segments=["device"])
>>> result.summary()          # the decision table
"""
from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench import messages
from workbench.config import project_path
from workbench.data.quality import CROSSOVER_THRESHOLD, QualityReport, check_experiment
from workbench.errors import DataQualityWarning, ParameterError, SourceError, SRMWarning
from workbench.metrics import ExperimentWindow, MetricCompiler, MetricDefinition, load_metrics
from workbench.readout import decision
from workbench.readout.result import AnalysisResult
from workbench.stats.heterogeneity import cochran_q
from workbench.stats.srm import SRM_THRESHOLD

METHODS = ("frequentist", "sequential", "bayesian")


class Experiment:
    """An experiment in a data source, analysed inside the engine.

    Build with :meth:`from_source`. Attributes: ``con`` (Ibis backend), ``window``
    (:class:`~workbench.metrics.ExperimentWindow`), ``metrics`` (list of
    :class:`~workbench.metrics.MetricDefinition`), ``compiler``
    (:class:`~workbench.metrics.MetricCompiler`).

    The data-quality report and the sufficient statistics are computed once per experiment
    and reused by every later :meth:`validate`, :meth:`sufficient_stats` and :meth:`analyze`
    (the tables are read as they are at the first call).

    ``notes``: one sentence per default the plan took (dates, split, control) or part that
    cannot apply (no ``users`` table: no segments; no date column: no time series).
    """

    notes: tuple[str, ...] = ()
    columns: Mapping[str, str] = {}
    incremental = None  # the incremental state's Update (from_source(incremental=...))
    phases: tuple = ()  # staged rollouts (workbench.readout.phases.Phase), empty: one phase

    def __init__(self, con, experiment_id: str, metrics: list[MetricDefinition], *,
                 assignments, events, users=None, experiments=None,
                 window: ExperimentWindow, exclude_crossovers: bool = True):
        self.con = con
        self.experiment_id = experiment_id
        self.metrics = metrics
        self.window = window
        self.assignments = assignments
        self.events = events
        self.users = users
        self.experiments = experiments
        self.exclude_crossovers = exclude_crossovers
        self.compiler = MetricCompiler(assignments, events, window, metrics, users=users,
                                       exclude_crossovers=exclude_crossovers)
        self._reports: dict[tuple, QualityReport] = {}
        self._stats: dict[tuple, pd.DataFrame] = {}

    def __repr__(self) -> str:
        return (f"Experiment({self.experiment_id!r}, {self.window.start_date} .. "
                f"{self.window.end_date}, variants={list(self.window.variants)}, "
                f"metrics={[m.name for m in self.metrics]})")

    @classmethod
    def from_source(cls, source: Any = None, experiment_id: str = "checkout_redesign",
                    metrics: Any = None, *, assignments: Any = None, events: Any = None,
                    users: Any = None, experiments: Any = None, control: str | None = None,
                    start_date: dt.date | str | None = None,
                    end_date: dt.date | str | None = None,
                    planned_weights: Mapping[str, float] | None = None,
                    exclude_crossovers: bool = True,
                    columns: Mapping[str, str] | None = None,
                    phases: Sequence[Any] | None = None,
                    incremental: str | Path | None = None,
                    lookback_days: int = 2) -> Experiment:
        """Open an experiment.

        Parameters
        ----------
        source : see :func:`workbench.data.sources.connect`
            Default: the settings' warehouse DuckDB file.
        experiment_id : str
        metrics : path, mapping, list or None
            Metric definitions (:func:`workbench.metrics.load_metrics`); None: the sample's.
        assignments, events, users, experiments : str, path or Ibis table, optional
            Table names in the source (default: the documented names), Parquet/CSV files
            (registered as tables) or Ibis tables. ``users`` is needed for segments only;
            ``experiments`` (planned weights and dates) is optional.
        control : str, optional
            Baseline variant (default: ``is_control`` in ``experiments``, else 'control').
        start_date, end_date : date, optional
            Override the dates (default: ``experiments``, else the span of assignments).
        planned_weights : mapping, optional
            Override the planned split (default: ``experiments``, else equal).
        exclude_crossovers : bool
            Drop units seen in more than one variant (default; they are counted by
            :meth:`validate`).
        columns : mapping, optional
            Your column names: ``{documented name: yours}``, e.g. ``{"user_id": "customer_id",
            "event_time": "ts", "event_type": "kind"}``, merged over the ``columns:`` mapping of
            the metrics YAML (:func:`workbench.metrics.definition.load_columns`).
        phases : list of Phase or mapping, optional
            A staged rollout (:class:`workbench.readout.phases.Phase`: name, start, end,
            weights, traffic); default: the ``phase`` rows of ``experiments`` if it has that
            column. Each phase's split is SRM-tested against its own weights and, with two or
            more phases, the headline effect is stratified across them.
        incremental : path, optional
            A local DuckDB state file of per-unit running aggregates
            (:mod:`workbench.metrics.incremental`): brought up to date now with the events
            since the last run (re-aggregating the last ``lookback_days`` days), rebuilt when
            the aggregates, dates or settled events changed; the statistics read it. DuckDB
            sources only. :attr:`incremental` holds what the update did.
        lookback_days : int
            Days re-aggregated each incremental run (late events within them are counted).

        Notes
        -----
        Time-zone aware timestamps are converted to UTC (naive ones are taken as UTC); a
        ``variant`` that is not text is read as text; ``assignments`` without
        ``experiment_id`` holds one experiment. Without an ``experiments`` table the dates are
        the span of the assignments, the split is equal and the control is 'control' if it
        is a variant, else the first variant sorted: :attr:`notes` says so, one sentence each.
        A relative ``source`` or ``metrics`` path that does not exist from the working
        directory is looked up from the project root (``workbench.config``), so the README's
        paths also work from ``notebooks/``.

        Raises
        ------
        SchemaError
            A missing column or a column of the wrong type (user ids that are not integers,
            text timestamps, a summed column that is not numeric, a ``where`` value of the
            wrong type), named, before any query is compiled.
        SourceError, ParameterError, MetricDefinitionError
        """
        from workbench.data.layout import conform, source_table
        from workbench.data.quality import require_event_columns
        from workbench.data.sources import connect
        from workbench.metrics.definition import load_columns, renamed

        source, metrics = project_path(source), project_path(metrics)
        mapping = {**load_columns(metrics), **dict(columns or {})}
        if columns:
            load_columns(mapping)  # validates the keys of the call's mapping
        defs = load_metrics(metrics)
        con = connect(source)
        tables = {"assignments": source_table(con, project_path(assignments), "assignments"),
                  "events": source_table(con, project_path(events), "events"),
                  "users": source_table(con, project_path(users), "users",
                                        required=users is not None)}
        x = source_table(con, project_path(experiments), "experiments",
                         required=experiments is not None)
        tables, notes = conform(tables, mapping, experiment_id)
        defs = renamed(defs, mapping)
        require_event_columns(tables, defs, mapping)
        a, e, u = tables["assignments"], tables["events"], tables["users"]
        window, more = cls._window(a, x, experiment_id, control, start_date, end_date,
                                   planned_weights)
        exp = cls(con, experiment_id, defs, assignments=a, events=e, users=u, experiments=x,
                  window=window, exclude_crossovers=exclude_crossovers)
        if incremental is not None:
            from workbench.metrics.incremental import attach

            exp.incremental = attach(exp.compiler, incremental, lookback_days=lookback_days)
            more = [*more, exp.incremental.note()]
        exp.notes = tuple(notes + more)
        exp.columns = mapping
        exp._use_phases(phases, planned_weights is not None)
        return exp

    def _use_phases(self, phases, weights_given: bool) -> None:
        """Take the phases of the call, else of the ``experiments`` table; the planned split
        of the whole experiment becomes the one they imply (unless given)."""
        from dataclasses import replace

        import ibis

        from workbench.data.sources import execute
        from workbench.readout import phases as _phases

        variants = self.window.variants
        if phases is None and self.experiments is not None \
                and _phases.PHASE in self.experiments.columns:  # a schema check, no query
            x = self.experiments
            found = _phases.from_table(execute(x.filter(x.experiment_id == self.experiment_id)),
                                       variants)
        else:
            found = _phases.coerce(phases or (), variants)
        if not found:
            return
        units = self.compiler.units()
        if "assigned_at" not in units.columns:
            raise ParameterError("phases need each unit's assignment time: pass date=")
        at = units.assigned_at
        t = units.mutate(__phase=ibis.cases(*[((at >= lo) & (at < hi), name) for name, lo, hi
                                              in (p.bounds for p in found)],
                                            else_=ibis.literal("")))
        counts = execute(t.group_by("__phase").aggregate(n=t.count()))
        per = dict(zip(counts["__phase"].astype(str), counts["n"].astype(float)))
        notes = list(self.notes)
        if per.get("", 0) > 0:
            notes.append(messages.PHASES_OUTSIDE.format(n=int(per[""])))
        if not weights_given:
            w = _phases.implied_weights(found, per, variants)
            self.window = replace(self.window, planned_weights=w)
            old = self.compiler
            self.compiler = replace(old, window=self.window)
            self.compiler._units = old._units
            split = ", ".join(f"{v} {fmt.percent(x)}" for v, x in zip(variants, w))
            notes.append(messages.PHASES_PLANNED.format(split=split, n=len(found)))
        self.phases = found
        self.notes = tuple(notes)

    @classmethod
    def from_units(cls, data: Any, variant: str = "variant", metrics: Any = None, *,
                   unit: str | None = None, control: str | None = None,
                   planned_weights: Mapping[str, float] | None = None,
                   experiment_id: str = "experiment", date: str | None = None,
                   phases: Sequence[Any] | None = None) -> Experiment:
        """An experiment from a per-unit table: one row per unit (user), aggregated in its
        engine, analysed like :meth:`from_source` (same :meth:`validate`, :meth:`analyze`,
        :class:`~workbench.readout.result.AnalysisResult`).

        >>> exp = wb.Experiment.from_units(df, "variant", {
        ...     "revenue": wb.mean("revenue", cuped="pre_revenue"),
        ...     "converted": wb.proportion("converted"),
        ...     "aov": wb.ratio("revenue", "orders", cuped=("pre_revenue", "pre_orders"))})
        >>> exp.analyze(segments=["device"]).summary()

        Parameters
        ----------
        data : DataFrame, path or Ibis table
            pandas/polars DataFrame, pyarrow Table, Spark DataFrame, Parquet/CSV file or any
            Ibis table (:func:`workbench.data.sources.units_table`).
        variant : str
            The variant column.
        metrics : mapping, list or path
            ``{name: wb.mean(...) | wb.proportion(...) | wb.ratio(...)}``, or per-unit metrics
            in a metrics YAML (:func:`workbench.metrics.units.unit_metrics`).
        unit : str, optional
            The unit id column (checked for duplicates).
        control : str, optional
            Default: 'control' if it is a variant, else the first variant sorted (the
            validation report says which).
        planned_weights : mapping, optional
            Planned split for the SRM test; default equal over the variants found.
        experiment_id : str
            Name of the experiment in results, logs and dashboards.
        date : str, optional
            A date/timestamp column (e.g. the assignment day): a cumulative time series per
            day. Without it the time series is skipped (the report says so). Every other
            column can be a segment of :meth:`analyze`.
        phases : list of Phase or mapping, optional
            A staged rollout, as :meth:`from_source` (needs ``date``: a unit's phase is the
            one holding its date).

        Raises
        ------
        SchemaError
            A missing column, a non-numeric metric column or a bad date column, named.
        MetricDefinitionError, ParameterError, SourceError
        """
        from workbench.data.quality import check_units, require_unit_columns
        from workbench.data.sources import units_table
        from workbench.metrics.units import UnitCompiler, unit_metrics

        t = units_table(data)
        defs = unit_metrics(metrics)
        require_unit_columns(t, defs, variant=variant, unit=unit, date=date)
        window, notes = cls._units_window(t, variant, date, experiment_id, control,
                                          planned_weights)
        try:
            con = t.get_backend()
        except Exception:  # a memtable is bound to no backend until executed
            con = None
        exp = cls(con, experiment_id, defs, assignments=None, events=None, window=window)
        exp.compiler = UnitCompiler(t, window, defs, variant=variant, unit=unit,
                                    date=date if window.start_date is not None else None)
        exp.units_table = t
        exp.notes = tuple(notes)

        def check(srm_threshold: float, crossover_threshold: float) -> QualityReport:
            return check_units(t, exp.window, defs, variant=variant, unit=unit,
                               srm_threshold=srm_threshold, notes=exp.notes)

        exp._check = check
        exp._use_phases(phases, planned_weights is not None)
        return exp

    @staticmethod
    def _units_window(t, variant, date, experiment_id, control, planned_weights):
        """The plan of a per-unit experiment, and the sentences saying what was defaulted."""
        from workbench.data.sources import execute
        from workbench.errors import DataError

        notes = []
        found = sorted(str(v) for v in execute(
            t.filter(t[variant].notnull()).select(v=t[variant].cast("string")).distinct())["v"])
        if planned_weights is not None:
            variants = [str(v) for v in planned_weights]
            weights = [planned_weights[v] for v in planned_weights]
            if any(not isinstance(w, int | float) or isinstance(w, bool) or not np.isfinite(w)
                   or w < 0 for w in weights) or sum(weights) <= 0:
                raise ParameterError(f"planned_weights must be non-negative numbers summing to "
                                     f"more than 0, got {dict(planned_weights)}")
            weights = [float(w) / sum(weights) for w in weights]
        else:
            if not found:
                raise DataError(f"column {variant!r} has no non-NULL value: no variant to "
                                "compare")
            variants, weights = found, [1 / len(found)] * len(found)
            notes.append(f"planned split: equal over {', '.join(found)} (none given; pass "
                         "planned_weights= to test the SRM against yours)")
        if control is None:
            control = "control" if "control" in variants else variants[0]
            notes.append(f"control: {control!r} ("
                         + ("the variant named 'control'" if control == "control"
                            else "the first variant sorted") + "; pass control= to change)")
        elif control not in variants:
            raise ParameterError(f"control variant {control!r} is not one of {variants}")
        order = [control] + [v for v in variants if v != control]
        weights = [weights[variants.index(v)] for v in order]
        start = end = None
        if date is not None:
            span = execute(t.aggregate(lo=t[date].min(), hi=t[date].max()))
            if not span["lo"].isna().iloc[0]:
                start = pd.Timestamp(span["lo"].iloc[0]).date()
                end = pd.Timestamp(span["hi"].iloc[0]).date()
            else:
                notes.append(f"time series: skipped (column {date!r} has no value)")
        else:
            notes.append("time series: skipped (no date column; pass date= for one)")
        return ExperimentWindow(experiment_id, start, end, tuple(order), tuple(weights),
                                control), notes

    @staticmethod
    def _window(a, x, experiment_id, control, start_date, end_date, planned_weights):
        """The plan of an event-log experiment, and the sentences saying what was defaulted."""
        from workbench.data.sources import execute

        variants, weights, ctrl = [], [], None
        start = end = None
        notes: list[str] = []
        if x is not None:
            meta = execute(x.filter(x.experiment_id == experiment_id))
            if len(meta):
                # one row per variant, or per variant x phase (workbench.readout.phases)
                variants = list(dict.fromkeys(meta["variant"]))
                weights = list(meta.groupby("variant", sort=False)["planned_weight"]
                               .mean().astype(float))
                if "is_control" in meta and (meta["is_control"] == 1).any():
                    ctrl = meta.loc[meta["is_control"] == 1, "variant"].iloc[0]
                start = pd.Timestamp(meta["start_date"].min()).date()
                end = pd.Timestamp(meta["end_date"].max()).date()
        if not variants or start is None:
            af = a.filter(a.experiment_id == experiment_id)
            span = execute(af.aggregate(lo=af.assigned_at.min(), hi=af.assigned_at.max(),
                                        n=af.count()))
            if int(span["n"].iloc[0]) == 0:
                raise SourceError(
                    f"experiment {experiment_id!r} has no rows in table 'assignments'")
            why = "no 'experiments' table" if x is None else \
                f"experiment {experiment_id!r} is not in table 'experiments'"
            if start is None:
                start = pd.Timestamp(span["lo"].iloc[0]).date()
                end = pd.Timestamp(span["hi"].iloc[0]).date()
                if start_date is None or end_date is None:
                    notes.append(f"dates: {start} to {end}, the span of the assignments ({why}; "
                                 "pass start_date=/end_date= to change)")
            if not variants:
                names = execute(af.select("variant").distinct())["variant"]
                variants = sorted(names)
                weights = [1 / len(variants)] * len(variants)
                if planned_weights is None:
                    notes.append(f"planned split: equal over {', '.join(variants)} ({why}; pass "
                                 "planned_weights= to test the SRM against yours)")
        if planned_weights is not None:
            variants = list(planned_weights)
            weights = [float(planned_weights[v]) for v in variants]
        if control is None and ctrl is None and "control" not in variants and variants:
            control = sorted(variants)[0]
            notes.append(f"control: {control!r} (no variant named 'control', the first variant "
                         "sorted; pass control= to change)")
        control = control or ctrl or "control"
        if control not in variants:
            raise ParameterError(f"control variant {control!r} is not one of {variants}")
        # control first, so results read in a stable order
        order = [control] + [v for v in variants if v != control]
        weights = [weights[variants.index(v)] for v in order]
        start = pd.Timestamp(start_date).date() if start_date is not None else start
        end = pd.Timestamp(end_date).date() if end_date is not None else end
        if end < start:
            raise ParameterError(f"end_date {end} is before start_date {start}")
        return ExperimentWindow(experiment_id, start, end, tuple(order), tuple(weights),
                                control), notes

    # -- checks ------------------------------------------------------------------------
    def validate(self, srm_threshold: float = SRM_THRESHOLD,
                 crossover_threshold: float = CROSSOVER_THRESHOLD) -> QualityReport:
        """The data-quality checks of :mod:`workbench.data.quality`, counted in the engine.

        Run on this experiment's tables, window and units (crossovers handled as in the
        metrics): SRM (fails at ``p < srm_threshold``), crossovers (fail from a share of
        ``crossover_threshold``), unknown variants, exposures outside the dates, events before
        exposure, NULL/NaN/inf values, types. Computed once per thresholds.
        """
        key = (float(srm_threshold), float(crossover_threshold))
        if key not in self._reports:
            self._reports[key] = self._check(srm_threshold, crossover_threshold)
        return self._reports[key]

    def _check(self, srm_threshold: float, crossover_threshold: float) -> QualityReport:
        """The event log's checks; :meth:`from_units` puts its table's checks in its place."""
        return check_experiment(
            self.window, self.assignments, self.events, users=self.users,
            experiments=self.experiments, units=self.compiler.units(),
            srm_threshold=srm_threshold, crossover_threshold=crossover_threshold)

    # -- statistics ---------------------------------------------------------------------
    def _memo(self, key: tuple, compute) -> pd.DataFrame:
        if key not in self._stats:
            self._stats[key] = compute()
        return self._stats[key]

    def sufficient_stats(self, segments: Sequence[str] | str | None = None,
                         by_day: bool = False, top_n: int = 5) -> pd.DataFrame:
        """The stats-engine input table, computed in the engine once and then reused.

        Parameters
        ----------
        segments : list of str, optional
            ``users`` columns: rows per ``dimension, segment`` (top ``top_n`` values plus
            "(other)") instead of overall.
        by_day : bool
            Cumulative rows per ``date`` instead of overall.
        top_n : int
        """
        if isinstance(segments, str):
            segments = [segments]
        if segments:
            parts = [self._memo(("segment", dim, top_n),
                                lambda dim=dim: self.compiler.segment_stats([dim], top_n=top_n))
                     for dim in dict.fromkeys(segments)]
            return pd.concat(parts, ignore_index=True)
        if by_day:
            return self._memo(("daily",), self.compiler.daily_stats).copy()
        return self._memo(("overall",), self.compiler.sufficient_stats).copy()

    def analyze(self, method: str = "frequentist", segments: Sequence[str] | str = (), *,
                correction: str | None = None, alpha: float = 0.05,
                difference: str = "relative", segment_correction: str | None = "holm",
                top_n: int = 5, timeseries: bool = True, srm_threshold: float = SRM_THRESHOLD,
                rule: decision.DecisionRule | None = None, robustness: bool = False,
                planned_mde: float | Mapping[str, float] | None = None,
                target_power: float = 0.8, plan: Any = None,
                **stats_options) -> AnalysisResult:
        """Full readout.

        Parameters
        ----------
        method : {'frequentist', 'sequential', 'bayesian'}
        segments : list of str
            ``users`` columns to break down by.
        correction : {None, 'holm', 'bh', 'bonferroni'}
            Across the metrics x variants of the overall table.
        alpha : float
        difference : {'relative', 'absolute'}
        segment_correction : {None, 'holm', 'bh', 'bonferroni'}
            Across the segments of each metric x variant x dimension; Cochran's Q tests of
            heterogeneity are corrected across all of them (every metric x variant x
            dimension).
        top_n : int
            Values of each dimension kept; the rest pooled as "(other)".
        timeseries : bool
            Also analyse the cumulative statistics day by day.
        srm_threshold : float
            SRM level of the data-quality checks (:meth:`validate`).
        rule : DecisionRule, optional
            The decision rule (:class:`workbench.readout.decision.DecisionRule`): primary
            metrics, guardrails or an OEC; default the metrics' roles. With two or more
            treatments the arms are also compared with each other
            (:func:`workbench.readout.arms.compare`, ``result.arms``) and the decision says
            why the chosen arm wins; ``result.reasons`` explains every arm's decision.
        robustness : bool
            Also re-take the decision under the other defensible analysis choices
            (:meth:`robustness`, ``result.robustness``); off by default (a few more passes).
        planned_mde : float or mapping, optional
            The effect the experiment was planned to detect, in ``difference`` units (a
            relative lift or an absolute difference), for all metrics or ``{metric: mde}``:
            fills ``result.power`` (:meth:`power`): the power reached so far and the days left
            to reach ``target_power`` at the traffic so far.
        target_power : float
        plan : Plan, DataFrame or str, optional
            A :func:`workbench.plan` result, its table, the run id / folder of a ``plan``
            run, the planned experiment's id, or ``"auto"`` (the newest finished plan run
            tagged with this experiment's id; none found: no power table, no error)
            (:func:`workbench.tracking.plans.resolve`): its MDEs are the ``planned_mde`` (when
            that is not given), its sizes the power table's ``planned_n`` / ``planned_days``
            and ``result.plan_run`` its run id. An explicit id that finds nothing raises.
        **stats_options
            Passed to :func:`workbench.stats.analyze` (e.g. ``tuning`` or prior options).
        """
        from workbench.stats import analyze as stats_analyze

        if method not in METHODS:
            raise ParameterError(f"method must be one of {METHODS}, got {method!r}")
        if not 0 < alpha < 1:
            raise ParameterError(f"alpha must be in (0, 1), got {alpha!r}")
        if isinstance(segments, str):
            segments = [segments]
        report = self.validate(srm_threshold=srm_threshold)
        # The SRM is the report's (one test, one warning); the engine is not asked for it.
        if report.srm:
            warnings.warn(f"{self.experiment_id}: sample ratio mismatch (p = "
                          f"{report.srm_p_value:.3g}); results are not trustworthy",
                          SRMWarning, stacklevel=2)
        if report.crossover_units:
            warnings.warn(f"{self.experiment_id}: {report.crossover_units} units in more than "
                          "one variant" + (" were excluded" if self.exclude_crossovers else ""),
                          DataQualityWarning, stacklevel=2)
        control = self.window.control
        kw = dict(control=control, method=method, alpha=alpha, difference=difference,
                  **stats_options)
        stats = self._margins(self.sufficient_stats())
        res = stats_analyze(stats, correction=correction, **kw).to_frame()
        res, phase_table, phase_srm, phase_notes = self._phases(res, stats, kw, correction,
                                                                srm_threshold)
        results = self._decorate(res, stats, alpha, report)
        results["srm_p_value"] = report.srm_p_value
        seg_stats = pd.DataFrame()
        seg_frame = pd.DataFrame()
        het = cochran_q(None)
        if segments:
            seg_stats = self._margins(self.sufficient_stats(segments=list(segments), top_n=top_n))
        if len(seg_stats):  # empty when every metric is a quantile (they do not add up)
            seg_frame = self._segment_results(seg_stats, segment_correction, kw)
            seg_frame = self._decorate(seg_frame, seg_stats, alpha, report,
                                       adjusted=segment_correction is not None)
            if method == "frequentist":
                freq = seg_frame
            else:
                freq = stats_analyze(seg_stats, correction=None, warn=False,
                                     **(kw | {"method": "frequentist"})).to_frame()
            het = cochran_q(freq, alpha, correction=segment_correction)
        ts = pd.DataFrame()
        if timeseries:
            daily = self._margins(self.sufficient_stats(by_day=True))
            if len(daily):
                ts = stats_analyze(daily, correction=None, **kw).to_frame()
                ts = self._decorate(ts, daily, alpha, report)
        from workbench.readout import arms

        rule = rule if rule is not None else decision.DecisionRule()
        treatments = list(self.window.variants[1:])
        rule.roles(results)  # a rule naming a metric the readout lacks fails here, named
        versus = arms.empty()
        if len(treatments) > 1 and decision.computable(results) != decision.COMPUTABLE_NONE:
            versus = arms.compare(stats, results, treatments, rule=rule,
                                  correction=correction, **kw)
        why = decision.explain(results, treatments, srm=report.srm or phase_srm,
                               srm_p_value=report.srm_p_value,
                               failed=decision.failed_checks(report), rule=rule, alpha=alpha,
                               correction=correction, arms=versus)
        decisions, line = why.decisions, why.decision
        notes = tuple(decision.data_notes(report, exclude_crossovers=self.exclude_crossovers))
        notes += tuple(phase_notes)
        result = AnalysisResult(
            experiment_id=self.experiment_id, method=method, alpha=alpha,
            difference=difference, control=control, results=results, segments=seg_frame,
            heterogeneity=het, timeseries=ts, validation=report, stats=stats,
            segment_stats=seg_stats, decisions=decisions, decision=line,
            segment_correction=segment_correction, correction=correction, notes=notes,
            reasons=why.reasons, arms=versus, rule=rule, phases=phase_table)
        from workbench.tracking import plans

        plan_table, plan_run = plans.resolve(plan, self.experiment_id)
        if plan_table is not None and planned_mde is None:
            planned_mde = plans.planned_mde(plan_table, [m.name for m in self.metrics]) or None
        if planned_mde is not None:
            from dataclasses import replace

            from workbench.readout import progress

            se_frame = res if method != "bayesian" else stats_analyze(
                stats, correction=None, warn=False, **(kw | {"method": "frequentist"})).to_frame()
            power = self.power(
                planned_mde, se_frame, target_power=target_power, alpha=alpha, method=method,
                tuning=stats_options.get("sequential_tuning"),
                alternative=stats_options.get("alternative", "two-sided"), plan=plan_table)
            said = progress.sentences(power, rule.roles(results)[0], difference == "relative")
            result = replace(result, power=power, plan_run=plan_run,
                             notes=tuple(result.notes) + tuple(said))
        elif plan_run is not None:
            from dataclasses import replace

            result = replace(result, plan_run=plan_run)
        if robustness:
            from dataclasses import replace

            result = replace(result, robustness=self.robustness(result, **stats_options))
        return result

    def phase_stats(self) -> pd.DataFrame:
        """The stats-engine input per metric x variant x ``phase`` (empty without phases)."""
        if not self.phases:
            return pd.DataFrame()
        return self._memo(("phases",), lambda: self.compiler.phase_stats(
            [p.bounds for p in self.phases])).copy()

    def _phases(self, res: pd.DataFrame, stats: pd.DataFrame, kw: dict, correction,
                srm_threshold: float):
        """The phases table; with two or more phases the overall rows take the stratified
        estimates (in the method's terms). Returns ``res, table, any phase SRM, notes``."""
        if not self.phases:
            return res, pd.DataFrame(), False, []
        from workbench.readout import phases as _phases
        from workbench.stats import analyze as stats_analyze
        from workbench.stats.corrections import adjust

        method = kw["method"]
        pooled = res if method == "frequentist" else stats_analyze(
            stats, correction=None, warn=False, **(kw | {"method": "frequentist"})).to_frame()
        opts = {k: v for k, v in kw.items() if k not in ("control", "method", "alpha",
                                                         "difference")}
        table, srm_res = _phases.analyze(
            self._margins(self.phase_stats()), self.phases, control=kw["control"],
            analyze_fn=stats_analyze, method=method, alpha=kw["alpha"],
            difference=kw["difference"], srm_threshold=srm_threshold, pooled=pooled, **opts)
        notes, flagged = [], False
        for name, s in srm_res.items():
            if s is not None and s.flagged:
                flagged = True
                notes.append(messages.PHASE_SRM.format(phase=name, p=fmt.p_value(s.p_value)))
                warnings.warn(f"{self.experiment_id}: " + notes[-1], SRMWarning, stacklevel=3)
        if len(self.phases) > 1 and len(table):
            res = _phases.headline(res, table)
            if correction is not None and method != "bayesian":
                ok = res["p_value"].notna().to_numpy()
                res.loc[ok, "p_value_adjusted"] = adjust(
                    res.loc[ok, "p_value"].to_numpy(float), method=correction)
            notes.append(messages.PHASES_HEADLINE.format(n=len(self.phases))
                         + messages.PHASES_METHOD[method])
        return res, table, flagged, notes

    def days_elapsed(self) -> float:
        """Days of traffic so far: from the first to the last exposure's date, inclusive (NaN
        for a per-unit table without ``date``)."""
        from workbench.data.sources import execute

        u = self.compiler.units()
        if "assigned_at" not in u.columns:
            return float("nan")
        span = execute(u.aggregate(lo=u.assigned_at.min(), hi=u.assigned_at.max()))
        if span["lo"].isna().iloc[0]:
            return float("nan")
        lo, hi = pd.Timestamp(span["lo"].iloc[0]), pd.Timestamp(span["hi"].iloc[0])
        return float((hi.normalize() - lo.normalize()).days + 1)

    def power(self, planned_mde: float | Mapping[str, float], results: pd.DataFrame,
              target_power: float = 0.8, alpha: float = 0.05, method: str = "frequentist",
              tuning: float | None = None, alternative: str = "two-sided",
              plan: pd.DataFrame | None = None) -> pd.DataFrame:
        """Mid-experiment power per metric x variant (the ``power`` table of a readout).

        From each comparison's standard error and units so far (``results``: the stats
        engine's ``se, control_n, variant_n``) and the days of traffic (:meth:`days_elapsed`):
        :func:`workbench.stats.power.reached_power`. Columns ``metric, variant, mde, power,
        target_power, n_so_far, n_needed, days_elapsed, days_needed, days_left``, then
        ``planned_n, planned_days`` (the ``plan`` table's row of the metric, its CUPED row when
        the comparison used CUPED, sequential sizes for ``method="sequential"``; NaN without a
        plan, :func:`workbench.tracking.plans.planned`) and ``error_message``.
        """
        from workbench.stats.power import reached_power
        from workbench.tracking.plans import planned

        names = [m.name for m in self.metrics]
        if isinstance(planned_mde, Mapping):
            bad = [k for k in planned_mde if k not in names]
            if bad:
                raise ParameterError(f"planned_mde names {bad}, not a metric ({names})")
        try:
            mdes = results["metric"].map(lambda n: planned_mde.get(n, np.nan)
                                         if isinstance(planned_mde, Mapping)
                                         else planned_mde).astype(float)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"planned_mde must be a number or {{metric: number}}, got "
                                 f"{planned_mde!r}") from exc
        keep = results[mdes.notna().to_numpy()].reset_index(drop=True)
        mdes = mdes[mdes.notna()].to_numpy(float)
        if np.any(mdes == 0) or not np.all(np.isfinite(mdes)):
            raise ParameterError(f"planned_mde must be finite and not 0, got {planned_mde!r}")
        n_so_far = (keep["control_n"] + keep["variant_n"]).to_numpy(float)
        days = self.days_elapsed()
        cuped = keep["cuped"].tolist() if "cuped" in keep else [False] * len(keep)
        planned_n, planned_days = planned(plan, keep["metric"].tolist(), cuped,
                                          method == "sequential")
        fig = reached_power(keep["se"].to_numpy(float), n_so_far, mdes, alpha=alpha,
                            target_power=target_power, days_elapsed=days,
                            alternative=alternative, method=method, tuning=tuning)
        return pd.DataFrame({"metric": keep["metric"], "variant": keep["variant"], "mde": mdes,
                             "power": fig["power"], "target_power": float(target_power),
                             "n_so_far": n_so_far, "n_needed": fig["n_needed"],
                             "days_elapsed": days, "days_needed": fig["days_needed"],
                             "days_left": fig["days_left"], "planned_n": planned_n,
                             "planned_days": planned_days,
                             "error_message": keep["error_message"].to_numpy()})

    def simulate(self, replicates: int = 200, lift: float | Mapping[str, float] = 0.0, *,
                 method: str = "frequentist", alpha: float = 0.05, seed: int = 0,
                 metrics: Sequence[str] | str | None = None, correction: str | None = None,
                 difference: str = "relative", pool: str = "all", **stats_options):
        """A/A and power simulation on this experiment's own units, inside the engine.

        Re-randomises the units ``replicates`` times with the planned weights (a hash of unit
        id, ``seed`` and replicate, in the engine), reruns the analysis of every replicate at
        once and reports per metric x variant the false-positive rate (Wilson interval), a KS
        test of the p-values' uniformity and the power for the injected ``lift``
        (:mod:`workbench.readout.simulation`).

        Parameters
        ----------
        replicates : int
        lift : float or mapping
            Relative lift injected into the pseudo-treatments (every metric, or
            ``{metric: lift}``); 0: A/A only.
        method, alpha, correction, difference, **stats_options
            As :meth:`analyze` (the correction is applied within each replicate).
        seed : int
        metrics : list of str, optional
            Metrics to simulate (default: all).
        pool : {'all', 'control'}
            Re-randomise every unit (their own arm ignored) or the control's only.

        Returns
        -------
        SimulationResult
        """
        from workbench.readout.simulation import simulate

        return simulate(self, replicates, lift, method=method, alpha=alpha, seed=seed,
                        metrics=metrics, correction=correction, difference=difference,
                        pool=pool, **stats_options)

    def robustness(self, result: AnalysisResult, **stats_options) -> pd.DataFrame:
        """The decision of ``result`` re-taken under each other defensible analysis choice
        (CUPED, caps, prior, correction, crossovers, fixed-horizon or sequential), one at a
        time: :func:`workbench.readout.robustness.robustness`. Pass the ``**stats_options``
        the readout was analysed with."""
        from workbench.readout.robustness import robustness

        return robustness(self, result, **stats_options)

    def _margins(self, stats: pd.DataFrame) -> pd.DataFrame:
        """The stats table with each metric's margin and direction (the margin input columns
        of :mod:`workbench.stats.margin`) when a metric declares a margin."""
        by_name = {m.name: m for m in self.metrics}
        if stats.empty or not any(m.margin is not None for m in by_name.values()):
            return stats
        out = stats.copy()
        metric = out["metric"].map(by_name)
        out["margin"] = [np.nan if m is None or m.margin is None else m.margin for m in metric]
        out["margin_scale"] = [None if m is None else m.margin_scale for m in metric]
        out["margin_kind"] = [None if m is None else m.margin_kind for m in metric]
        out["higher_is_better"] = [True if m is None else m.higher_is_better for m in metric]
        return out

    @staticmethod
    def _segment_results(seg_stats: pd.DataFrame, method: str | None, kw: dict) -> pd.DataFrame:
        """Segment rows, corrected across the segments of each metric x variant x dimension.

        The engine adjusts p-values and intervals together (also for sequential intervals); the
        uncorrected interval is kept beside it for readers who look at one segment only.
        """
        from workbench.stats import analyze as stats_analyze

        raw = stats_analyze(seg_stats, correction=None, **kw).to_frame()
        if method is None or raw.empty or raw["p_value"].isna().all():
            frame = raw.copy()
            frame["p_value_adjusted"] = frame["p_value"]
        else:
            frame = stats_analyze(seg_stats, correction=method,
                                  correction_family=["metric", "variant", "dimension"],
                                  warn=False, **kw).to_frame()
        frame["ci_lower_unadjusted"] = raw["ci_lower"].to_numpy()
        frame["ci_upper_unadjusted"] = raw["ci_upper"].to_numpy()
        return frame

    def _decorate(self, res: pd.DataFrame, stats: pd.DataFrame, alpha: float,
                  report: QualityReport, adjusted: bool = True) -> pd.DataFrame:
        """Metric attributes, unit counts, significance and verdict of each result row."""
        by_name = {m.name: m for m in self.metrics}
        res = res.copy()
        res["kind"] = res["metric"].map(lambda n: by_name[n].kind)
        res["role"] = res["metric"].map(lambda n: by_name[n].role)
        res["higher_is_better"] = res["metric"].map(lambda n: by_name[n].higher_is_better)
        keys = [c for c in ("dimension", "segment", "date") if c in res.columns]
        n = stats[["metric", "variant", *keys, "n"]]
        ctrl = n[n["variant"] == self.window.control].drop(columns="variant").rename(
            columns={"n": "n_control"})
        res = res.merge(ctrl, on=["metric", *keys], how="left").merge(
            n.rename(columns={"n": "n_variant"}), on=["metric", "variant", *keys], how="left")
        sig = decision.significant(res, alpha, adjusted)
        res["significant"] = sig
        res["verdict"] = decision.verdicts(res, np.asarray(sig, bool), srm=report.srm)
        return res
