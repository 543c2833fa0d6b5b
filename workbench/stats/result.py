"""The result object of :func:`workbench.stats.analyze`."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench.stats import schema
from workbench.summary import Summary


def _fmt(x, pct=False):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-" if x is None or np.isnan(x) else ("inf" if x > 0 else "-inf")
    return f"{x:+.2%}" if pct else f"{x:.4g}"


@dataclass(frozen=True)
class StatsResult:
    """Comparisons of every treatment with the control, one row per metric x variant.

    Attributes
    ----------
    table : DataFrame
        ``schema.OUTPUT_COLUMNS`` first, then the grouping columns present in the input
        (``dimension, segment, date``), then ``kind, method, difference, alternative,
        control_n, variant_n, se, statistic, dof, interval_alpha, cuped, cuped_theta,
        chance_to_be_best`` (and ``rope_probability`` when a ROPE was given).
    method, difference, alternative, correction, control : str
        The settings used (``correction`` may be None).
    alpha : float
        Nominal level; intervals are ``1 - alpha`` (adjusted per row under a correction, see
        ``interval_alpha``).
    settings : dict
        Every other option (CUPED mode, sequential tuning, priors, seed...).
    srm : SRMResult or None
        Sample-ratio-mismatch check when planned weights were given.
    """

    table: pd.DataFrame = field(repr=False)
    method: str
    alpha: float
    difference: str
    alternative: str
    correction: str | None
    control: str
    settings: dict = field(default_factory=dict)
    srm: object | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """A copy of the tidy result table."""
        return self.table.copy()

    @property
    def n_errors(self) -> int:
        """Rows that could not be computed (``error_message`` set)."""
        return int((self.table["error_message"] != "").sum())

    def _display(self) -> pd.DataFrame:
        t = self.table
        rel = self.difference == "relative"
        cols = [c for c in schema.GROUP_COLUMNS if c in t.columns] + ["metric", "variant"]
        out = t[cols].copy()
        out["control"] = [_fmt(v) for v in t["control_mean"]]
        out["variant_mean"] = [_fmt(v) for v in t["variant_mean"]]
        out["effect"] = [_fmt(v, rel) for v in t["effect"]]
        out[f"{1 - self.alpha:.0%} interval"] = [
            f"[{_fmt(lo, rel)}, {_fmt(hi, rel)}]" for lo, hi in zip(t["ci_lower"], t["ci_upper"])]
        if self.method == "bayesian":
            out["chance_to_win"] = [_fmt(v, False) if not np.isfinite(v) else f"{v:.1%}"
                                    for v in t["chance_to_win"]]
            out["risk_variant"] = [_fmt(v, rel) for v in t["risk_variant"]]
        else:
            out["p_value"] = [_fmt(v) for v in t["p_value"]]
            if self.correction:
                out["p_adjusted"] = [_fmt(v) for v in t["p_value_adjusted"]]
        if t["srm_p_value"].notna().any():
            out["srm_p"] = [_fmt(v) for v in t["srm_p_value"]]
        out["note"] = t["error_message"]
        return out

    def _header(self) -> str:
        corr = f", correction={self.correction}" if self.correction else ""
        return (f"{self.method} analysis vs {self.control!r}: {self.difference} effects, "
                f"alpha={self.alpha:g}, {self.alternative}{corr}; {len(self.table)} comparison{'' if len(self.table) == 1 else 's'}"
                + (f", {self.n_errors} not computed" if self.n_errors else ""))

    def summary(self) -> Summary:
        """Table of the comparisons (effects as % when relative): a ``str`` that also
        renders as HTML in Jupyter."""
        text = self._header() + "\n" + self._display().to_string(index=False)
        if self.srm is not None and getattr(self.srm, "message", ""):
            text += "\n" + self.srm.message
        return Summary(text, self._repr_html_())

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        srm = ""
        if self.srm is not None and getattr(self.srm, "flagged", False):
            srm = f"<p style='color:#b00020'><b>{html.escape(self.srm.message)}</b></p>"
        return (f"<div><p><b>{html.escape(self._header())}</b></p>{srm}"
                f"{self._display().to_html(index=False, escape=True)}</div>")
