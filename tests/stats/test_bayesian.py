"""Closed-form Bayesian quantities vs exact formulas and numerical integration."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from workbench.stats import analyze, bayesian


def _exact_beta_win(a_t, b_t, a_c, b_c):
    """P(p_t > p_c) for integer a_t (Evan Miller's sum)."""
    i = np.arange(int(a_t))
    return float(np.sum(np.exp(special.betaln(a_c + i, b_t + b_c) - np.log(b_t + i)
                               - special.betaln(1 + i, b_t) - special.betaln(a_c, b_c))))


def _pdf(a, b):
    import math

    lb = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return lambda x: math.exp((a - 1) * math.log(x) + (b - 1) * math.log1p(-x) - lb) if 0 < x < 1 else 0.0


CASES = [(13, 90, 11, 95), (121, 891, 101, 901), (3, 2000, 9, 200), (401, 600, 380, 650)]


@pytest.mark.parametrize("a_t,b_t,a_c,b_c", CASES)
def test_beta_chance_to_win_and_risks_match_integration(a_t, b_t, a_c, b_c):
    res = bayesian.beta_compare(np.array([a_t]), np.array([b_t]), np.array([a_c]),
                                np.array([b_c]), relative=False)
    ft, fc = stats.beta(a_t, b_t), stats.beta(a_c, b_c)
    pt, pc = _pdf(a_t, b_t), _pdf(a_c, b_c)  # plain-float densities: quad calls them a lot
    assert res["chance_to_win"][0] == pytest.approx(_exact_beta_win(a_t, b_t, a_c, b_c), abs=1e-9)
    win_q = integrate.quad(lambda x: fc.pdf(x) * ft.sf(x), 0, 1, epsabs=1e-12, limit=200,
                           points=[fc.mean()])[0]
    assert res["chance_to_win"][0] == pytest.approx(win_q, abs=1e-6)
    # E[max(p_t - p_c, 0)] by a double integral over the joint posterior
    lo, hi = min(ft.ppf(1e-12), fc.ppf(1e-12)), max(ft.isf(1e-12), fc.isf(1e-12))
    up = integrate.dblquad(lambda y, x: (y - x) * pt(y) * pc(x), lo, hi,
                           lambda x: x, lambda x: hi, epsabs=1e-10)[0]
    assert res["risk_control"][0] == pytest.approx(up, abs=1e-6)
    assert res["risk_variant"][0] == pytest.approx(up - (ft.mean() - fc.mean()), abs=1e-6)
    rel = bayesian.beta_compare(np.array([a_t]), np.array([b_t]), np.array([a_c]),
                                np.array([b_c]), relative=True)
    up_rel = integrate.dblquad(lambda y, x: (y / x - 1) * pt(y) * pc(x), lo, hi,
                               lambda x: x, lambda x: hi, epsabs=1e-10)[0]
    mean_rel = ft.mean() * integrate.quad(lambda x: fc.pdf(x) / x, lo, hi, points=[fc.mean()])[0] - 1
    assert rel["risk_control"][0] == pytest.approx(up_rel, abs=1e-6)
    assert rel["mean"][0] == pytest.approx(mean_rel, abs=1e-8)
    assert rel["risk_variant"][0] == pytest.approx(up_rel - mean_rel, abs=1e-6)


def test_analyze_uses_beta_posteriors_for_proportions():
    df = pd.DataFrame({"metric": "c", "variant": ["control", "a"], "kind": "proportion",
                       "n": [1000, 1010], "sum": [100, 120]})
    row = analyze(df, method="bayesian", difference="absolute").to_frame().iloc[0]
    assert row.chance_to_win == pytest.approx(_exact_beta_win(121, 891, 101, 901), abs=1e-9)
    assert np.isnan(row.p_value) and np.isnan(row.p_value_adjusted)


def _grid_posterior(effect, se, prior_sd):
    grid = np.linspace(effect - 12 * se, effect + 12 * se, 200_001)
    logp = stats.norm.logpdf(effect, grid, se)
    if prior_sd is not None:
        logp = logp + stats.norm.logpdf(grid, 0, prior_sd)
    w = np.exp(logp - logp.max())
    w /= integrate.trapezoid(w, grid)
    return grid, w


@pytest.mark.parametrize("prior", ["proper", "flat"])
def test_gaussian_model_matches_numerical_posterior(prior):
    df = pd.DataFrame({"metric": "m", "variant": ["control", "a"], "kind": "mean",
                       "n": [500, 520], "sum": [5000, 5400],
                       "sum_squares": [5000 * 10 + 499 * 16, 5400 * 5400 / 520 + 519 * 20]})
    freq = analyze(df).to_frame().iloc[0]
    row = analyze(df, method="bayesian", prior=prior, rope=0.01).to_frame().iloc[0]
    grid, w = _grid_posterior(freq.effect, freq.se, 0.3 if prior == "proper" else None)
    trap = integrate.trapezoid
    assert row.effect == pytest.approx(trap(grid * w, grid), abs=1e-8)
    assert row.chance_to_win == pytest.approx(trap(w * (grid > 0), grid), abs=1e-4)
    assert row.risk_control == pytest.approx(trap(w * np.maximum(grid, 0), grid), abs=1e-7)
    assert row.risk_variant == pytest.approx(trap(w * np.maximum(-grid, 0), grid), abs=1e-7)
    assert row.rope_probability == pytest.approx(trap(w * (np.abs(grid) < 0.01), grid), abs=1e-4)
    sd = np.sqrt(trap(w * (grid - row.effect) ** 2, grid))
    assert (row.ci_upper - row.ci_lower) / 2 == pytest.approx(stats.norm.ppf(0.975) * sd, rel=1e-6)


def test_gaussian_expected_loss_closed_form_vs_quad():
    mu, sd = np.array([0.013, -0.2, 0.0]), np.array([0.02, 0.05, 1.0])
    res = bayesian.gaussian_decision(mu, sd)
    for i in range(3):
        f = stats.norm(mu[i], sd[i])
        assert res["risk_control"][i] == pytest.approx(
            integrate.quad(lambda x, f=f: x * f.pdf(x), 0, np.inf, epsabs=1e-13)[0], abs=1e-9)
        assert res["risk_variant"][i] == pytest.approx(
            integrate.quad(lambda x, f=f: -x * f.pdf(x), -np.inf, 0, epsabs=1e-13)[0], abs=1e-9)


def test_chance_to_be_best_matches_integration():
    arms = {"control": (100, 1000), "a": (112, 1000), "b": (118, 1000), "c": (90, 1000)}
    df = pd.DataFrame({"metric": "c", "variant": list(arms), "kind": "proportion",
                       "n": [v[1] for v in arms.values()], "sum": [v[0] for v in arms.values()]})
    res = analyze(df, method="bayesian", best_draws=40_000, seed=1).to_frame().set_index("variant")
    post = {k: stats.beta(1 + s, 1 + n - s) for k, (s, n) in arms.items()}
    for v in ("a", "b", "c"):
        others = [post[k] for k in arms if k != v]
        exact = integrate.quad(lambda x, v=v, others=others: post[v].pdf(x) * np.prod([o.cdf(x) for o in others]),
                               0, 1, points=[0.1, 0.11, 0.12], limit=200)[0]
        assert res.loc[v, "chance_to_be_best"] == pytest.approx(exact, abs=4 * np.sqrt(0.25 / 40_000))
    # two arms: it is the chance to win
    two = analyze(df.iloc[:2], method="bayesian").to_frame().iloc[0]
    assert two.chance_to_be_best == two.chance_to_win
