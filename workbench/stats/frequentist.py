"""Fixed-horizon tests: Welch t-test and z-test on the difference of two means.

Absolute effect ``d = m_t - m_c`` with ``se^2 = v_t + v_c`` (``v`` = variance of a mean).
Relative effect ``l = m_t / m_c - 1`` by the delta method::

    se^2 = v_t / m_c^2 + m_t^2 v_c / m_c^4

Mean metrics use Student's t with Welch-Satterthwaite degrees of freedom
``(v_t + v_c)^2 / (v_t^2/(n_t-1) + v_c^2/(n_c-1))``; proportions and ratios (delta method) use
the normal distribution (``dof = inf``).
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

ALTERNATIVES = ("two-sided", "greater", "less")


def effect_and_se(m_t, v_t, m_c, v_c, difference: str):
    """Effect estimate and its standard error (absolute, or relative by the delta method)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if difference == "absolute":
            return m_t - m_c, np.sqrt(v_t + v_c)
        return m_t / m_c - 1.0, np.sqrt(v_t / m_c**2 + m_t**2 * v_c / m_c**4)


def welch_dof(v_t, n_t, v_c, n_c, finite: np.ndarray) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom where ``finite``, else inf (normal)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = (v_t + v_c) ** 2 / (v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))
    return np.where(finite, dof, np.inf)


def sf(x, dof):
    """Survival function of t(dof), normal where dof is infinite."""
    x, dof = np.broadcast_arrays(np.asarray(x, float), np.asarray(dof, float))
    out = special.ndtr(-x)
    fin = np.isfinite(dof)
    if fin.any():
        out = np.where(fin, stats.t.sf(x, np.where(fin, dof, 1.0)), out)
    return out


def ppf(q, dof):
    """Quantile of t(dof), normal where dof is infinite."""
    q, dof = np.broadcast_arrays(np.asarray(q, float), np.asarray(dof, float))
    out = special.ndtri(q)
    fin = np.isfinite(dof)
    if fin.any():
        out = np.where(fin, stats.t.ppf(q, np.where(fin, dof, 1.0)), out)
    return out


def test(effect, se, dof, alpha, alternative="two-sided"):
    """Statistic, p-value and confidence interval at level ``1 - alpha`` (alpha may be an array).

    Returns
    -------
    statistic, p_value, ci_lower, ci_upper : ndarray
        One-sided alternatives give a half-open interval (``inf`` on the open side).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = effect / se
        if alternative == "two-sided":
            p = 2.0 * sf(np.abs(stat), dof)
            h = ppf(1.0 - np.asarray(alpha) / 2.0, dof) * se
            lo, hi = effect - h, effect + h
        elif alternative == "greater":
            p = sf(stat, dof)
            lo, hi = effect - ppf(1.0 - np.asarray(alpha), dof) * se, np.full_like(stat, np.inf)
        else:
            p = sf(-stat, dof)
            lo, hi = np.full_like(stat, -np.inf), effect + ppf(1.0 - np.asarray(alpha), dof) * se
    p = np.minimum(p, 1.0)
    return stat, p, lo, hi
