"""Sample ratio mismatch: THE chi-square test of the observed split against the planned weights.

Flagged at ``p < SRM_THRESHOLD`` (0.001, as GrowthBook and Eppo). A planned variant that
received no units is a mismatch whatever the test says (p-value 0), and units in a variant that
was not planned (weight 0) too: neither case can pass vacuously. :func:`p_values` is the one
implementation (vectorised over groups); :func:`srm` wraps it for one split.
"""
from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import StatsInputError
from workbench.summary import Summary

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SRMResult:
    """Result of an SRM check.

    Attributes
    ----------
    p_value : float
        Chi-square p-value (0 when a planned variant is empty or an unplanned one has units).
    statistic : float
        Pearson chi-square statistic.
    flagged : bool
        ``p_value < threshold``.
    threshold : float
    message : str
        Empty when not flagged, else a sentence from :mod:`workbench.messages`.
    table : DataFrame
        ``variant, units, expected, planned_weight, observed_share``.
    """

    p_value: float
    statistic: float
    flagged: bool
    threshold: float
    message: str
    table: pd.DataFrame = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """Per-variant table with the p-value repeated on every row."""
        out = self.table.copy()
        out["srm_p_value"] = self.p_value
        out["flagged"] = self.flagged
        return out

    def summary(self) -> Summary:
        """One-paragraph verdict plus the per-variant table."""
        head = (f"SRM chi-square = {self.statistic:.3f}, p = {self.p_value:.3g} "
                f"({'MISMATCH' if self.flagged else 'ok'} at p < {self.threshold:g})")
        if self.message:
            head += f"\n{self.message}"
        colour = "#b00020" if self.flagged else "#1b5e20"
        rich = (f"<div><b style='color:{colour}'>SRM p = {self.p_value:.3g}</b> "
                f"{html.escape(self.message)}{self.table.to_html(index=False)}</div>")
        return Summary(head + "\n" + self.table.to_string(index=False), rich)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def p_values(observed, weights) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square statistic and p-value of each row of ``observed`` against ``weights``.

    Parameters
    ----------
    observed : array (groups x variants)
        Units per variant, one row per group (a 1-D array is one group).
    weights : array (variants)
        Planned weights, non-negative, summing to more than 0 (normalised here).

    Returns
    -------
    statistic, p_value : arrays (groups)
        NaN for a group without units or with fewer than 2 planned variants; p 0 (and the
        statistic infinite for units in an unplanned variant) for the mismatches no test can
        pass.
    """
    obs = np.atleast_2d(np.asarray(observed, float))
    w = np.asarray(weights, float)
    w = w / w.sum()
    planned = w > 0
    total = obs.sum(axis=1)
    expected = total[:, None] * w[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = ((obs[:, planned] - expected[:, planned]) ** 2
                / expected[:, planned]).sum(axis=1)
    dof = int(planned.sum()) - 1
    from scipy import stats as _st  # here: the dashboards import this module for its names

    p = _st.chi2.sf(stat, dof) if dof >= 1 else np.full(len(obs), np.nan)
    unplanned = ((~planned)[None, :] & (obs > 0)).any(axis=1)
    empty = (planned[None, :] & (obs == 0)).any(axis=1) | unplanned
    stat = np.where(unplanned, np.inf, stat)
    p = np.where(empty, 0.0, p)
    none = total <= 0
    return np.where(none, np.nan, stat), np.where(none, np.nan, p)


def srm(counts, weights=None, threshold: float = SRM_THRESHOLD) -> SRMResult:
    """Chi-square test of units per variant against planned weights.

    Parameters
    ----------
    counts : dict or Series
        Units per variant.
    weights : dict or Series, optional
        Planned weights per variant (normalised; default equal). Variants planned but absent
        from ``counts`` count as 0 units.
    threshold : float
        Flag when ``p < threshold`` (default :data:`SRM_THRESHOLD`).

    Returns
    -------
    SRMResult
    """
    if not isinstance(counts, (Mapping, pd.Series)):
        raise StatsInputError(f"counts must map variant names to units, got {type(counts).__name__}")
    counts = pd.Series(counts, dtype=float)
    if weights is None:
        weights = pd.Series(1.0, index=counts.index)
    if not isinstance(weights, (Mapping, pd.Series)):
        raise StatsInputError("planned weights must map variant names to weights (a dict), "
                              f"got {type(weights).__name__}")
    weights = pd.Series(weights, dtype=float)
    if not set(map(str, weights.index)) & set(map(str, counts.index)):
        raise StatsInputError(f"no planned variant {list(weights.index)} occurs in the counts "
                              f"{list(counts.index)}")
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise StatsInputError(f"planned weights must be non-negative and sum > 0: {dict(weights)}")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise StatsInputError(f"unit counts must be non-negative numbers: {dict(counts)}")
    names = list(dict.fromkeys(list(weights.index) + list(counts.index)))
    obs = counts.reindex(names).fillna(0.0).to_numpy()
    w = weights.reindex(names).fillna(0.0).to_numpy()
    w = w / w.sum()
    stat, p = (float(x[0]) for x in p_values(obs, w))
    total = obs.sum()
    message = ""
    if total > 0 and (((w > 0) & (obs == 0)) | ((w == 0) & (obs > 0))).any():
        message = messages.SRM_EMPTY_VARIANT
    flagged = bool(np.isfinite(p) and p < threshold)
    if flagged and not message:
        message = messages.SRM_DETECTED.format(threshold=threshold)
    table = pd.DataFrame({"variant": names, "units": obs, "expected": total * w,
                          "planned_weight": w,
                          "observed_share": obs / total if total > 0 else np.nan})
    return SRMResult(p_value=p, statistic=stat, flagged=flagged, threshold=threshold,
                     message=message, table=table)
