"""Hurdle model of revenue per user: conversion x log-normal order value, per variant."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import StatsInputError
from workbench.stats.pymc import sampling
from workbench.stats.pymc.models.inputs import arm_blocks, arm_problems
from workbench.stats.pymc.priors import HurdlePriors
from workbench.stats.pymc.result import BayesResult, Fits, effect_stats, empty_row, posterior_draws

__all__ = ["revenue_hurdle"]

_HURDLE = HurdlePriors()  # default (frozen: one serves every call)

#: Sufficient statistics of log revenue over converting users (mean metrics, ``log_stats: true``).
LOG_COLUMNS = ("positive_n", "log_sum", "log_sum_squares")


def revenue_hurdle(stats: pd.DataFrame, *, control: str = "control", metrics=None,
                   difference: str = "relative", alpha: float = 0.05,
                   priors: HurdlePriors = _HURDLE, draws: int = 1000, tune: int = 1000,
                   chains: int = 4, random_seed: int | None = None, sampler: str = "nutpie",
                   progressbar: bool = True, target_accept: float = 0.8, max_r_hat: float = 1.01,
                   min_ess: float = 400.0) -> BayesResult:
    """Hurdle model of revenue per user: conversion x log-normal order value, per variant.

    Per arm ``k``: ``p_k ~ Beta``, ``positive_n_k ~ Binomial(n_k, p_k)``; the log revenue of a
    converting user ``~ Normal(mu_k, sigma_k)``, whose likelihood is written exactly in terms of
    ``positive_n, log_sum, log_sum_squares``. Revenue per user is ``p_k * exp(mu_k + sigma_k^2/2)``;
    the table reports its effect, chance to win and expected losses (``control_mean`` and
    ``variant_mean`` are the model's posterior means of revenue per user).

    Parameters are those of :func:`~workbench.stats.pymc.beta_binomial`, with ``priors`` a
    :class:`HurdlePriors`; ``stats`` needs columns ``positive_n, log_sum, log_sum_squares`` (mean
    metrics with ``log_stats: true``); ``metrics`` defaults to every mean metric that has them.
    """
    cfg = sampling.settings(draws, tune, chains, random_seed, sampler, progressbar, target_accept,
                            max_r_hat, min_ess)
    return fit(hurdle_rows(stats, metrics), control, metrics, difference, alpha, priors, cfg)


def hurdle_rows(stats, metrics):
    """The rows the model can take: by default those with the log statistics."""
    if isinstance(stats, pd.DataFrame):
        missing = [c for c in LOG_COLUMNS if c not in stats.columns]
        if missing:
            raise StatsInputError(f"the revenue hurdle model needs column(s) {missing} (mean "
                                  "metrics with `log_stats: true`)")
        if metrics is None:
            stats = stats[stats[list(LOG_COLUMNS)].notna().all(axis=1)]
    return stats


def prep(block: pd.DataFrame, priors: HurdlePriors):
    """Model data, per-arm messages and a block-wide message of a hurdle block."""
    n = block["n"].to_numpy()
    pos = block["positive_n"].to_numpy()
    ls, lss = block["log_sum"].to_numpy(), block["log_sum_squares"].to_numpy()
    bad_rows = np.flatnonzero((pos < 0) | (pos > n) | (np.round(pos) != pos))
    if bad_rows.size:
        r = block.iloc[bad_rows[0]]
        raise StatsInputError(f"metric {r['metric']!r}, variant {r['variant']!r}: 'positive_n' "
                              f"must be an integer in [0, n], got {r['positive_n']} (n={r['n']})")
    bad = arm_problems(n, (pos < 2, messages.TOO_FEW_UNITS))
    error = bad[0]
    ok = np.array([not b for b in bad])
    m = np.where(ok, pos, 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ok, ls / np.maximum(pos, 1), 0.0)
        ss = np.where(ok, lss - ls**2 / np.maximum(pos, 1), 1.0)
    # Floating error can make a tiny centred sum of squares negative.
    ss = np.maximum(ss, 1e-12 * np.maximum(m, 1.0))
    pooled = float(ls[ok].sum() / pos[ok].sum()) if ok.any() and pos[ok].sum() > 0 else 0.0
    m0 = pooled if priors.log_mean is None else float(priors.log_mean)
    data = {"n": np.where(ok, n, 2).astype("int64"),
            "positive_n": np.where(ok, pos, 2).astype("int64"),
            "m": m.astype(float), "log_mean": mean, "log_ss": ss,
            "prior_alpha": float(priors.conversion.alpha),
            "prior_beta": float(priors.conversion.beta),
            "prior_log_mean": m0, "prior_log_mean_sd": float(priors.log_mean_sd),
            "prior_log_sd_scale": float(priors.log_sd_scale)}
    return data, bad, error


def fit(stats, control, metrics, difference, alpha, priors, cfg, prior_only=False,
        prior_draws=500):
    """Fit every metric x grouping block (or, ``prior_only``, return the prior predictive draws
    of the first block)."""
    group_cols, blocks = arm_blocks(stats, control, metrics, difference, alpha, ("mean",),
                                    LOG_COLUMNS, "revenue_hurdle", cfg.random_seed)
    fits = Fits(cfg)
    for key, base, block, seed in blocks:
        data, bad, error = prep(block, priors)
        names = list(block["variant"])
        if prior_only:
            return sampling.prior_draws("hurdle", len(names), data, prior_draws, seed, "arm",
                                        names)
        if error:
            fits.rows += [empty_row({**base, "variant": v}, error) for v in names[1:]]
            continue
        # Arms too small to fit are left out of the model (not given placeholder data).
        keep = [j for j in range(len(names)) if not bad[j]]
        data, _, _ = prep(block.iloc[keep], priors)
        idata, diag_cols = fits.sample(key, "hurdle", data, seed, "arm", [names[j] for j in keep])
        rev = posterior_draws(idata, "revenue_per_user")
        for pos_in_model, j in enumerate(keep[1:], start=1):
            fits.rows.append({**base, "variant": names[j],
                              **effect_stats(rev[:, 0], rev[:, pos_in_model], difference, alpha),
                              **diag_cols})
        fits.rows += [empty_row({**base, "variant": names[j]}, bad[j])
                      for j in range(1, len(names)) if bad[j]]
    return fits.finish("revenue_hurdle", group_cols, difference, alpha, priors)
