"""Closed-form Bayesian A/B comparisons (the PyMC models live in ``workbench.stats.pymc``).

Proportions: Beta-Binomial. With prior ``Beta(a0, b0)`` (default ``Beta(1, 1)``) each arm's
posterior is ``Beta(a0 + sum, b0 + n - sum)``. Chance to win ``P(p_t > p_c)`` and the expected
losses are one-dimensional integrals over the sharper of the two posteriors, with the other arm
in closed form (regularised incomplete beta ``I``)::

    P(p_t > p_c)         = E_t[ I_{p_t}(a_c, b_c) ]
    E[(p_t - p_c)^+]     = E_t[ p_t I_{p_t}(a_c, b_c) - a_c/(a_c+b_c) I_{p_t}(a_c+1, b_c) ]
    E[(p_t/p_c - 1)^+]   = E_t[ p_t (a_c+b_c-1)/(a_c-1) I_{p_t}(a_c-1, b_c) - I_{p_t}(a_c, b_c) ]

(and the mirror images when integrating over the control), computed by Gauss-Legendre
quadrature (``NODES`` points) over the 1e-12..1-1e-12 quantile range, vectorised over rows.
``risk_variant = risk_control - E[effect]``. Intervals for proportions are normal
approximations with the exact posterior mean and variance of the effect.

Means and ratios (and CUPED-adjusted proportions): Gaussian model of the effect. The estimate
``e ~ N(delta, se^2)`` with prior ``delta ~ N(mu0, tau^2)`` on the relative lift (default
``N(0, 0.3^2)``; scaled by ``|control mean|`` for absolute differences) or a flat prior gives the
posterior ``N(mu, s^2)`` with ``1/s^2 = 1/se^2 + 1/tau^2``, ``mu = s^2 (e/se^2 + mu0/tau^2)``::

    chance_to_win = Phi(mu / s)
    risk_control  = E[max(delta, 0)]  = s phi(mu/s) + mu Phi(mu/s)
    risk_variant  = E[max(-delta, 0)] = s phi(mu/s) - mu Phi(-mu/s)

Expected losses are in the units of ``effect`` (absolute or relative). ROPE: ``P(|delta| < r)``.
Chance to be best across 3+ arms: Monte Carlo (seeded) from each arm's posterior (Beta for
proportions, ``N(mean, se^2)`` for other metrics, i.e. flat prior); with 2 arms it equals the
chance to win.
"""
from __future__ import annotations

import numpy as np
from scipy import special

NODES = 48
_EPS = 1e-12
_GL_X, _GL_W = np.polynomial.legendre.leggauss(NODES)


def beta_posterior(s, n, prior=(1.0, 1.0)):
    """Posterior ``(a, b)`` of a proportion with ``s`` successes out of ``n``."""
    a0, b0 = prior
    return a0 + s, b0 + n - s


