"""Stratified combination of per-stratum (per-phase) effect estimates with stated weights.

Within stratum ``k`` (a phase of a staged rollout) the control mean ``c_k``, the variant mean
``t_k`` and their difference ``D_k = t_k - c_k`` are estimated with variances ``V(D_k)`` and
``V(c_k)`` (variances of the means; the arms are independent samples). With weights ``w_k``
(normalised to sum 1, e.g. each phase's share of the experiment's units, which targets the
population the experiment exposed), the stratified estimates are::

    C = sum w_k c_k,   T = sum w_k t_k,   D = T - C = sum w_k D_k
    V(D) = sum w_k^2 V(D_k)                     (absolute difference)
    R = D / C                                   (relative lift T / C - 1)
    V(R) = V(D) / C^2 + D^2 V(C) / C^4 + 2 D V(C) / C^3     (delta method)

with ``V(C) = sum w_k^2 V(c_k)`` and ``Cov(D, C) = -V(C)`` (``D = T - C``, ``T`` independent
of ``C``). The relative lift is the lift of the weighted population means (one ratio), not a
weighted mean of per-stratum lifts: it is the estimand ``E[Y(t)] / E[Y(c)] - 1`` of the
population the weights describe, and it stays defined when one stratum's control mean is
near 0. Intervals and p-values are normal (z), two-sided.

Because each stratum compares arms assigned under the same split at the same time, a split
that changes between strata (a ramp 10 % -> 25 % -> 50 %) cannot bias ``D`` or ``R`` while the
baseline drifts, which naive pooling of all units does (Simpson's paradox).

The other methods of the readout take the stratified estimate as they take a pooled one, as an
asymptotically normal ``(effect, se)`` (:func:`restate`): sequential, the always-valid
confidence sequence and mixture-SPRT p-value of :func:`workbench.stats.sequential.test` at the
units of the combined strata; Bayesian, the Gaussian model of
:mod:`workbench.stats.bayesian` (the readout's prior on the effect, flat with ``prior_sd=None``:
chance to win ``Phi(D / se)``, interval ``D +- z se``) for every metric kind, proportions
included (the per-arm Beta posteriors of a pooled readout do not combine in closed form).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from workbench.errors import StatsInputError
from workbench.stats import bayesian, sequential

DIFFERENCES = ("relative", "absolute")
METHODS = ("frequentist", "sequential", "bayesian")


@dataclass(frozen=True)
class StratifiedEstimate:
    """A stratified effect.

    Attributes
    ----------
    effect, se : float
        The stratified absolute difference or relative lift and its standard error.
    ci_lower, ci_upper : float
        Normal ``1 - alpha`` interval.
    p_value : float
        Two-sided z-test of ``effect == 0``.
    control_mean, variant_mean : float
        ``C`` and ``T``, the weighted means.
    weights : ndarray
        The normalised weights, one per stratum.
    """

    effect: float
    se: float
    ci_lower: float
    ci_upper: float
    p_value: float
    control_mean: float
    variant_mean: float
    weights: np.ndarray


def normalised(weights) -> np.ndarray:
    """Weights as floats summing to 1 (raises on negative, non-finite or all-zero)."""
    w = np.asarray(weights, float)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or (w < 0).any() \
            or w.sum() <= 0:
        raise StatsInputError(f"stratum weights must be non-negative and sum > 0, got "
                              f"{w.tolist()}")
    return w / w.sum()


def combine(control_mean, variant_mean, var_difference, var_control, weights, *,
            difference: str = "relative", alpha: float = 0.05) -> StratifiedEstimate:
    """Combine per-stratum estimates (one entry per stratum) into one stratified effect.

    Parameters
    ----------
    control_mean, variant_mean : array (strata)
        Per-stratum arm means.
    var_difference : array (strata)
        Variance of ``variant_mean - control_mean`` per stratum (the squared standard error).
    var_control : array (strata)
        Variance of ``control_mean`` per stratum (used by the relative lift only).
    weights : array (strata)
        Stated weights (normalised here). A stratum with weight 0 is ignored (even if NaN).
    difference : {'relative', 'absolute'}
    alpha : float

    Returns
    -------
    StratifiedEstimate
        NaN fields when a weighted stratum has a NaN input or the control mean is 0
        (relative).
    """
    if difference not in DIFFERENCES:
        raise StatsInputError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must be in (0, 1), got {alpha!r}")
    w = normalised(weights)
    arrays = [np.asarray(a, float) for a in (control_mean, variant_mean, var_difference,
                                              var_control)]
    if any(a.shape != w.shape for a in arrays):
        raise StatsInputError("control_mean, variant_mean, var_difference, var_control and "
                              f"weights must have one entry per stratum ({w.size})")
    used = w > 0
    c, t, vd, vc = (a[used] for a in arrays)
    w = np.where(used, w, 0.0)
    wu = w[used]
    cm, tm = float(wu @ c), float(wu @ t)
    d = tm - cm
    var_d = float(wu**2 @ vd)
    if difference == "absolute":
        effect, var = d, var_d
    else:
        var_c = float(wu**2 @ vc)
        with np.errstate(invalid="ignore", divide="ignore"):
            effect = d / cm if cm != 0 else np.nan
            var = (var_d / cm**2 + d**2 * var_c / cm**4 + 2 * d * var_c / cm**3
                   if cm != 0 else np.nan)
    se = float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else np.nan
    z = _st.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = float(2 * _st.norm.sf(abs(effect) / se)) if se > 0 else np.nan
    return StratifiedEstimate(effect=float(effect), se=se, ci_lower=float(effect - z * se),
                              ci_upper=float(effect + z * se), p_value=p,
                              control_mean=cm, variant_mean=tm, weights=w)


def restate(est: StratifiedEstimate, method: str, n_total: float, *, alpha: float = 0.05,
            alternative: str = "two-sided", tuning: float = sequential.DEFAULT_TUNING,
            prior_mean: float = 0.0, prior_sd: float | None = 0.3,
            scale: float = 1.0) -> dict:
    """The stratified estimate under the readout's ``method``: ``effect, se, ci_lower,
    ci_upper, p_value, chance_to_win, risk_control, risk_variant`` (NaN where the method has
    none).

    Parameters
    ----------
    est : StratifiedEstimate
        From :func:`combine` (its ``effect`` and ``se`` are what the methods use).
    method : {'frequentist', 'sequential', 'bayesian'}
        ``frequentist``: ``est`` as it is (z interval and p-value). ``sequential``:
        :func:`workbench.stats.sequential.test` of ``(effect, se)`` at ``n_total`` units.
        ``bayesian``: :func:`workbench.stats.bayesian.gaussian_posterior` (prior
        ``N(prior_mean, prior_sd^2)`` times ``scale``; ``prior_sd=None``: flat) and
        :func:`~workbench.stats.bayesian.gaussian_decision`; interval ``mu +- z sd``.
    n_total : float
        Units of both arms over the combined strata (sequential only).
    alpha, alternative, tuning
        As :func:`workbench.stats.analyze` (``alternative`` is not used by ``bayesian``).
    prior_mean, prior_sd, scale
        The Gaussian prior; ``scale``: 1 for a relative lift, ``|control mean|`` for an
        absolute difference (as the pooled readout scales it).
    """
    if method not in METHODS:
        raise StatsInputError(f"method must be one of {METHODS}, got {method!r}")
    nan = float("nan")
    out = {"effect": est.effect, "se": est.se, "ci_lower": est.ci_lower,
           "ci_upper": est.ci_upper, "p_value": est.p_value, "chance_to_win": nan,
           "risk_control": nan, "risk_variant": nan}
    if not (np.isfinite(est.effect) and np.isfinite(est.se) and est.se > 0):
        return out if method == "frequentist" else {k: nan for k in out} | {
            "effect": est.effect, "se": est.se}
    if method == "sequential":
        _, p, lo, hi = sequential.test(np.array([est.effect]), np.array([est.se]),
                                       np.array([float(n_total)]), alpha, alternative, tuning,
                                       nominal_alpha=alpha)
        out |= {"p_value": float(p[0]), "ci_lower": float(lo[0]), "ci_upper": float(hi[0])}
    elif method == "bayesian":
        mu, sd = bayesian.gaussian_posterior(est.effect, est.se, prior_mean, prior_sd, scale)
        mu, sd = float(mu), float(sd)
        res = bayesian.gaussian_decision(mu, sd)
        z = _st.norm.ppf(1 - alpha / 2)
        out |= {"effect": mu, "se": sd, "ci_lower": mu - z * sd, "ci_upper": mu + z * sd,
                "p_value": nan, "chance_to_win": float(res["chance_to_win"]),
                "risk_control": float(res["risk_control"]),
                "risk_variant": float(res["risk_variant"])}
    return out
