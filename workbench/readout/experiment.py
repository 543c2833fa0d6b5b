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

from workbench.data.quality import CROSSOVER_THRESHOLD, QualityReport, check_experiment
from workbench.errors import DataQualityWarning, ParameterError, SourceError, SRMWarning
from workbench.metrics import ExperimentWindow, MetricCompiler, MetricDefinition, load_metrics
from workbench.readout import decision
from workbench.readout.result import AnalysisResult
from workbench.stats.heterogeneity import cochran_q
from workbench.stats.srm import SRM_THRESHOLD

METHODS = ("frequentist", "sequential", "bayesian")


def _resolve_table(con, spec, default: str, *, required: bool = True):
    from workbench.data.sources import register_files, table

    if spec is None:
        spec = default
    if not isinstance(spec, str | Path):
        return spec  # an Ibis table
    text = str(spec)
    if text.endswith((".parquet", ".csv", ".csv.gz", ".tsv")) or "*" in text:
        register_files(con, {default: text})
        return table(con, default)
    if not required:
        try:
            return con.table(text)
        except Exception:  # optional table absent (list_tables is broken on duckdb 2.0)
            return None
    return table(con, text)


def _project_path(value: Any) -> Any:
    """A relative path that does not exist from the working directory but does from the
    project root (``workbench.config``): the root's (notebooks run from ``notebooks/``)."""
    if not isinstance(value, str | Path) or "://" in str(value) or str(value) == ":memory:" \
            or "*" in str(value):
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return value
    from workbench.config import get_settings

    alt = get_settings().root / path
    if not alt.exists():
        return value
    return alt if isinstance(value, Path) else str(alt)


_TIMES = {"assignments": "assigned_at", "events": "event_time"}


def _conform(tables: dict, mapping: Mapping[str, str], experiment_id: str) -> tuple[dict, list]:
    """The tables with the documented column names: renamed as ``mapping`` says (documented
    -> yours), time-zone aware timestamps converted to UTC, dates made timestamps, a variant
    that is not text read as text, a missing ``assignments.experiment_id`` filled in."""
    import ibis

    from workbench.data.schema import TABLES
    from workbench.errors import SchemaError

    out, notes, found = {}, [], set()
    for name, t in tables.items():
        if t is None:
            out[name] = None
            continue
        documented = {c.name for c in TABLES[name]}
        rename = {ours: yours for ours, yours in mapping.items()
                  if ours in documented and yours in t.columns and yours != ours}
        found |= {yours for yours in mapping.values() if yours in t.columns}
        for ours, yours in rename.items():
            if ours in t.columns:
                raise SchemaError(f"table {name!r} has both {yours!r} (mapped to {ours}) and "
                                  f"{ours!r}: drop one, or map another column")
        if rename:
            t = t.rename(rename)
        schema = t.schema()
        col = _TIMES.get(name)
        if col in schema and (schema[col].is_timestamp() or schema[col].is_date()):
            zone = getattr(schema[col], "timezone", None)
            if zone is not None or schema[col].is_date():
                # Ibis's DuckDB and Spark sessions run in UTC: the cast gives UTC wall time
                t = t.mutate(**{col: t[col].cast(ibis.dtype("timestamp"))})
                own = mapping.get(col, col)
                notes.append(f"timestamps: {name}.{own} is time-zone aware; converted to UTC"
                             if zone is not None else
                             f"timestamps: {name}.{own} holds dates (read as midnight UTC)")
        if name == "assignments":
            if "variant" in schema and not schema["variant"].is_string():
                t = t.mutate(variant=t.variant.cast("string"))
            if "experiment_id" not in schema:
                t = t.mutate(experiment_id=ibis.literal(experiment_id))
                notes.append(f"experiment: every assignments row is {experiment_id!r} (table "
                             "'assignments' has no experiment_id column)")
        out[name] = t
    unused = [f"{yours!r} (for {ours})" for ours, yours in mapping.items() if yours not in found]
    if unused:
        raise SchemaError(f"columns: {', '.join(unused)} is in no table of the source "
                          "(assignments, events, users)")
    return out, notes


def _renamed_metrics(metrics: list[MetricDefinition], mapping: Mapping[str, str]) -> list:
    """Metrics whose ``column``/``where`` name a mapped column of yours, reading its documented
    name (the tables are renamed by :func:`_conform`)."""
    from dataclasses import replace

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
                    columns: Mapping[str, str] | None = None) -> Experiment:
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
        from workbench.data.quality import require_event_columns
        from workbench.data.sources import connect
        from workbench.metrics.definition import load_columns

        source, metrics = _project_path(source), _project_path(metrics)
        mapping = {**load_columns(metrics), **dict(columns or {})}
        if columns:
            load_columns(mapping)  # validates the keys of the call's mapping
        defs = load_metrics(metrics)
        con = connect(source)
        tables = {"assignments": _resolve_table(con, _project_path(assignments), "assignments"),
                  "events": _resolve_table(con, _project_path(events), "events"),
                  "users": _resolve_table(con, _project_path(users), "users",
                                          required=users is not None)}
        x = _resolve_table(con, _project_path(experiments), "experiments",
                           required=experiments is not None)
        tables, notes = _conform(tables, mapping, experiment_id)
        defs = _renamed_metrics(defs, mapping)
        require_event_columns(tables, defs, mapping)
        a, e, u = tables["assignments"], tables["events"], tables["users"]
        window, more = cls._window(a, x, experiment_id, control, start_date, end_date,
                                   planned_weights)
        exp = cls(con, experiment_id, defs, assignments=a, events=e, users=u, experiments=x,
                  window=window, exclude_crossovers=exclude_crossovers)
        exp.notes = tuple(notes + more)
        exp.columns = mapping
        return exp

    @classmethod
    def from_units(cls, data: Any, variant: str = "variant", metrics: Any = None, *,
                   unit: str | None = None, control: str | None = None,
                   planned_weights: Mapping[str, float] | None = None,
                   experiment_id: str = "experiment", date: str | None = None) -> Experiment:
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
            return check_units(t, window, defs, variant=variant, unit=unit,
                               srm_threshold=srm_threshold, notes=exp.notes)

        exp._check = check
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
                variants = list(meta["variant"])
                weights = list(meta["planned_weight"].astype(float))
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
        why = decision.explain(results, treatments, srm=report.srm,
                               srm_p_value=report.srm_p_value,
                               failed=decision.failed_checks(report), rule=rule, alpha=alpha,
                               correction=correction, arms=versus)
        decisions, line = why.decisions, why.decision
        notes = tuple(decision.data_notes(report, exclude_crossovers=self.exclude_crossovers))
        result = AnalysisResult(
            experiment_id=self.experiment_id, method=method, alpha=alpha,
            difference=difference, control=control, results=results, segments=seg_frame,
            heterogeneity=het, timeseries=ts, validation=report, stats=stats,
            segment_stats=seg_stats, decisions=decisions, decision=line,
            segment_correction=segment_correction, correction=correction, notes=notes,
            reasons=why.reasons, arms=versus, rule=rule)
        if robustness:
            from dataclasses import replace

            result = replace(result, robustness=self.robustness(result, **stats_options))
        return result

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
