"""The result of a readout: per metric x variant results, segments, time series, decision."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.readout.decision import (
    COMPUTABLE_NONE,
    VERDICT_HARM,
    VERDICT_IMPROVED,
    VERDICT_SRM,
    VERDICT_WORSE,
    computable,
)
from workbench.summary import Summary

# Verdicts shown in colour in the HTML views.
_COLOURS = {VERDICT_IMPROVED: "#1a7f37", VERDICT_WORSE: "#b00", VERDICT_HARM: "#b00",
            VERDICT_SRM: "#b00"}


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
        Cochran's Q across the segments of each dimension
        (:func:`workbench.stats.heterogeneity.cochran_q`, from frequentist per-segment
        estimates whatever the method).
    timeseries : DataFrame
        The results on cumulative data per ``date`` (each day analysed on its own).
    validation : QualityReport
        The data-quality checks (:mod:`workbench.data.quality`).
    stats : DataFrame
        The sufficient statistics analysed (overall).
    segment_stats : DataFrame
        The sufficient statistics per ``dimension, segment`` (empty without segments).
    decisions : dict
        Variant -> 'ship', 'do not ship: ...', 'no detectable effect' or 'do not trust: SRM'.
    decision : str
        One line for stakeholders (:func:`workbench.readout.decision.decide`).
    segment_correction, correction : str or None
        Corrections across segments, and across the metrics x variants of ``results``.
    notes : tuple of str
        What the readout excluded, ignored or kept, and why: one sentence per data-quality
        finding (:func:`workbench.readout.decision.data_notes`); shown by :meth:`summary` and
        kept in the record's notes.
    reasons : dict
        Variant -> the sentences that explain its decision (which metrics carried it, which
        guardrails held, why it was or was not chosen over the other arms).
    arms : DataFrame
        Arm versus arm: every pair of treatment arms compared directly (difference with its
        interval, chance to be best); empty with one treatment.
    robustness : DataFrame
        The decision re-evaluated under the other defensible analysis choices (one row per
        choice, ``flips`` True where the decision changes); empty when not computed.
    power : DataFrame
        Mid-experiment power per metric x variant (power reached for the planned MDE, days
        left); empty without a planned MDE.
    rule : DecisionRule or None
        The decision rule applied (:class:`workbench.readout.decision.DecisionRule`).

    experiment_id: str
    method: str
    alpha: float
    difference: str
    control: str
    results: pd.DataFrame
    segments: pd.DataFrame
    heterogeneity: pd.DataFrame
    timeseries: pd.DataFrame
    validation: Any
    stats: pd.DataFrame
    segment_stats: pd.DataFrame = field(default_factory=pd.DataFrame)
    decisions: dict = field(default_factory=dict)
    decision: str = ""
    segment_correction: str | None = "holm"
    correction: str | None = None
    notes: tuple = ()
    reasons: dict = field(default_factory=dict)
    arms: pd.DataFrame = field(default_factory=pd.DataFrame)
    robustness: pd.DataFrame = field(default_factory=pd.DataFrame)
    power: pd.DataFrame = field(default_factory=pd.DataFrame)
    rule: Any = None

    @property
    def srm_p_value(self) -> float:
        return self.validation.srm_p_value

    @property
    def computable(self) -> str:
        """``all``, ``some`` or ``none``: how many overall comparisons were computed."""
        return computable(self.results)

    @property
    def trustworthy(self) -> bool:
        """False when a data-quality error (a sample ratio mismatch or another failed check)
        voids the verdicts, or when no comparison of the primary metric (of any metric,
        without a primary one) could be computed."""
        if self.validation.srm or not getattr(self.validation, "ok", True):
            return False
        r = self.results
        primary = r[r["role"] == "primary"] if "role" in r else r.iloc[:0]
        return computable(primary if len(primary) else r) != COMPUTABLE_NONE

    def to_frame(self) -> pd.DataFrame:
        """The overall results table (a copy), for logging and dashboards."""
        return self.results.copy()

    def summary_frame(self) -> pd.DataFrame:
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

    def _table_html(self, frame: pd.DataFrame) -> str:
        return frame.style.hide(axis="index").map(
            lambda v: f"color: {_COLOURS[v]}; font-weight: bold" if v in _COLOURS else "",
            subset=["verdict"]).to_html()

    def summary(self) -> Summary:
        """The decision line and the decision table (:meth:`summary_frame`), as text and HTML."""
        frame = self.summary_frame()
        text = f"{self.experiment_id}: {self.decision}\n" + frame.to_string(index=False)
        rich = (f"<p><b>{html.escape(self.experiment_id)}: {html.escape(self.decision)}</b></p>"
                + self._table_html(frame))
        if self.notes:
            text += "\n" + "\n".join(f"Note: {n}" for n in self.notes)
            rich += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>"
        return Summary(text, rich)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        parts = [f"<h3>{html.escape(self.experiment_id)}: {html.escape(self.decision)}</h3>",
                 f"<p>method: {self.method}; SRM p = {self.srm_p_value:.3g}"
                 f"{' &mdash; <b>sample ratio mismatch</b>' if self.validation.srm else ''}"
                 "</p>",
                 self._table_html(self.summary_frame())]
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
                         + "</ul>")
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
