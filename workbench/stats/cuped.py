"""CUPED / regression adjustment with a pre-period covariate, on sufficient statistics.

For a mean (or proportion) metric ``y`` with pre-period covariate ``x``::

    theta   = sum_v C_xy(v) / sum_v C_xx(v)          (pooled within-variant slope)
    y_adj   = ybar - theta (xbar - mu_x)             mu_x = pooled mean of x over all variants
    var_adj = s_yy - 2 theta s_xy + theta^2 s_xx     (per unit; var of the mean = var_adj / n)

where ``C`` are centered cross-product sums within a variant. ``theta`` is estimated once per
metric (and per grouping block) pooling all variants, so the absolute effect equals the treatment
coefficient of the ANCOVA regression ``y ~ 1 + variant + x`` (Deng et al. 2013, "CUPED").

One row's problem never changes another row's method: the slope and the centre pool only the rows
that have finite covariate columns *and* finite (co)variances (no overflow); a row without them is
left unadjusted (``used`` False) and the engine compares it with the control unadjusted, while the
other rows of its block stay adjusted (their slope is the regression on their own arms).

Ratio metrics ``R = sum y / sum d`` use the pre-period ratio ``R_x = sum x / sum w`` and the
linearised unit values ``z = (y - R d)/dbar`` and ``u = (x - R_x w)/wbar`` (delta method), so
``var(z)``, ``var(u)`` and ``cov(z, u)`` come from the cross products of the schema; then the same
formulas with ``z`` for ``y`` and ``u`` for ``x`` (Deng, Knoblich, Lu 2018).
"""
from __future__ import annotations

import numpy as np

from workbench.stats import schema
from workbench.stats.moments import _col, centered, sample_cov


def available(frame, block: np.ndarray | None = None, n_blocks: int | None = None) -> np.ndarray:
    """Per row: True when the row has finite covariate columns (``block`` and ``n_blocks`` are
    accepted for compatibility; availability is per row, see the module docstring)."""
    kind = frame["kind"].to_numpy()
    if not all(c in frame.columns for c in schema.CUPED_INPUT):
        return np.zeros(len(frame), bool)
    ok = np.all([np.isfinite(_col(frame, c)) for c in schema.CUPED_INPUT], axis=0)
    ratio_ok = np.all([np.isfinite(_col(frame, c)) for c in schema.RATIO_CUPED_INPUT], axis=0)
    return ok & np.where(kind == "ratio", ratio_ok, True)


def adjust(frame, base: dict, block: np.ndarray, n_blocks: int, use: np.ndarray) -> dict:
    """CUPED-adjusted means and unit variances for rows with ``use`` True.

    Returns a dict with ``mean``, ``var_unit``, ``theta`` (NaN where not adjusted) and ``used``
    (bool; False also where the pooled covariate has zero variance, and for a row whose own
    (co)variances or adjusted moments are not finite: such a row is not pooled either).
    """
    kind = frame["kind"].to_numpy()
    n = base["n"]
    y = frame["sum"].to_numpy(dtype=float)
    yy = _col(frame, "sum_squares")
    is_prop = kind == "proportion"
    # proportions may omit sum_squares: y^2 = y
    yy = np.where(is_prop & ~np.isfinite(yy), y, yy)
    x = _col(frame, "pre_sum")
    xx = _col(frame, "pre_sum_squares")
    xy = _col(frame, "pre_sum_product")
    is_ratio = kind == "ratio"
    with np.errstate(invalid="ignore", divide="ignore"):
        s_yy = sample_cov(yy, y, y, n)
        s_xx = sample_cov(xx, x, x, n)
        s_xy = sample_cov(xy, x, y, n)
        # the covariate's "mean" (ratio: pre-period ratio) and pooled centre per block
        cov_mean = x / n
        if is_ratio.any():
            d = _col(frame, "den_sum")
            dd = _col(frame, "den_sum_squares")
            yd = _col(frame, "sum_product")
            w = _col(frame, "pre_den_sum")
            ww = _col(frame, "pre_den_sum_squares")
            xw = _col(frame, "pre_den_sum_product")
            dx = _col(frame, "den_pre_sum_product")
            yw = _col(frame, "sum_pre_den_product")
            dw = _col(frame, "den_pre_den_sum_product")
            r = y / d
            rx = x / w
            dbar = d / n
            wbar = w / n
            s_zz = (s_yy - 2 * r * sample_cov(yd, y, d, n) + r**2 * sample_cov(dd, d, d, n)) / dbar**2
            s_uu = (s_xx - 2 * rx * sample_cov(xw, x, w, n) + rx**2 * sample_cov(ww, w, w, n)) / wbar**2
            s_zu = (s_xy - r * sample_cov(dx, d, x, n) - rx * sample_cov(yw, y, w, n)
                    + r * rx * sample_cov(dw, d, w, n)) / (dbar * wbar)
            s_yy = np.where(is_ratio, s_zz, s_yy)
            s_xx = np.where(is_ratio, s_uu, s_xx)
            s_xy = np.where(is_ratio, s_zu, s_xy)
            cov_mean = np.where(is_ratio, rx, cov_mean)
        # a row whose (co)variances overflow (or are NaN) is neither pooled nor adjusted
        use = use & np.isfinite(s_yy) & np.isfinite(s_xx) & np.isfinite(s_xy) \
            & np.isfinite(cov_mean)
        pooled_num = np.bincount(block, weights=np.where(use, x, 0.0), minlength=n_blocks)
        pooled_den = np.bincount(block, weights=np.where(use, n, 0.0), minlength=n_blocks)
        if is_ratio.any():
            pooled_den = np.where(
                np.bincount(block, weights=is_ratio, minlength=n_blocks) > 0,
                np.bincount(block, weights=np.where(use & is_ratio, w, 0.0), minlength=n_blocks),
                pooled_den)
        mu = pooled_num / pooled_den
        dof = np.where(use & (n >= 2), n - 1, 0.0)
        cxy = np.bincount(block, weights=np.where(dof > 0, s_xy * dof, 0.0), minlength=n_blocks)
        cxx = np.bincount(block, weights=np.where(dof > 0, s_xx * dof, 0.0), minlength=n_blocks)
        theta_b = np.where(cxx > 0, cxy / cxx, np.nan)
        theta = theta_b[block]
        adj_mean = base["mean"] - theta * (cov_mean - mu[block])
        adj_var = s_yy - 2 * theta * s_xy + theta**2 * s_xx
        used = use & np.isfinite(theta) & np.isfinite(adj_mean) & np.isfinite(adj_var)
        mean = np.where(used, adj_mean, base["mean"])
        var = np.where(used, adj_var, base["var_unit"])
    # rounding can leave tiny negatives where the variance is zero (an overflow stays -inf)
    var = np.where((var < 0) & np.isfinite(var), 0.0, var)
    return {"mean": mean, "var_unit": var, "theta": np.where(used, theta, np.nan), "used": used}


__all__ = ["adjust", "available", "centered"]
