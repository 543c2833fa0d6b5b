"""Heterogeneity of an effect across segments: Cochran's Q (fixed-effect meta-analysis).

For the segments of one metric x variant x dimension, ``Q = sum w_i (theta_i - theta_bar)^2``
with ``w_i = 1 / se_i^2`` and ``theta_bar`` the inverse-variance mean is chi-square with
``k - 1`` degrees of freedom when every segment has the same effect; ``I^2 = (Q - dof) / Q``
is the share of the variation that is between segments.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as _st

COLUMNS = ["metric", "variant", "dimension", "n_segments", "q_statistic", "dof", "p_value",
           "i_squared"]
KEYS = ["metric", "variant", "dimension"]


def cochran_q(segments: pd.DataFrame | None, alpha: float = 0.05) -> pd.DataFrame:
    """Cochran's Q test of equal effects across the segments of each dimension.

    Parameters
    ----------
    segments : DataFrame
        Per-segment results (``metric, variant, dimension, effect`` and an interval): the
        uncorrected interval ``ci_lower_unadjusted, ci_upper_unadjusted`` when present, else
        ``ci_lower, ci_upper``. Standard errors are read off it as ``(upper - lower) / (2 z)``,
        so the interval must be a two-sided normal one at level ``1 - alpha``.
    alpha : float

    Returns
    -------
    DataFrame
        One row per metric x variant x dimension: :data:`COLUMNS`. Blocks with fewer than 2
        usable segments (finite effect and positive standard error) get NaN statistics.
    """
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
    return first.assign(n_segments=k, q_statistic=q, dof=dof, p_value=p, i_squared=i2)
