"""Heterogeneity of an effect across segments: Cochran's Q (fixed-effect meta-analysis).

For the segments of one metric x variant x dimension, ``Q = sum w_i (theta_i - theta_bar)^2``
with ``w_i = 1 / se_i^2`` and ``theta_bar`` the inverse-variance mean is chi-square with
``k - 1`` degrees of freedom when every segment has the same effect; ``I^2 = (Q - dof) / Q``
is the share of the variation that is between segments.

Segments are exploration: a readout runs one test per metric x variant x dimension, so the
Q p-values are corrected across *all* of them (Holm by default, :func:`cochran_q`'s
``correction``; ``p_value_adjusted``, ``n_tests``, ``significant``), and only a block that
survives is called out. :func:`shrinkage` puts the hierarchical model's partially pooled
segment estimates beside the raw ones.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as _st

from workbench.stats import corrections

COLUMNS = ["metric", "variant", "dimension", "n_segments", "q_statistic", "dof", "p_value",
           "i_squared", "p_value_adjusted", "n_tests", "significant"]
KEYS = ["metric", "variant", "dimension"]
SHRINKAGE_COLUMNS = ["dimension", "segment", "metric", "variant", "raw_effect", "raw_ci_lower",
                     "raw_ci_upper", "shrunk_effect", "shrunk_ci_lower", "shrunk_ci_upper"]
OVERALL = "(all)"


def cochran_q(segments: pd.DataFrame | None, alpha: float = 0.05,
              correction: str | None = "holm") -> pd.DataFrame:
    """Cochran's Q test of equal effects across the segments of each dimension.

    Parameters
    ----------
    segments : DataFrame
        Per-segment results (``metric, variant, dimension, effect`` and an interval): the
        uncorrected interval ``ci_lower_unadjusted, ci_upper_unadjusted`` when present, else
        ``ci_lower, ci_upper``. Standard errors are read off it as ``(upper - lower) / (2 z)``,
        so the interval must be a two-sided normal one at level ``1 - alpha``.
    alpha : float
        Level of the intervals, and of ``significant``.
    correction : {'holm', 'bh', 'bonferroni', None}
        Across every test of the table (all metrics x variants x dimensions: one family), so
        that 36 tests do not produce a "difference" by chance.

    Returns
    -------
    DataFrame
        One row per metric x variant x dimension: :data:`COLUMNS`. Blocks with fewer than 2
        usable segments (finite effect and positive standard error) get NaN statistics and
        are not counted in ``n_tests`` (the tests with a p-value); ``p_value_adjusted`` is the
        corrected p-value (the raw one without a correction) and ``significant`` is
        ``p_value_adjusted < alpha``.
    """
    method = corrections.normalise(correction)
    if segments is None or segments.empty:
        return pd.DataFrame(columns=COLUMNS)
    z = special.ndtri(1 - alpha / 2)
    lo_col, hi_col = (("ci_lower_unadjusted", "ci_upper_unadjusted")
                      if "ci_lower_unadjusted" in segments else ("ci_lower", "ci_upper"))
    block = segments.groupby(KEYS, sort=False).ngroup().to_numpy()
    theta = segments["effect"].to_numpy(float)
    se = (segments[hi_col].to_numpy(float) - segments[lo_col].to_numpy(float)) / (2 * z)
    ok = np.isfinite(theta) & np.isfinite(se) & (se > 0)
    n_blocks = int(block.max()) + 1
    w = np.where(ok, 1 / np.where(ok, se, 1.0) ** 2, 0.0)
    wt = np.where(ok, w * theta, 0.0)
    k = np.bincount(block, weights=ok, minlength=n_blocks).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        bar = np.bincount(block, wt, n_blocks) / np.bincount(block, w, n_blocks)
        dev = np.where(ok, w * (theta - bar[block]) ** 2, 0.0)
        q = np.bincount(block, dev, n_blocks)
        dof = np.maximum(k - 1, 0)
        enough = k >= 2
        q = np.where(enough, q, np.nan)
        p = np.where(enough, _st.chi2.sf(q, np.maximum(dof, 1)), np.nan)
        i2 = np.where(enough, np.where(q > 0, np.maximum(0.0, (q - dof) / q), 0.0), np.nan)
    first = segments.groupby(KEYS, sort=False).head(1)[KEYS].reset_index(drop=True)
    adj = corrections.adjust(p, None, method) if method else p.copy()
    with np.errstate(invalid="ignore"):
        sig = np.isfinite(adj) & (adj < alpha)
    return first.assign(n_segments=k, q_statistic=q, dof=dof, p_value=p, i_squared=i2,
                        p_value_adjusted=adj, n_tests=int(np.isfinite(p).sum()),
                        significant=sig)


def survivors(heterogeneity: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """The blocks whose effect differs across segments after the correction (the rows to call
    out): ``significant`` when present, else ``p_value_adjusted`` (or ``p_value``) below
    ``alpha``."""
    if heterogeneity is None or not len(heterogeneity):
        return pd.DataFrame(columns=COLUMNS)
    if "significant" in heterogeneity:
        keep = heterogeneity["significant"].fillna(False).astype(bool)
    else:
        col = "p_value_adjusted" if "p_value_adjusted" in heterogeneity else "p_value"
        keep = heterogeneity[col].astype(float) < alpha
    return heterogeneity[keep.to_numpy()]


def shrinkage(segments: pd.DataFrame, shrunk) -> pd.DataFrame:
    """Raw per-segment effects beside the hierarchical model's shrunk ones, one row each.

    Parameters
    ----------
    segments : DataFrame
        The readout's per-segment results (``dimension, segment, metric, variant, effect``
        and the uncorrected interval ``ci_lower_unadjusted, ci_upper_unadjusted``, else
        ``ci_lower, ci_upper``).
    shrunk : DataFrame or BayesResult
        The hierarchical model's table (``workbench.stats.pymc.hierarchical``; its
        ``segment == '(all)'`` population rows are left out), or the result holding it.

    Returns
    -------
    DataFrame
        :data:`SHRINKAGE_COLUMNS`, plus ``error_message`` (the model's, for a segment it
        could not fit), for the segments both tables have, in the readout's order.
    """
    table = getattr(shrunk, "table", shrunk)
    keys = ["dimension", "segment", "metric", "variant"]
    if segments is None or table is None or not len(segments) or not len(table):
        return pd.DataFrame(columns=[*SHRINKAGE_COLUMNS, "error_message"])
    lo, hi = (("ci_lower_unadjusted", "ci_upper_unadjusted")
              if "ci_lower_unadjusted" in segments else ("ci_lower", "ci_upper"))
    raw = segments[keys + ["effect", lo, hi]].rename(
        columns={"effect": "raw_effect", lo: "raw_ci_lower", hi: "raw_ci_upper"})
    model = table[table["segment"].astype(str) != OVERALL]
    err = model["error_message"] if "error_message" in model else ""
    model = model[keys + ["effect", "ci_lower", "ci_upper"]].assign(error_message=err).rename(
        columns={"effect": "shrunk_effect", "ci_lower": "shrunk_ci_lower",
                 "ci_upper": "shrunk_ci_upper"})
    for frame in (raw, model):
        frame["segment"] = frame["segment"].astype(str)
    out = raw.merge(model, on=keys, how="inner")
    out["error_message"] = out["error_message"].fillna("").astype(str)
    return out[[*SHRINKAGE_COLUMNS, "error_message"]].reset_index(drop=True)
