"""Always-valid inference: Gaussian-mixture confidence sequences and mixture-SPRT p-values.

The effect estimate ``e`` after ``N = n_c + n_t`` units has standard error ``se``; write
``s^2 = N se^2`` for the per-unit variance. The normal-mixture boundary of Howard, Ramdas,
McAuliffe and Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
eq. 14), as used by GrowthBook and Eppo, gives the half-width::

    h = s * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( sqrt(N rho^2 + 1) / alpha ) )

which covers the true effect at every N simultaneously with probability >= 1 - alpha, so
results may be looked at any number of times. The mixing parameter ``rho`` makes the boundary
tightest at ``N = tuning`` (the expected sample size)::

    rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / tuning

The always-valid p-value is the reciprocal of the mixture martingale (the mixture SPRT),
``p = min(1, sqrt(N rho^2 + 1) exp(-N^2 rho^2 e^2 / (2 s^2 (N rho^2 + 1))))``, so that
``p < alpha`` exactly when the sequence at level ``alpha`` excludes 0. ``rho`` is tuned once at
the nominal alpha. One-sided alternatives use the same two-sided boundary on one side, which
is conservative (the p-value is 1 when the estimate points the other way).
"""
from __future__ import annotations

import numpy as np

DEFAULT_TUNING = 5000


def rho_squared(alpha: float, tuning: float) -> float:
    """Mixing variance tuned to make the boundary tightest at ``tuning`` units."""
    la = -2.0 * np.log(alpha)
    return (la + np.log(la + 1.0)) / tuning


def halfwidth(se, n_total, alpha, rho2):
    """Half-width of the confidence sequence at level ``1 - alpha`` (alpha may be an array)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = n_total * se**2
        nr = n_total * rho2
        return np.sqrt(s2 * 2.0 * (nr + 1.0) / (n_total**2 * rho2)
                       * np.log(np.sqrt(nr + 1.0) / np.asarray(alpha)))


def p_value(effect, se, n_total, rho2):
    """Always-valid (two-sided) p-value of the mixture SPRT."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s2 = n_total * se**2
        nr = n_total * rho2
        log_p = 0.5 * np.log(nr + 1.0) - n_total**2 * rho2 * effect**2 / (2.0 * s2 * (nr + 1.0))
        return np.minimum(1.0, np.exp(log_p))


def test(effect, se, n_total, alpha, alternative="two-sided", tuning=DEFAULT_TUNING,
         nominal_alpha=None):
    """Statistic, always-valid p-value and confidence sequence.

    ``alpha`` may be an array (adjusted levels); ``rho`` is tuned at ``nominal_alpha``
    (default: ``alpha`` when scalar).
    """
    if nominal_alpha is None:
        nominal_alpha = float(np.max(alpha))
    rho2 = rho_squared(nominal_alpha, tuning)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = effect / se
    p = p_value(effect, se, n_total, rho2)
    h = halfwidth(se, n_total, alpha, rho2)
    lo, hi = effect - h, effect + h
    if alternative == "greater":
        p = np.where(effect > 0, p, 1.0)
        hi = np.full_like(lo, np.inf)
    elif alternative == "less":
        p = np.where(effect < 0, p, 1.0)
        lo = np.full_like(hi, -np.inf)
    return stat, p, lo, hi
