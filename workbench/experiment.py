"""The A/B facade: source -> validation -> sufficient statistics (in the engine) -> decision.

>>> import workbench as wb
>>> exp = wb.Experiment.from_source("data/warehouse.duckdb", "checkout_redesign")
>>> exp.validate().summary()
>>> result = exp.analyze(method="frequentist", segments=["device"])
>>> result.summary()          # the decision table
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import (
    DataQualityWarning,
    ParameterError,
    SourceError,
    SRMWarning,
)
from workbench.metrics import (
    ExperimentWindow,
    MetricCompiler,
    MetricDefinition,
    load_metrics,
)

SRM_THRESHOLD = 0.001
CROSSOVER_THRESHOLD = 0.01
# Verdict wording (dashboards and tests rely on it).
VERDICT_SRM = "do not trust: SRM"
VERDICT_IMPROVED = "improvement"
VERDICT_WORSE = "deterioration"
VERDICT_HARM = "harm on guardrail"
VERDICT_NONE = "no detectable effect"
VERDICT_ERROR = "not computable"
DECISION_SHIP = "ship"
DECISION_DONT = "do not ship"
METHODS = ("frequentist", "sequential", "bayesian")


# --------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class ValidationReport:
    """Data-quality checks of an experiment, as counts.

    Attributes
    ----------
    experiment_id : str
    checks : DataFrame
        ``check, status ('ok'|'warning'|'error'), count, share, p_value, detail``
        (the statuses of :mod:`workbench.data.validate`).
    counts : DataFrame
        Per variant: ``variant, planned_weight, units, expected_units, share``.
    srm_p_value : float
        Chi-square p-value of the unit split against the planned weights.
    crossover_units : int
        Units assigned to more than one variant.
    srm_threshold : float
    """

    experiment_id: str
    checks: pd.DataFrame
    counts: pd.DataFrame
    srm_p_value: float
    crossover_units: int
    srm_threshold: float = SRM_THRESHOLD

    @property
    def srm(self) -> bool:
        """True when a sample ratio mismatch is detected."""
        return bool(np.isnan(self.srm_p_value) or self.srm_p_value < self.srm_threshold)

    @property
    def trustworthy(self) -> bool:
        """No check failed."""
        return not (self.checks["status"] == "error").any()

    def to_frame(self) -> pd.DataFrame:
        """The checks table (a copy)."""
        return self.checks.copy()

    def summary(self) -> str:
        head = (f"Validation of {self.experiment_id!r}: "
                f"{'OK' if self.trustworthy else 'FAILED'}; SRM p = {self.srm_p_value:.3g}")
        return "\n".join([head, self.checks.to_string(index=False), "",
                          self.counts.to_string(index=False)])

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        state = "OK" if self.trustworthy else "<span style='color:#b00'>FAILED</span>"
        return (f"<h4>Validation of {html.escape(self.experiment_id)}: {state}</h4>"
                + self.checks.to_html(index=False, na_rep="")
                + self.counts.to_html(index=False, float_format=lambda x: f"{x:.4g}"))


def _srm_p_value(units: np.ndarray, weights: np.ndarray) -> float:
    from scipy import stats

    units = np.asarray(units, float)
    weights = np.asarray(weights, float) / np.sum(weights)
    total = units.sum()
    if total <= 0:
        return float("nan")
    if np.any(units == 0):
        return 0.0  # a planned variant with no units is a mismatch by itself
    return float(stats.chisquare(units, total * weights).pvalue)


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class AnalysisResult:
    """A readout: per metric x variant results, segments, time series and the decision.

    Attributes
    ----------
    experiment_id : str
    method : str
        'frequentist', 'sequential' or 'bayesian'.
    alpha : float
    difference : str
        'relative' (lift) or 'absolute'.
    control : str
    results : DataFrame
        One row per metric x treatment variant: ``workbench.stats.schema.OUTPUT_COLUMNS`` plus
        ``kind, role, higher_is_better, n_control, n_variant, significant, verdict``.
    segments : DataFrame
        The same per ``dimension, segment``, with ``p_value_adjusted`` corrected across the
        segments of a dimension (``segment_correction``); empty without segments.
    heterogeneity : DataFrame
        Cochran's Q across the segments of each dimension (from frequentist per-segment
        estimates whatever the method): ``metric, variant, dimension,
        n_segments, q_statistic, dof, p_value, i_squared``.
    timeseries : DataFrame
        The results on cumulative data per ``date`` (each day analysed on its own).
    validation : ValidationReport
    stats : DataFrame
        The sufficient statistics analysed (overall).
    decisions : dict
        Variant -> 'ship', 'do not ship', 'no detectable effect' or 'do not trust: SRM'.
    decision : str
        One line for stakeholders.
    """

    experiment_id: str
    method: str
    alpha: float
    difference: str
    control: str
    results: pd.DataFrame
    segments: pd.DataFrame
    heterogeneity: pd.DataFrame
    timeseries: pd.DataFrame
    validation: ValidationReport
    stats: pd.DataFrame
    decisions: dict = field(default_factory=dict)
    decision: str = ""
    segment_correction: str | None = "holm"

    @property
    def srm_p_value(self) -> float:
        return self.validation.srm_p_value

    @property
    def trustworthy(self) -> bool:
        return not self.validation.srm

    def to_frame(self) -> pd.DataFrame:
        """The overall results table (a copy), for logging and dashboards."""
        return self.results.copy()

    def summary(self) -> pd.DataFrame:
        """The decision table: one row per metric x variant, in words a stakeholder reads."""
        r = self.results
        rel = self.difference == "relative"

        def fmt(v):
            if not np.isfinite(v):
                return "-"
            return f"{v:+.1%}" if rel else f"{v:+.4g}"

        evidence = []
        for _, row in r.iterrows():
            if self.method == "bayesian" and np.isfinite(row.get("chance_to_win", np.nan)):
                # the engine's chance is P(variant > control); a win is a fall when lower is better
                ctw = row["chance_to_win"] if row.get("higher_is_better", True) \
                    else 1 - row["chance_to_win"]
                evidence.append(f"chance to win {ctw:.0%}")
            elif np.isfinite(row.get("p_value", np.nan)):
                p = row["p_value_adjusted"] if np.isfinite(
                    row.get("p_value_adjusted", np.nan)) else row["p_value"]
                evidence.append(f"p = {p:.3g}" if p >= 1e-4 else "p < 0.0001")
            else:
                evidence.append("-")
        level = f"{1 - self.alpha:.0%}"
        out = pd.DataFrame({
            "metric": r["metric"],
            "role": r["role"],
            "variant": r["variant"],
            "control": r["control_mean"].map(lambda v: f"{v:.4g}" if np.isfinite(v) else "-"),
            "treatment": r["variant_mean"].map(lambda v: f"{v:.4g}" if np.isfinite(v) else "-"),
            ("lift" if rel else "difference"): r["effect"].map(fmt),
            f"{level} interval": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in
                                  zip(r["ci_lower"], r["ci_upper"])],
            "evidence": evidence,
            "verdict": r["verdict"],
        })
        return out.reset_index(drop=True)

    def __str__(self) -> str:
        return (f"{self.experiment_id}: {self.decision}\n"
                + self.summary().to_string(index=False))

    def _repr_html_(self) -> str:
        colour = {VERDICT_IMPROVED: "#1a7f37", VERDICT_WORSE: "#b00", VERDICT_HARM: "#b00",
                  VERDICT_SRM: "#b00"}
        table = self.summary().style.hide(axis="index").map(
            lambda v: f"color: {colour[v]}; font-weight: bold" if v in colour else "",
            subset=["verdict"]).to_html()
        parts = [f"<h3>{html.escape(self.experiment_id)}: {html.escape(self.decision)}</h3>",
                 f"<p>method: {self.method}; SRM p = {self.srm_p_value:.3g}"
                 f"{'' if self.trustworthy else ' &mdash; <b>sample ratio mismatch</b>'}</p>",
                 table]
        if len(self.heterogeneity):
            het = self.heterogeneity[self.heterogeneity["p_value"] < self.alpha]
            if len(het):
                parts.append("<p>Effects differ across segments (Cochran's Q, p &lt; "
                             f"{self.alpha:g}):</p>" + het.to_html(index=False))
        return "".join(parts)

    # convenience plots (same as workbench.plots.*)
    def plot_forest(self, ax=None, **kw):
        from workbench.plots.experiment import plot_forest

        return plot_forest(self, ax=ax, **kw)

    def plot_timeseries(self, metric: str | None = None, ax=None, **kw):
        from workbench.plots.experiment import plot_cumulative_lift

        return plot_cumulative_lift(self, metric=metric, ax=ax, **kw)

    def plot_segments(self, metric: str | None = None, dimension: str | None = None, ax=None,
                      **kw):
        from workbench.plots.experiment import plot_segments

        return plot_segments(self, metric=metric, dimension=dimension, ax=ax, **kw)

    def plot_posteriors(self, metric: str | None = None, ax=None, **kw):
        from workbench.plots.experiment import plot_posteriors

        return plot_posteriors(self, metric=metric, ax=ax, **kw)


def _z(alpha: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1 - alpha / 2))


def heterogeneity(segments: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Cochran's Q test of equal effects across the segments of each dimension.

    Standard errors are read off the (uncorrected) intervals as ``(upper - lower) / (2 z)``;
    ``Q = sum w_i (theta_i - theta_bar)^2`` with ``w_i = 1 / se_i^2`` is chi-square with
    ``k - 1`` degrees of freedom under homogeneity. Segments named "(other)" are included.
    """
    from scipy import stats

    cols = ["metric", "variant", "dimension", "n_segments", "q_statistic", "dof", "p_value",
            "i_squared"]
    if segments is None or segments.empty:
        return pd.DataFrame(columns=cols)
    z = _z(alpha)
    rows = []
    for (metric, variant, dim), g in segments.groupby(["metric", "variant", "dimension"],
                                                      sort=False):
        lo = g["ci_lower_unadjusted"] if "ci_lower_unadjusted" in g else g["ci_lower"]
        hi = g["ci_upper_unadjusted"] if "ci_upper_unadjusted" in g else g["ci_upper"]
        se = (hi - lo).to_numpy(float) / (2 * z)
        theta = g["effect"].to_numpy(float)
        ok = np.isfinite(se) & np.isfinite(theta) & (se > 0)
        k = int(ok.sum())
        if k < 2:
            rows.append([metric, variant, dim, k, np.nan, max(k - 1, 0), np.nan, np.nan])
            continue
        w = 1 / se[ok] ** 2
        bar = np.sum(w * theta[ok]) / np.sum(w)
        q = float(np.sum(w * (theta[ok] - bar) ** 2))
        dof = k - 1
        rows.append([metric, variant, dim, k, q, dof, float(stats.chi2.sf(q, dof)),
                     max(0.0, (q - dof) / q) if q > 0 else 0.0])
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------
# The facade


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


