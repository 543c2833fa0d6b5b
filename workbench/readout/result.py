"""The result of a readout: per metric x variant results, segments, time series, decision."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench.readout.decision import COMPUTABLE_NONE, computable
from workbench.summary import Summary, with_notes

_CORRECTED = {"holm": "Holm's correction", "bh": "the Benjamini-Hochberg correction",
              "bonferroni": "Bonferroni's correction"}


def heterogeneity_sentence(heterogeneity: pd.DataFrame | None, correction: str | None = "holm",
                           alpha: float = 0.05) -> str:
    """The segments' reading in one sentence, saying how many tests were run: ``Effects differ
    across segments: 1 of 36 tests survives Holm's correction`` or ``No segment differs after
    correcting for 36 tests (Holm)``; empty when no test was run."""
    from workbench import format as fmt
    from workbench.stats.corrections import normalise
    from workbench.stats.heterogeneity import survivors

    if heterogeneity is None or not len(heterogeneity):
        return ""
    n = int(np.isfinite(heterogeneity["p_value"].to_numpy(float)).sum())
    if not n:
        return ""
    k = len(survivors(heterogeneity, alpha))
    method = normalise(correction)
    tests = f"{fmt.count(n)} test" + ("" if n == 1 else "s")
    if method is None:
        if k:
            return (f"Effects differ across segments: {fmt.count(k)} of {tests} at p < "
                    f"{fmt.number(alpha)}, uncorrected (about {fmt.number(alpha * n)} expected "
                    "by chance alone)")
        return f"No segment differs at p < {fmt.number(alpha)} ({tests}, uncorrected)"
    if k:
        verb = "survives" if k == 1 else "survive"
        return (f"Effects differ across segments: {fmt.count(k)} of {tests} {verb} "
                f"{_CORRECTED.get(method, method)}")
    label = _CORRECTED.get(method, method).replace("'s correction", "").replace(
        "the ", "").replace(" correction", "")
    return f"No segment differs after correcting for {tests} ({label})"


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
        estimates whatever the method), corrected (``segment_correction``) across all the
        tests of the table: ``p_value_adjusted``, ``n_tests``, ``significant``. Only a
        ``significant`` row is called out (:func:`heterogeneity_sentence`).
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
    phases : DataFrame
        Staged rollouts (:mod:`workbench.readout.phases`): per metric x variant x phase the
        units, effect, interval and the phase's own SRM p-value, then the ``(stratified)``
        combination and the naive ``(pooled)`` estimate; empty without phases.
    rule : DecisionRule or None
        The decision rule applied (:class:`workbench.readout.decision.DecisionRule`).
    plan_run : str or None
        Run id of the ``plan`` run the readout links to (its planned sizes are the ``power``
        table's ``planned_n`` / ``planned_days``); None without one.
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
    phases: pd.DataFrame = field(default_factory=pd.DataFrame)
    plan_run: str | None = None

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
        """The decision table: one row per metric x variant, in words a stakeholder reads
        (:func:`workbench.readout.table.results_table`, the table every surface shows)."""
        return self.results_table().frame()

    def results_table(self):
        """THE results table (:class:`workbench.readout.table.ResultsTable`): the same in the
        notebook, the report, the dashboard and the CLI."""
        from workbench.readout.table import results_table

        return results_table(self)

    def _table_html(self, frame: pd.DataFrame | None = None) -> str:
        return self.results_table().to_html()

    def _reasons_lines(self) -> list[str]:
        """``variant (decision):`` then one ``  - reason`` line per reason, per variant."""
        lines = []
        for variant, why in (self.reasons or {}).items():
            lines.append(f"{variant} ({self.decisions.get(variant, '')}):")
            lines.extend(f"  - {r}" for r in why)
        return lines

    def _reasons_html(self) -> str:
        if not self.reasons:
            return ""
        return "<ul>" + "".join(
            f"<li>{html.escape(str(v))} ({html.escape(str(self.decisions.get(v, '')))})<ul>"
            + "".join(f"<li>{html.escape(r)}</li>" for r in why) + "</ul></li>"
            for v, why in self.reasons.items()) + "</ul>"

    def summary(self) -> Summary:
        """The decision line, the reasons of each variant's decision and the decision table
        (:meth:`summary_frame`), as text and HTML."""
        table = self.results_table()
        text = "\n".join([f"{self.experiment_id}: {self.decision}", *self._reasons_lines(),
                          table.to_text()])
        rich = (f"<p><b>{html.escape(self.experiment_id)}: {html.escape(self.decision)}</b></p>"
                + self._reasons_html() + table.to_html())
        return with_notes(text, rich, self.notes)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        parts = [f"<h3>{html.escape(self.experiment_id)}: {html.escape(self.decision)}</h3>",
                 f"<p>method: {self.method}; SRM {fmt.p_equals(self.srm_p_value)}"
                 f"{' &mdash; <b>sample ratio mismatch</b>' if self.validation.srm else ''}"
                 "</p>", self._reasons_html(),
                 self._table_html()]
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
                         + "</ul>")
        line = heterogeneity_sentence(self.heterogeneity, self.segment_correction, self.alpha)
        if line:
            from workbench.stats.heterogeneity import survivors

            het = survivors(self.heterogeneity, self.alpha)
            parts.append(f"<p>{html.escape(line)}</p>"
                         + (fmt.table_html(het) if len(het) else ""))
        from workbench.readout.table import table_html

        relative = self.difference == "relative"
        if len(self.arms):
            parts.append("<p><b>Arm versus arm</b></p>" + table_html("arms", self.arms, relative))
        if len(self.robustness):
            from workbench.readout.robustness import summary

            parts.append(f"<p><b>Robustness:</b> {html.escape(summary(self.robustness))}</p>"
                         + table_html("robustness", self.robustness, relative))
        if len(self.power):
            parts.append("<p><b>Power so far</b></p>" + table_html("power", self.power, relative))
        if len(self.phases):
            parts.append("<p><b>Phases</b></p>" + table_html("phases", self.phases, relative))
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

    def plot_phases(self, metric: str | None = None, truth: float | None = None, ax=None,
                    **kw):
        from workbench.plots.experiment import plot_phases

        return plot_phases(self, metric=metric, truth=truth, ax=ax, **kw)
