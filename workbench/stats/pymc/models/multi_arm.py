"""Multi-arm conjugate models written as PyMC programs: Beta-Binomial and Gaussian."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import StatsInputError
from workbench.stats.pymc import sampling
from workbench.stats.pymc.models.inputs import arm_blocks, arm_problems, variance
from workbench.stats.pymc.priors import BetaPrior, NormalPrior
from workbench.stats.pymc.result import BayesResult, Fits, effect_stats, empty_row, posterior_draws

__all__ = ["beta_binomial", "gaussian"]

_BETA = BetaPrior()  # default (frozen: one serves every call)
_NORMAL = NormalPrior()  # default (frozen: one serves every call)


def fit(model_name, stats, control, metrics, difference, alpha, prior, cfg, kinds, need, prep,
        extract, *, prior_only=False, prior_draws=500):
    """Fit ``model_name`` to every metric x grouping block (or, ``prior_only``, return the prior
    predictive draws of the first block)."""
    group_cols, blocks = arm_blocks(stats, control, metrics, difference, alpha, kinds, need,
                                    model_name, cfg.random_seed)
    fits = Fits(cfg)
    for key, base, block, seed in blocks:
        names = list(block["variant"])
        data, bad, block_error = prep(block, prior, difference)
        meta = {k: data.pop(k) for k in [k for k in data if k.startswith("_")]}
        if prior_only:
            return sampling.prior_draws(model_name, len(names), data, prior_draws, seed, "arm",
                                        names)
        if block_error:
            fits.rows += [empty_row({**base, "variant": v}, block_error) for v in names[1:]]
            continue
        idata, diag_cols = fits.sample(key, model_name, data, seed, "arm", names)
        arms = extract(idata, meta)  # (draws, arms)
        for j, v in enumerate(names[1:], start=1):
            if bad[j]:
                fits.rows.append(empty_row({**base, "variant": v}, bad[j]))
                continue
            fits.rows.append({**base, "variant": v,
                              **effect_stats(arms[:, 0], arms[:, j], difference, alpha),
                              **diag_cols})
    return fits.finish(model_name, group_cols, difference, alpha, prior)


def prep_beta(block: pd.DataFrame, prior: BetaPrior, difference: str):
    """Model data, per-arm messages and a block-wide message of a Beta-Binomial block."""
    n, s = block["n"].to_numpy(), block["sum"].to_numpy()
    over = np.flatnonzero((s < 0) | (s > n) | (np.round(s) != s) | (np.round(n) != n))
    if over.size:
        r = block.iloc[over[0]]
        raise StatsInputError(f"proportion metric {r['metric']!r}, variant {r['variant']!r}: "
                              f"'sum' must be an integer count in [0, n], got sum={r['sum']}, "
                              f"n={r['n']}")
    bad = ["" for _ in range(len(block))]
    for j in range(1, len(block)):
        if n[j] == 0:
            bad[j] = messages.NO_UNITS_VARIANT
    error = ""
    if n[0] == 0:
        error = messages.NO_UNITS_CONTROL
    elif difference == "relative" and s[0] == 0 and prior.alpha <= 1:
        # With no control conversion the lift's posterior has no mean.
        error = messages.ZERO_BASELINE
    data = {"successes": s.astype("int64"), "trials": n.astype("int64"),
            "prior_alpha": float(prior.alpha), "prior_beta": float(prior.beta)}
    return data, bad, error


def prep_gauss(block: pd.DataFrame, prior: NormalPrior, difference: str):
    """Model data (standardised), per-arm messages and a block-wide message of a Gaussian block."""
    n, s = block["n"].to_numpy(), block["sum"].to_numpy()
    var = variance(block)
    bad = arm_problems(n, (n < 2, messages.TOO_FEW_UNITS), (var == 0, messages.ZERO_VARIANCE))
    error = bad[0]
    ok = np.array([not b for b in bad])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ok, s / n, 0.0)
        se = np.where(ok, np.sqrt(var / n), 1.0)
    if not error and difference == "relative" and mean[0] == 0:
        error = messages.ZERO_BASELINE
    total_n = n[ok].sum()
    pooled_mean = float(s[ok].sum() / total_n) if total_n > 0 else 0.0
    pooled_sd = (float(np.sqrt(np.sum((n[ok] - 1) * var[ok]) / max(total_n - ok.sum(), 1)))
                 if total_n else 1.0)
    m0 = pooled_mean if prior.mean is None else float(prior.mean)
    s0 = 10.0 * pooled_sd if prior.sd is None else float(prior.sd)
    # Sample in standardised units (centre: pooled mean, unit: the smallest standard error), so the
    # sampler sees unit-scale posteriors whatever the metric's units.
    unit = float(np.min(se[ok])) if ok.any() and np.min(se[ok]) > 0 else 1.0
    unit = unit if unit > 0 else 1.0
    data = {"mean": (mean - pooled_mean) / unit, "se": np.where(ok, se / unit, 1e6),
            "prior_mean": (m0 - pooled_mean) / unit, "prior_sd": max(s0, 1e-300) / unit}
    # How to map back to the metric's units (popped by fit, given to _extract_gauss).
    data["_centre"], data["_unit"] = pooled_mean, unit
    return data, bad, error


def _extract_beta(idata, meta):
    return posterior_draws(idata, "p")


def _extract_gauss(idata, meta):
    # Store the arm means in the metric's units next to the standardised parameter.
    idata.posterior["arm_mean"] = meta["_centre"] + meta["_unit"] * idata.posterior["mu"]
    return posterior_draws(idata, "arm_mean")


def beta_binomial(stats: pd.DataFrame, *, control: str = "control", metrics=None,
                  difference: str = "relative", alpha: float = 0.05, prior: BetaPrior = _BETA,
                  draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int | None = None,
                  sampler: str = "nutpie", progressbar: bool = True, target_accept: float = 0.8,
                  max_r_hat: float = 1.01, min_ess: float = 400.0) -> BayesResult:
    """Multi-arm Beta-Binomial model of proportion metrics, sampled with MCMC.

    ``p_k ~ Beta(prior.alpha, prior.beta)``, ``sum_k ~ Binomial(n_k, p_k)`` per arm, for every
    proportion metric (and every ``dimension, segment, date`` block) of ``stats``. Agrees with the
    closed form Beta(alpha + sum, beta + n - sum) up to Monte Carlo error.

    Parameters
    ----------
    stats : DataFrame
        Sufficient statistics, columns of ``workbench.stats.schema.INPUT_COLUMNS``.
    control : str
        Control variant.
    metrics : str or list of str, optional
        Metrics to analyse; default every proportion metric.
    difference : {'relative', 'absolute'}
        Effect reported: lift ``p_t / p_c - 1`` or ``p_t - p_c``.
    alpha : float
        Credible intervals cover ``1 - alpha``.
    prior : BetaPrior
        Default Beta(1, 1).
    draws, tune, chains, random_seed, sampler, progressbar, target_accept
        Sampling settings; ``sampler='nutpie'`` (default, falls back to PyMC's NUTS if it fails)
        or ``'pymc'``.
    max_r_hat, min_ess : float
        Diagnostic thresholds; fits beyond them get ``messages.NOT_CONVERGED`` in
        ``error_message``, ``diagnostics_ok`` False and a
        :class:`~workbench.errors.ConvergenceWarning`.

    Returns
    -------
    BayesResult
    """
    cfg = sampling.settings(draws, tune, chains, random_seed, sampler, progressbar, target_accept,
                            max_r_hat, min_ess)
    return fit("beta_binomial", stats, control, metrics, difference, alpha, prior, cfg,
               ("proportion",), (), prep_beta, _extract_beta)


def gaussian(stats: pd.DataFrame, *, control: str = "control", metrics=None,
             difference: str = "relative", alpha: float = 0.05, prior: NormalPrior = _NORMAL,
             draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int | None = None,
             sampler: str = "nutpie", progressbar: bool = True, target_accept: float = 0.8,
             max_r_hat: float = 1.01, min_ess: float = 400.0) -> BayesResult:
    """Multi-arm Gaussian model of mean metrics, sampled with MCMC.

    ``mu_k ~ Normal(prior.mean, prior.sd)``, observed mean ``ybar_k ~ Normal(mu_k, s_k / sqrt(n_k))``
    (sample sd ``s_k`` plugged in, as the closed-form engines do). Agrees with the conjugate normal
    posterior up to Monte Carlo error. The posterior of each arm's mean is stored in
    ``idata.posterior['arm_mean']`` (``mu`` is in standardised units).

    Parameters are those of :func:`beta_binomial`, with ``prior`` a :class:`NormalPrior` and
    ``metrics`` defaulting to every mean metric (``sum_squares`` required).
    """
    cfg = sampling.settings(draws, tune, chains, random_seed, sampler, progressbar, target_accept,
                            max_r_hat, min_ess)
    return fit("gaussian", stats, control, metrics, difference, alpha, prior, cfg,
               ("mean",), ("sum_squares",), prep_gauss, _extract_gauss)
