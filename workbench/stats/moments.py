"""Per-variant moments from sufficient statistics: mean and variance of the mean.

All functions take column arrays (one entry per input row) and work on every row at once.

- proportion: ``p = sum/n``, unit variance ``p(1-p)`` (the binomial variance, as a z-test).
- mean: ``mean = sum/n``, unit variance ``(sum_squares - sum^2/n)/(n-1)`` (sample variance).
- ratio: ``R = sum/den_sum`` (ratio of sums), unit variance by the delta method::

      (s_yy - 2 R s_yd + R^2 s_dd) / dbar^2

  with ``s_..`` the n-1 sample (co)variances of numerator ``y`` and denominator ``d``; this is the
  variance of the linearised unit values ``z_i = (y_i - R d_i) / dbar`` (Deng et al. 2018).
"""
from __future__ import annotations

import numpy as np


def _col(frame, name):
    if name in frame.columns:
        return frame[name].to_numpy(dtype=float)
    return np.full(len(frame), np.nan)


def centered(cross: np.ndarray, a: np.ndarray, b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Centered cross-product sum ``sum (a - abar)(b - bbar) = cross - a b / n``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return cross - a * b / n


def sample_cov(cross, a, b, n):
    """n-1 sample covariance from raw sums (NaN when n < 2)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, centered(cross, a, b, n) / (n - 1), np.nan)


def basic_moments(frame) -> dict:
    """Mean and unit variance of every row, without covariate adjustment.

    Returns a dict of arrays: ``n``, ``mean``, ``var_unit`` (variance of one unit's
    (linearised) value; the variance of the mean is ``var_unit / n``), ``den_mean`` (ratio
    metrics: mean denominator per unit, else NaN).
    """
    kind = frame["kind"].to_numpy()
    n = frame["n"].to_numpy(dtype=float)
    s = frame["sum"].to_numpy(dtype=float)
    ss = _col(frame, "sum_squares")
    is_prop = kind == "proportion"
    is_ratio = kind == "ratio"
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        var = np.where(is_prop, mean * (1.0 - mean), sample_cov(ss, s, s, n))
        den_mean = np.full(len(frame), np.nan)
        if is_ratio.any():
            d = _col(frame, "den_sum")
            dd = _col(frame, "den_sum_squares")
            yd = _col(frame, "sum_product")
            r = s / d
            dbar = d / n
            var_r = (sample_cov(ss, s, s, n) - 2 * r * sample_cov(yd, s, d, n)
                     + r**2 * sample_cov(dd, d, d, n)) / dbar**2
            mean = np.where(is_ratio, r, mean)
            var = np.where(is_ratio, var_r, var)
            den_mean = np.where(is_ratio, dbar, np.nan)
    # Rounding in sum_squares - sum^2/n can leave tiny negatives where the variance is zero;
    # an overflow (-inf) is kept, for the engine to flag the row.
    var = np.where((var < 0) & np.isfinite(var), 0.0, var)
    return {"n": n, "mean": mean, "var_unit": var, "den_mean": den_mean}