class Experiment:
    """An experiment in a data source, analysed inside the engine.

    Build with :meth:`from_source`. Attributes: ``con`` (Ibis backend), ``window``
    (:class:`~workbench.metrics.ExperimentWindow`), ``metrics`` (list of
    :class:`~workbench.metrics.MetricDefinition`), ``compiler``
    (:class:`~workbench.metrics.MetricCompiler`).
    """

    def __init__(self, con, experiment_id: str, metrics: list[MetricDefinition], *,
                 assignments, events, users=None, window: ExperimentWindow,
                 exclude_crossovers: bool = True):
        self.con = con
        self.experiment_id = experiment_id
        self.metrics = metrics
        self.window = window
        self.assignments = assignments
        self.events = events
        self.users = users
        self.exclude_crossovers = exclude_crossovers
        self.compiler = MetricCompiler(assignments, events, window, metrics, users=users,
                                       exclude_crossovers=exclude_crossovers)
        self._validation: ValidationReport | None = None

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
                    exclude_crossovers: bool = True) -> Experiment:
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
        """
        from workbench.data.sources import connect

        con = connect(source)
        a = _resolve_table(con, assignments, "assignments")
        e = _resolve_table(con, events, "events")
        u = _resolve_table(con, users, "users", required=users is not None)
        x = _resolve_table(con, experiments, "experiments", required=experiments is not None)
        for name, t, cols in (("assignments", a, ("experiment_id", "user_id", "variant",
                                                   "assigned_at")),
                              ("events", e, ("user_id", "event_time", "event_type"))):
            missing = [c for c in cols if c not in t.columns]
            if missing:
                raise SourceError(f"table {name!r} lacks column(s) {missing}")
        window = cls._window(a, x, experiment_id, control, start_date, end_date,
                             planned_weights)
        return cls(con, experiment_id, load_metrics(metrics), assignments=a, events=e,
                   users=u, window=window, exclude_crossovers=exclude_crossovers)

    @staticmethod
    def _window(a, x, experiment_id, control, start_date, end_date, planned_weights):
        from workbench.data.sources import execute as _execute

        variants, weights, ctrl = [], [], None
        start = end = None
        if x is not None:
            meta = _execute(x.filter(x.experiment_id == experiment_id))
            if len(meta):
                variants = list(meta["variant"])
                weights = list(meta["planned_weight"].astype(float))
                if "is_control" in meta and (meta["is_control"] == 1).any():
                    ctrl = meta.loc[meta["is_control"] == 1, "variant"].iloc[0]
                start = pd.Timestamp(meta["start_date"].min()).date()
                end = pd.Timestamp(meta["end_date"].max()).date()
        if not variants or start is None:
            af = a.filter(a.experiment_id == experiment_id)
            span = _execute(af.aggregate(lo=af.assigned_at.min(), hi=af.assigned_at.max(),
                                         n=af.count()))
            if int(span["n"].iloc[0]) == 0:
                raise SourceError(
                    f"experiment {experiment_id!r} has no rows in table 'assignments'")
            if start is None:
                start = pd.Timestamp(span["lo"].iloc[0]).date()
                end = pd.Timestamp(span["hi"].iloc[0]).date()
            if not variants:
                names = _execute(af.select("variant").distinct())["variant"]
                variants = sorted(names)
                weights = [1 / len(variants)] * len(variants)
        if planned_weights is not None:
            variants = list(planned_weights)
            weights = [float(planned_weights[v]) for v in variants]
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
                                control)

    # -- checks ------------------------------------------------------------------------
    def validate(self, srm_threshold: float = SRM_THRESHOLD,
                 crossover_threshold: float = CROSSOVER_THRESHOLD) -> ValidationReport:
        """Data-quality checks, counted in the engine.

        SRM (chi-square against the planned weights, fails at ``p < srm_threshold``),
        crossover units (in more than one variant; excluded from the metrics by default;
        fails at a share of at least ``crossover_threshold``), unknown variants, assignments
        outside the dates, events in the experiment before the unit's exposure (ignored by the
        metrics), NaN/inf values of numeric event columns (ignored), NULL keys.
        """
        from workbench.data.sources import execute as _execute

        w = self.window
        a = self.assignments.filter(self.assignments.experiment_id == self.experiment_id)
        per = a.group_by("user_id").aggregate(nv=a.variant.nunique())
        a_stats = _execute(a.aggregate(
            rows=a.count(),
            null_keys=(a.user_id.isnull() | a.variant.isnull() | a.assigned_at.isnull())
            .cast("int64").sum(),
            outside=((a.assigned_at < w.start_ts) | (a.assigned_at >= w.end_ts))
            .cast("int64").sum()))
        p_stats = _execute(per.aggregate(users=per.count(),
                                         crossover=(per.nv > 1).cast("int64").sum()))
        units = self.compiler.units()
        counts = _execute(units.group_by("variant").aggregate(units=units.count()))
        e = self.events
        ev = e.filter((e.event_time >= w.start_ts) & (e.event_time < w.end_ts))
        j = ev.join(units, ev.user_id == units.user_id)
        num_cols = [c for c, t in e.schema().items() if t.is_floating()]
        e_aggs = {"early": (j.event_time < j.assigned_at).cast("int64").sum(),
                  "events": j.count()}
        e_stats = _execute(j.aggregate(**e_aggs))
        bad_aggs = {f"bad__{c}": (e[c].isnan() | e[c].isinf()).cast("int64").sum()
                    for c in num_cols}
        bad_aggs["null_keys"] = (e.user_id.isnull() | e.event_time.isnull()
                                 | e.event_type.isnull()).cast("int64").sum()
        bad_aggs["rows"] = e.count()
        b_stats = _execute(e.aggregate(**bad_aggs))

        def num(frame, col):
            v = frame[col].iloc[0]
            return 0 if v is None or pd.isna(v) else int(v)

        n_users = num(p_stats, "users")
        n_cross = num(p_stats, "crossover")
        observed = dict(zip(counts["variant"], counts["units"].astype(int)))
        unknown = sorted(set(observed) - set(w.variants))
        planned = np.array(w.planned_weights, float)
        units_arr = np.array([observed.get(v, 0) for v in w.variants], float)
        srm_p = _srm_p_value(units_arr, planned)
        total = units_arr.sum()
        count_frame = pd.DataFrame({
            "variant": list(w.variants), "planned_weight": planned / planned.sum(),
            "units": units_arr.astype(int), "expected_units": total * planned / planned.sum(),
            "share": units_arr / total if total else np.nan})
        rows = []

        def add(check, status, count, share, p, detail):
            rows.append({"check": check, "status": status, "count": count, "share": share,
                         "p_value": p, "detail": detail})

        add("units", "ok" if total > 0 else "error", int(total), np.nan, np.nan,
            f"{n_users} users in {num(a_stats, 'rows')} assignment rows; "
            f"{int(total)} analysed")
        srm_fail = bool(np.isnan(srm_p) or srm_p < srm_threshold)
        add("sample ratio mismatch", "error" if srm_fail else "ok", int(total), np.nan, srm_p,
            "observed " + ", ".join(f"{v}={int(n)}" for v, n in zip(w.variants, units_arr))
            + f" vs planned {', '.join(f'{x:.3g}' for x in planned / planned.sum())}")
        share = n_cross / n_users if n_users else np.nan
        status = "ok" if n_cross == 0 else (
            "error" if share >= crossover_threshold else "warning")
        add("crossover units", status, n_cross, share, np.nan,
            "excluded from the metrics" if self.exclude_crossovers
            else "counted in their first variant")
        add("unknown variants", "error" if unknown else "ok", len(unknown), np.nan, np.nan,
            ", ".join(unknown) if unknown else "")
        outside = num(a_stats, "outside")
        add("assignments outside the dates", "warning" if outside else "ok", outside,
            outside / max(num(a_stats, "rows"), 1), np.nan, f"{w.start_date} .. {w.end_date}")
        early = num(e_stats, "early")
        add("events before exposure", "warning" if early else "ok", early,
            early / max(num(e_stats, "events"), 1), np.nan,
            "in the experiment window but before the unit's exposure; ignored")
        for c in num_cols:
            bad = num(b_stats, f"bad__{c}")
            add(f"NaN/inf in events.{c}", "warning" if bad else "ok", bad,
                bad / max(num(b_stats, "rows"), 1), np.nan, "ignored by the metrics")
        nk = num(a_stats, "null_keys") + num(b_stats, "null_keys")
        add("NULL keys", "warning" if nk else "ok", nk, np.nan, np.nan,
            "rows of assignments/events with a NULL user, variant, time or type")
        report = ValidationReport(self.experiment_id, pd.DataFrame(rows), count_frame, srm_p,
                                  n_cross, srm_threshold)
        self._validation = report
        return report

    # -- statistics ---------------------------------------------------------------------
    def sufficient_stats(self, segments: Sequence[str] | str | None = None,
                         by_day: bool = False, top_n: int = 5) -> pd.DataFrame:
        """The stats-engine input table, computed in the engine.

        Parameters
        ----------
        segments : list of str, optional
            ``users`` columns: rows per ``dimension, segment`` (top ``top_n`` values plus
            "(other)") instead of overall.
        by_day : bool
            Cumulative rows per ``date`` instead of overall.
        """
        if isinstance(segments, str):
            segments = [segments]
        if segments:
            return self.compiler.segment_stats(list(segments), top_n=top_n)
        if by_day:
            return self.compiler.daily_stats()
        return self.compiler.sufficient_stats()

    def analyze(self, method: str = "frequentist", segments: Sequence[str] | str = (), *,
                correction: str | None = None, alpha: float = 0.05,
                difference: str = "relative", segment_correction: str | None = "holm",
                top_n: int = 5, timeseries: bool = True, srm_threshold: float = SRM_THRESHOLD,
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
            Across the segments of each metric x variant x dimension.
        top_n : int
            Values of each dimension kept; the rest pooled as "(other)".
        timeseries : bool
            Also analyse the cumulative statistics day by day.
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
        stats = self.sufficient_stats()
        with warnings.catch_warnings():
            # the SRM warning is ours, once; the engine's per-block SRM would repeat it
            warnings.simplefilter("ignore", SRMWarning)
            weights = dict(zip(self.window.variants, self.window.planned_weights))
            res = stats_analyze(stats, correction=correction, planned_weights=weights,
                                **kw).to_frame()
            results = self._decorate(res, stats, alpha, report)
            seg_frame = pd.DataFrame()
            het = heterogeneity(None)
            if segments:
                seg_stats = self.sufficient_stats(segments=list(segments), top_n=top_n)
                seg_frame = self._segment_results(seg_stats, segment_correction, kw)
                seg_frame = self._decorate(seg_frame, seg_stats, alpha, report,
                                           adjusted=segment_correction is not None)
                if method == "frequentist":
                    freq = seg_frame
                else:
                    freq = stats_analyze(seg_stats, correction=None,
                                         **(kw | {"method": "frequentist"})).to_frame()
                het = heterogeneity(freq, alpha)
            ts = pd.DataFrame()
            if timeseries:
                daily = self.sufficient_stats(by_day=True)
                if len(daily):
                    ts = stats_analyze(daily, correction=None, **kw).to_frame()
                    ts = self._decorate(ts, daily, alpha, report)
        decisions, decision = self._decide(results, report)
        return AnalysisResult(
            experiment_id=self.experiment_id, method=method, alpha=alpha,
            difference=difference, control=control, results=results, segments=seg_frame,
            heterogeneity=het, timeseries=ts, validation=report, stats=stats,
            decisions=decisions, decision=decision, segment_correction=segment_correction)

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
                                  **kw).to_frame()
        frame["ci_lower_unadjusted"] = raw["ci_lower"].to_numpy()
        frame["ci_upper_unadjusted"] = raw["ci_upper"].to_numpy()
        return frame

    def _decorate(self, res: pd.DataFrame, stats: pd.DataFrame, alpha: float,
                  report: ValidationReport, adjusted: bool = True) -> pd.DataFrame:
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
        sig = self._significant(res, alpha, adjusted)
        good = np.where(res["higher_is_better"], res["effect"] > 0, res["effect"] < 0)
        verdict = np.where(sig & good, VERDICT_IMPROVED,
                           np.where(sig & ~good, np.where(res["role"] == "guardrail",
                                                          VERDICT_HARM, VERDICT_WORSE),
                                    VERDICT_NONE)).astype(object)
        err = res.get("error_message", pd.Series("", index=res.index)).fillna("")
        verdict[err.to_numpy() != ""] = VERDICT_ERROR
        if report.srm:
            verdict[:] = VERDICT_SRM
        res["significant"] = sig
        res["verdict"] = verdict
        return res

    def _significant(self, res: pd.DataFrame, alpha: float, adjusted: bool) -> np.ndarray:
        ctw = res["chance_to_win"].to_numpy(float) if "chance_to_win" in res else None
        if ctw is not None and np.isfinite(ctw).any() and res["p_value"].isna().all():
            return (ctw >= 1 - alpha / 2) | (ctw <= alpha / 2)
        padj = res["p_value_adjusted"].to_numpy(float) if adjusted and \
            "p_value_adjusted" in res else np.full(len(res), np.nan)
        p = np.where(np.isfinite(padj), padj, res["p_value"].to_numpy(float))
        ci = (res["ci_lower"].to_numpy(float) > 0) | (res["ci_upper"].to_numpy(float) < 0)
        return np.where(np.isfinite(p), p < alpha, ci)

    def _decide(self, results: pd.DataFrame, report: ValidationReport):
        if report.srm:
            decisions = {v: VERDICT_SRM for v in self.window.variants[1:]}
            return decisions, (f"{VERDICT_SRM} (p = {report.srm_p_value:.2g}); "
                               "fix the assignment before reading any lift")
        decisions = {}
        best, best_lift = None, -np.inf
        for v in self.window.variants[1:]:
            r = results[results["variant"] == v]
            harm = r[r["verdict"] == VERDICT_HARM]
            primary = r[r["role"] == "primary"]
            if len(harm):
                decisions[v] = f"{DECISION_DONT}: harm on guardrail {', '.join(harm['metric'])}"
            elif (primary["verdict"] == VERDICT_WORSE).any():
                decisions[v] = f"{DECISION_DONT}: primary metric worse"
            elif len(primary) and (primary["verdict"] == VERDICT_IMPROVED).all():
                decisions[v] = DECISION_SHIP
                lift = float(primary["effect"].mean())
                if lift > best_lift:
                    best, best_lift = v, lift
            else:
                decisions[v] = VERDICT_NONE
        if best is not None:
            decision = f"{DECISION_SHIP} {best}"
        elif any(d.startswith(DECISION_DONT) for d in decisions.values()):
            decision = "; ".join(f"{v}: {d}" for v, d in decisions.items())
        else:
            decision = f"{VERDICT_NONE} on the primary metric"
        return decisions, decision


# --------------------------------------------------------------------------------------------
# CLI


def main(args: argparse.Namespace) -> int:
    """``workbench readout``: print the decision table, write the results if asked."""
    exp = Experiment.from_source(args.source, args.experiment, args.metrics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(method=args.method, segments=list(args.segments or []))
    print(str(result.validation.summary()).splitlines()[0])
    print(result)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tables = {"": result.to_frame()}
        if len(result.segments):
            tables["_segments"] = result.segments
        for suffix, frame in tables.items():
            path = out.with_name(out.stem + suffix + out.suffix)
            if out.suffix == ".parquet":
                frame.to_parquet(path, index=False)
            elif out.suffix == ".csv":
                frame.to_csv(path, index=False)
            elif out.suffix == ".json":
                frame.to_json(path, orient="records", indent=1, date_format="iso")
            else:
                raise ParameterError(f"--output must end in .parquet, .csv or .json: {out}")
            print(f"wrote {path}")
    return 0