def _grid(a, b):
    """Quadrature nodes (rows x NODES) and weights covering a Beta(a, b) density."""
    lo = special.betaincinv(a, b, _EPS)
    hi = special.betaincinv(a, b, 1.0 - _EPS)
    half = (hi - lo)[:, None] / 2.0
    x = (lo + hi)[:, None] / 2.0 + half * _GL_X[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        logpdf = ((a[:, None] - 1) * np.log(x) + (b[:, None] - 1) * np.log1p(-x)
                  - special.betaln(a, b)[:, None])
    w = half * _GL_W[None, :] * np.exp(logpdf)
    return x, w


def beta_compare(a_t, b_t, a_c, b_c, relative: bool):
    """Chance to win, risk of choosing control, risk of choosing the variant, mean effect.

    Risks and the mean are in absolute units (``p_t - p_c``) or relative (``p_t/p_c - 1``).
    """
    a_t, b_t, a_c, b_c = (np.asarray(v, float) for v in (a_t, b_t, a_c, b_c))
    m_t, m_c = a_t / (a_t + b_t), a_c / (a_c + b_c)
    var_t = m_t * (1 - m_t) / (a_t + b_t + 1)
    var_c = m_c * (1 - m_c) / (a_c + b_c + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_c = np.where(a_c > 1, (a_c + b_c - 1) / (a_c - 1), np.inf)  # E[1/p_c]
    mean = m_t * inv_c - 1.0 if relative else m_t - m_c
    over_t = var_t <= var_c  # integrate over the sharper posterior
    win = np.full(a_t.shape, np.nan)
    up = np.full(a_t.shape, np.nan)  # E[max(effect, 0)] = risk of choosing control
    for over, idx in ((True, np.flatnonzero(over_t)), (False, np.flatnonzero(~over_t))):
        if idx.size == 0:
            continue
        at, bt, ac, bc = (v[idx, None] for v in (a_t, b_t, a_c, b_c))
        with np.errstate(divide="ignore", invalid="ignore"):
            if over:
                y, w = _grid(a_t[idx], b_t[idx])
                fc = special.betainc(ac, bc, y)                 # P(p_c < y)
                win[idx] = (w * fc).sum(axis=1)
                if relative:
                    e1 = np.where(ac > 1, (ac + bc - 1) / (ac - 1) * special.betainc(
                        np.maximum(ac - 1, 1e-300), bc, y), np.inf)
                    inner = y * e1 - fc                          # E[(y/p_c - 1)^+]
                else:
                    inner = y * fc - ac / (ac + bc) * special.betainc(ac + 1, bc, y)
            else:
                x, w = _grid(a_c[idx], b_c[idx])
                st = special.betaincc(at, bt, x)                # P(p_t > x)
                win[idx] = (w * st).sum(axis=1)
                st1 = special.betaincc(at + 1, bt, x)
                inner = at / (at + bt) * st1 - x * st            # E[(p_t - x)^+]
                if relative:
                    inner = inner / x
            up[idx] = (w * inner).sum(axis=1)
    down = up - mean
    with np.errstate(invalid="ignore"):
        if relative:
            sd = np.sqrt(var_t / m_c**2 + m_t**2 * var_c / m_c**4)
        else:
            sd = np.sqrt(var_t + var_c)
    return {"chance_to_win": np.clip(win, 0, 1), "risk_control": np.maximum(up, 0),
            "risk_variant": np.maximum(down, 0), "mean": mean, "sd": sd}


def gaussian_posterior(effect, se, prior_mean=0.0, prior_sd=0.3, scale=1.0):
    """Posterior mean and sd of the effect; ``prior_sd=None`` is the flat prior.

    ``prior_mean`` and ``prior_sd`` are on the relative scale and multiplied by ``scale``
    (``|control mean|`` for absolute differences, 1 for relative).
    """
    effect, se = np.asarray(effect, float), np.asarray(se, float)
    if prior_sd is None or not np.isfinite(prior_sd):
        return effect, se
    tau2 = (prior_sd * np.asarray(scale, float)) ** 2
    mu0 = prior_mean * np.asarray(scale, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = 1.0 / se**2 + 1.0 / tau2
        mean = (effect / se**2 + mu0 / tau2) / prec
    return mean, np.sqrt(1.0 / prec)


def gaussian_decision(mu, sd):
    """Chance to win and both expected losses of a N(mu, sd^2) effect posterior."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mu / sd
        pdf = np.exp(-0.5 * z**2) / np.sqrt(2.0 * np.pi)
        win = special.ndtr(z)
        risk_control = sd * pdf + mu * win
        risk_variant = sd * pdf - mu * special.ndtr(-z)
    return {"chance_to_win": win, "risk_control": np.maximum(risk_control, 0),
            "risk_variant": np.maximum(risk_variant, 0)}


def rope_probability(mu, sd, rope):
    """Posterior probability that the effect lies inside ``(-rope, rope)`` (normal posterior)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return special.ndtr((rope - mu) / sd) - special.ndtr((-rope - mu) / sd)


def chance_to_be_best(block, beta_ab, normal_ms, draws=10_000, seed=0, chunk=500):
    """Monte Carlo probability that each row's arm is the best within its block.

    Parameters
    ----------
    block : int array
        Block (comparison set) of every row; all arms of a block, control included.
    beta_ab : (a, b) arrays
        Beta posterior per row (NaN where the normal posterior applies).
    normal_ms : (mean, sd) arrays
        Normal posterior of the arm mean per row (used where ``a`` is NaN).
    """
    block = np.asarray(block)
    a, b = (np.asarray(v, float) for v in beta_ab)
    mu, sd = (np.asarray(v, float) for v in normal_ms)
    use_beta = np.isfinite(a) & np.isfinite(b)
    ok = np.where(use_beta, True, np.isfinite(mu) & np.isfinite(sd))
    order = np.lexsort((np.arange(block.size), block))
    bs = block[order]
    starts = np.r_[0, np.flatnonzero(np.diff(bs)) + 1]
    rng = np.random.default_rng(seed)
    wins = np.zeros(block.size)
    done = 0
    a_o, b_o = np.where(use_beta, a, 1.0)[order], np.where(use_beta, b, 1.0)[order]
    mu_o, sd_o = np.where(ok & ~use_beta, mu, 0.0)[order], np.where(ok & ~use_beta, sd, 0.0)[order]
    beta_o, ok_o = use_beta[order], ok[order]
    while done < draws:
        k = min(chunk, draws - done)
        x = np.where(beta_o[:, None], rng.beta(a_o[:, None], b_o[:, None], (bs.size, k)),
                     rng.normal(mu_o[:, None], sd_o[:, None], (bs.size, k)))
        x[~ok_o] = -np.inf
        best = np.maximum.reduceat(x, starts, axis=0)
        best_row = np.repeat(best, np.diff(np.r_[starts, bs.size]), axis=0)
        wins[order] += (x == best_row).sum(axis=1)
        done += k
    out = wins / draws
    return np.where(ok, out, np.nan)
