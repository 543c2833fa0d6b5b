"""Quantile metrics (median, p90, p99, ...): standard errors from order statistics, no resampling.

Method: the "outer confidence interval" of Deng, Knoblich & Lu (2018, "Applying the delta method
in metric analytics", section 4.2). For a sample quantile ``Q = F^-1(q)`` the empirical CDF at
``Q`` has standard error ``sigma`` (``sqrt(q(1-q)/n)`` over ``n`` independent units; for event-
level quantiles, where a unit is a cluster of events, the delta-method standard error of the
ratio ``sum_i #(events_i <= Q) / sum_i #events_i``). Inverting the CDF's interval gives the
quantile's interval between the order statistics at probabilities ``q -/+ Z sigma``::

    quantile_lower = F_n^-1(q - Z sigma),   quantile_upper = F_n^-1(q + Z sigma)

computed in the engine with the quantile itself (``Z`` fixed at 1.96 here, see :data:`Z`). The
stats engine backs out the standard error ``se = (quantile_upper - quantile_lower) / (2 Z)`` and
compares arms like any other estimate: ``se^2 = se_t^2 + se_c^2`` for the absolute difference,
the delta method ``se_t^2/Q_c^2 + Q_t^2 se_c^2/Q_c^4`` for the relative lift, a z-test
(``test = "quantile"``). Why this method and not the binomial order-statistic interval alone:
the latter is exact for one arm but does not give a difference of two quantiles, nor handle
clustered events; backing out a standard error does both at the cost of three quantiles per
arm, with no density estimate (kernel bandwidths) and no bootstrap.

CUPED does not apply to quantile rows (they are compared unadjusted). The Bayesian method uses a
Gaussian approximation with the same standard error (``N(Q_t - Q_c, se^2)`` as likelihood).

Everything here works on numpy arrays; the engine side (Ibis) is
:mod:`workbench.metrics.quantile`.
"""
from __future__ import annotations

import numpy as np

# The band of the empirical CDF whose inverse gives quantile_lower / quantile_upper. The backed-out
# standard error does not depend on it to first order; 1.96 keeps the order statistics close to
# those of a 95 % interval, where the normal approximation of the CDF was checked (README).
Z = 1.959963984540054
COLUMNS = ("quantile_level", "quantile", "quantile_lower", "quantile_upper")


def unit_cdf_se(q, n):
    """Standard error of the empirical CDF at the ``q`` quantile over ``n`` independent units."""
    q, n = np.asarray(q, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(q * (1.0 - q) / n)


def cluster_cdf_se(n, y_sum, y_squares, d_sum, d_squares, yd_sum):
    """Delta-method standard error of ``R = sum y / sum d`` over ``n`` units (clusters), where
    ``y_i`` counts the events of unit ``i`` at or below the quantile and ``d_i`` all its events:
    ``var R = (s_yy - 2 R s_yd + R^2 s_dd) / (n dbar^2)`` with n-1 sample (co)variances."""
    from workbench.stats.moments import sample_cov

    n = np.asarray(n, float)
    args = [np.asarray(a, float) for a in (y_sum, y_squares, d_sum, d_squares, yd_sum)]
    s, ss, d, dd, yd = args
    with np.errstate(invalid="ignore", divide="ignore"):
        r = s / d
        var = (sample_cov(ss, s, s, n) - 2 * r * sample_cov(yd, s, d, n)
               + r**2 * sample_cov(dd, d, d, n)) / (n * (d / n) ** 2)
    return np.sqrt(np.maximum(var, 0.0))


def probabilities(q, cdf_se, z: float = Z):
    """The probabilities ``q -/+ z cdf_se`` of the outer interval's order statistics; NaN
    where they leave ``[0, 1]`` (too few units for that quantile: the row gets an error)."""
    q, s = np.asarray(q, float), np.asarray(cdf_se, float)
    lo, hi = q - z * s, q + z * s
    ok = (lo >= 0) & (hi <= 1) & np.isfinite(lo) & np.isfinite(hi)
    return np.where(ok, lo, np.nan), np.where(ok, hi, np.nan)


def _row(values, q, cdf_se, n, z):
    lo, hi = probabilities(q, cdf_se, z)
    out = {"n": int(n), "quantile_level": float(q), "quantile": np.nan,
           "quantile_lower": np.nan, "quantile_upper": np.nan}
    if values.size:
        out["quantile"] = float(np.quantile(values, q))
    if np.isfinite(lo) and values.size:
        out["quantile_lower"], out["quantile_upper"] = np.quantile(values, [float(lo), float(hi)])
    return out


def unit_stats(values, q: float, z: float = Z) -> dict:
    """The stats-engine input of a unit-level quantile from raw unit values (numpy; the engine
    computes the same with Ibis): ``n, quantile_level, quantile, quantile_lower,
    quantile_upper`` (linear interpolation, numpy's default and DuckDB's ``quantile_cont``)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return _row(v, q, unit_cdf_se(q, v.size), v.size, z)


def cluster_stats(values, clusters, q: float, z: float = Z, n_units: int | None = None) -> dict:
    """The stats-engine input of an event-level quantile: ``values`` of events, ``clusters`` the
    unit of each event; ``n`` is the number of units (``n_units``, default: those with events).
    """
    v = np.asarray(values, float)
    c = np.asarray(clusters)
    keep = np.isfinite(v)
    v, c = v[keep], c[keep]
    _, idx = np.unique(c, return_inverse=True)
    n = int(idx.max()) + 1 if idx.size else 0
    n = n if n_units is None else int(n_units)
    if v.size == 0:
        return _row(v, q, np.nan, n, z)
    qv = np.quantile(v, q)
    y = np.bincount(idx, weights=(v <= qv).astype(float))
    d = np.bincount(idx).astype(float)
    se = cluster_cdf_se(n, y.sum(), (y * y).sum(), d.sum(), (d * d).sum(), (y * d).sum())
    return _row(v, q, se, n, z)


def moments(frame, z: float = Z) -> dict:
    """Point estimate and unit variance of quantile rows, in the shape of
    :func:`workbench.stats.moments.basic_moments` (``var_unit = n se^2``, so that the variance of
    the estimate is ``var_unit / n = se^2``).

    Returns ``mean`` (the sample quantile), ``var_unit`` and ``bad`` (rows whose quantile
    columns are missing: too few units for the interval's order statistics), arrays over all
    rows (NaN on rows of other kinds).
    """
    def col(name):
        if name in frame.columns:
            return frame[name].to_numpy(dtype=float)
        return np.full(len(frame), np.nan)

    n = frame["n"].to_numpy(dtype=float)
    est, lo, hi = col("quantile"), col("quantile_lower"), col("quantile_upper")
    se = (hi - lo) / (2.0 * z)
    bad = ~(np.isfinite(est) & np.isfinite(se))
    return {"mean": est, "var_unit": n * se**2, "bad": bad}
