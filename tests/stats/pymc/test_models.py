"""PyMC models on sufficient statistics, checked against closed forms, a grid posterior and
simulations with known truth. One process (PyTensor's compile cache must not be shared by parallel
compiles); each model kind and shape is compiled once and re-used through the sampling cache."""
from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from workbench import messages
from workbench.errors import ConvergenceWarning, StatsInputError
from workbench.stats import pymc

FAST = dict(draws=1000, tune=400, chains=2, progressbar=False)
PROP = pd.DataFrame({"metric": "conversion", "variant": ["control", "treatment_a", "treatment_b"],
                     "kind": "proportion", "n": [800, 820, 790], "sum": [80, 104, 71]})


def _within(estimate, truth, mcse, k=4.0):
    assert abs(estimate - truth) <= k * mcse, f"{estimate} vs {truth} (mcse {mcse})"


def _mcse_mean(x_chain_draw):
    """Monte Carlo standard error of the mean of (chain, draw) samples."""
    return float(np.ravel(az.mcse(np.asarray(x_chain_draw, dtype=float), method="mean"))[0])


# --------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------
def test_beta_binomial_agrees_with_exact_beta_posterior():
    prior = pymc.BetaPrior(2.0, 5.0)
    res = pymc.beta_binomial(PROP, prior=prior, random_seed=11, **FAST)
    p = res.idata.posterior["p"]  # (chain, draw, arm)
    assert list(p["arm"].values) == ["control", "treatment_a", "treatment_b"]
    a = prior.alpha + PROP["sum"].to_numpy()
    b = prior.beta + PROP["n"].to_numpy() - PROP["sum"].to_numpy()
    for k in range(3):
        draws = p.values[:, :, k]
        _within(draws.mean(), a[k] / (a[k] + b[k]), _mcse_mean(draws))
    table = res.to_frame().set_index("variant")
    for k, v in ((1, "treatment_a"), (2, "treatment_b")):
        # P(p_t > p_c) = int f_t(x) F_c(x) dx, by quadrature.
        ctw = integrate.quad(lambda x, k=k: stats.beta.pdf(x, a[k], b[k]) * stats.beta.cdf(x, a[0], b[0]),
                             0, 1, limit=200)[0]
        win = (p.values[:, :, k] > p.values[:, :, 0]).astype(float)
        _within(table.loc[v, "chance_to_win"], ctw, max(_mcse_mean(win), 1e-3))
        # E[p_t / p_c] - 1 = E[p_t] E[1/p_c] - 1, with E[1/p] = (a+b-1)/(a-1) for Beta(a, b).
        lift = a[k] / (a[k] + b[k]) * (a[0] + b[0] - 1) / (a[0] - 1) - 1
        _within(table.loc[v, "effect"], lift, _mcse_mean(p.values[:, :, k] / p.values[:, :, 0]))
        assert table.loc[v, "control_mean"] == pytest.approx(a[0] / (a[0] + b[0]), abs=0.003)
    assert np.isnan(table["p_value"]).all() and (table["error_message"] == "").all()
    assert res.diagnostics_ok and res.sampler == "nutpie"
    # The table carries the fit's diagnostics (what the readout record turns into tags).
    assert table["diagnostics_ok"].all() and (table["sampler"] == "nutpie").all()
    d = res.diagnostics.iloc[0]
    assert (table["r_hat_max"] == d["r_hat_max"]).all() and (table["divergences"] == 0).all()
    assert d["r_hat_max"] < 1.01 and d["ess_bulk_min"] >= 400


def test_gaussian_agrees_with_normal_closed_form():
    rng = np.random.default_rng(3)
    ys = [rng.normal(20.0, 6.0, 400), rng.normal(21.0, 6.0, 450), rng.normal(19.5, 7.0, 380)]
    frame = pd.DataFrame({"metric": "orders", "variant": ["control", "b", "c"], "kind": "mean",
                          "n": [len(y) for y in ys], "sum": [y.sum() for y in ys],
                          "sum_squares": [(y**2).sum() for y in ys]})
    prior = pymc.NormalPrior(mean=15.0, sd=8.0)
    res = pymc.gaussian(frame, prior=prior, difference="absolute", random_seed=5, **FAST)
    post = res.idata.posterior["arm_mean"]
    means, variances = [], []
    for y in ys:
        se2 = y.var(ddof=1) / len(y)
        prec = 1 / prior.sd**2 + 1 / se2
        means.append((prior.mean / prior.sd**2 + y.mean() / se2) / prec)
        variances.append(1 / prec)
    table = res.to_frame().set_index("variant")
    for k in range(3):
        _within(float(post.values[:, :, k].mean()), means[k], _mcse_mean(post.values[:, :, k]))
        assert float(post.values[:, :, k].std()) == pytest.approx(np.sqrt(variances[k]), rel=0.1)
    for k, v in ((1, "b"), (2, "c")):
        diff = post.values[:, :, k] - post.values[:, :, 0]
        sd = np.sqrt(variances[k] + variances[0])
        _within(table.loc[v, "effect"], means[k] - means[0], _mcse_mean(diff))
        ctw = stats.norm.cdf((means[k] - means[0]) / sd)
        _within(table.loc[v, "chance_to_win"], ctw, max(_mcse_mean((diff > 0).astype(float)), 1e-3))
        lo = means[k] - means[0] + stats.norm.ppf(0.025) * sd
        assert table.loc[v, "ci_lower"] == pytest.approx(lo, abs=0.15 * sd)
        # Expected loss of shipping the variant: E[max(-D, 0)] for D ~ N(m, s^2).
        m = means[k] - means[0]
        risk = sd * stats.norm.pdf(m / sd) - m * stats.norm.cdf(-m / sd)
        assert table.loc[v, "risk_variant"] == pytest.approx(risk, abs=0.05 * sd)


def test_revenue_hurdle_agrees_with_grid_posterior():
    rng = np.random.default_rng(21)
    rows, logs = [], {}
    for v, p, mu, sigma in (("control", 0.08, 3.0, 1.1), ("treatment_a", 0.10, 3.1, 1.0)):
        n = 3000
        conv = rng.random(n) < p
        lv = rng.normal(mu, sigma, conv.sum())
        rev = np.zeros(n)
        rev[conv] = np.exp(lv)
        logs[v] = lv
        rows.append(dict(metric="revenue_per_user", variant=v, kind="mean", n=n, sum=rev.sum(),
                         sum_squares=(rev**2).sum(), positive_n=int(conv.sum()), log_sum=lv.sum(),
                         log_sum_squares=(lv**2).sum()))
    frame = pd.DataFrame(rows)
    priors = pymc.HurdlePriors(conversion=pymc.BetaPrior(1, 1), log_mean=2.5, log_mean_sd=2.0, log_sd_scale=2.0)
    res = pymc.revenue_hurdle(frame, priors=priors, random_seed=8, **FAST)
    post = res.idata.posterior
    # Grid posterior of (mu, sigma) from the raw log values (not the sufficient statistics).
    lv = logs["control"]
    mu_g = np.linspace(lv.mean() - 0.6, lv.mean() + 0.6, 301)
    sg_g = np.linspace(0.6, 1.8, 301)
    M, S = np.meshgrid(mu_g, sg_g, indexing="ij")
    loglik = stats.norm.logpdf(lv[:, None, None], M[None], S[None]).sum(axis=0)
    logpost = loglik + stats.norm.logpdf(M, 2.5, 2.0) + stats.halfnorm.logpdf(S, scale=2.0)
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    order_value = float((w * np.exp(M + S**2 / 2)).sum())
    for name, truth in (("mu", float((w * M).sum())), ("sigma", float((w * S).sum()))):
        draws = post[name].sel(arm="control").values
        _within(draws.mean(), truth, _mcse_mean(draws))
    pos, n = frame.loc[0, "positive_n"], frame.loc[0, "n"]
    p_mean = (1 + pos) / (2 + n)
    draws = post["revenue_per_user"].sel(arm="control").values
    # p and (mu, sigma) are independent a posteriori: E[rev] = E[p] E[exp(mu + sigma^2/2)].
    _within(draws.mean(), p_mean * order_value, _mcse_mean(draws))
    row = res.to_frame().iloc[0]
    assert row["variant"] == "treatment_a" and row["control_mean"] == pytest.approx(draws.mean())
    eff = post["revenue_per_user"].sel(arm="treatment_a").values / draws - 1
    assert row["chance_to_win"] == pytest.approx((eff > 0).mean())
    assert row["risk_variant"] == pytest.approx(np.maximum(-eff, 0).mean())


def test_revenue_hurdle_degenerate_arm_gets_message():
    frame = pd.DataFrame([
        dict(metric="rev", variant="control", kind="mean", n=500, sum=900.0, sum_squares=9e4,
             positive_n=40, log_sum=120.0, log_sum_squares=400.0),
        dict(metric="rev", variant="a", kind="mean", n=500, sum=1.0, sum_squares=1.0,
             positive_n=1, log_sum=0.0, log_sum_squares=0.0),
        dict(metric="rev", variant="b", kind="mean", n=520, sum=1000.0, sum_squares=1e5,
             positive_n=45, log_sum=133.0, log_sum_squares=430.0),
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        table = pymc.revenue_hurdle(frame, random_seed=1, **FAST).to_frame().set_index("variant")
    assert table.loc["a", "error_message"] == messages.TOO_FEW_UNITS
    assert np.isnan(table.loc["a", "effect"]) and np.isfinite(table.loc["b", "effect"])


# --------------------------------------------------------------------------------------------
# hierarchical model: simulations with known per-segment truth
# --------------------------------------------------------------------------------------------
def _mean_segments(rng, n_seg=20, mu=0.05, tau=0.03, n=300, base=10.0, sd=5.0):
    truth = rng.normal(mu, tau, n_seg)
    rows = []
    for j in range(n_seg):
        for v, lift in (("control", 0.0), ("treatment", truth[j])):
            y = rng.normal(base * (1 + lift), sd, n)
            rows.append(dict(metric="orders_per_user", variant=v, kind="mean", n=n, sum=y.sum(),
                             sum_squares=(y**2).sum(), dimension="country", segment=f"c{j:02d}"))
    return pd.DataFrame(rows), truth


def test_hierarchical_normal_beats_unpooled_on_known_truth():
    rng = np.random.default_rng(2024)
    err_h, err_u, covered = [], [], []
    for rep in range(3):
        frame, truth = _mean_segments(rng)
        with warnings.catch_warnings():  # 2 x 1000 draws may fall short of ESS 400: not tested here
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = pymc.hierarchical(frame, random_seed=rep, **FAST)
        t = res.to_frame()
        seg = t[t["segment"] != "(all)"].set_index("segment").loc[[f"c{j:02d}" for j in range(20)]]
        c = frame[frame.variant == "control"].set_index("segment").loc[seg.index]
        v = frame[frame.variant == "treatment"].set_index("segment").loc[seg.index]
        unpooled = (v["sum"] / v["n"]) / (c["sum"] / c["n"]) - 1
        err_h += list(seg["effect"].to_numpy() - truth)
        err_u += list(unpooled.to_numpy() - truth)
        covered += list((seg["ci_lower"] <= truth) & (truth <= seg["ci_upper"]))
        assert set(res.hyper["parameter"]) == {"mu", "tau"}
    rmse_h, rmse_u = np.sqrt(np.mean(np.square(err_h))), np.sqrt(np.mean(np.square(err_u)))
    assert rmse_h < 0.85 * rmse_u, (rmse_h, rmse_u)
    assert np.mean(covered) > 0.85


def test_hierarchical_binomial_beats_unpooled_and_reports_population_effect():
    rng = np.random.default_rng(99)
    err_h, err_u = [], []
    for rep in range(2):
        J = 12
        base = rng.uniform(0.05, 0.15, J)
        theta = rng.normal(0.15, 0.1, J)  # true log odds ratios
        p_t = special.expit(special.logit(base) + theta)
        n = rng.integers(600, 1200, J)
        rows = []
        for j in range(J):
            rows.append(dict(metric="conversion", variant="control", kind="proportion", n=n[j],
                             sum=rng.binomial(n[j], base[j]), dimension="device", segment=f"d{j}"))
            rows.append(dict(metric="conversion", variant="treatment", kind="proportion", n=n[j],
                             sum=rng.binomial(n[j], p_t[j]), dimension="device", segment=f"d{j}"))
        frame = pd.DataFrame(rows)
        # An overall row must be ignored by the hierarchical model.
        frame = pd.concat([frame, pd.DataFrame([dict(metric="conversion", variant="control", kind="proportion",
                                                     n=1, sum=0, dimension="(all)", segment="(all)")])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            res = pymc.hierarchical(frame, random_seed=rep, **FAST)
        t = res.to_frame()
        seg = t[t["segment"] != "(all)"].set_index("segment").loc[[f"d{j}" for j in range(J)]]
        truth = p_t / base - 1
        c = frame[(frame.variant == "control") & (frame.segment != "(all)")].set_index("segment").loc[seg.index]
        v = frame[frame.variant == "treatment"].set_index("segment").loc[seg.index]
        err_h += list(seg["effect"].to_numpy() - truth)
        err_u += list(((v["sum"] / v["n"]) / (c["sum"] / c["n"]) - 1).to_numpy() - truth)
        # (all): the population lift, segments weighted by units; shrinking segment effects
        # toward mu barely moves the weighted average, so it matches the pooled lift (delta method).
        overall = t[t["segment"] == "(all)"].iloc[0]
        yc, nc, yt, nt = c["sum"].sum(), c["n"].sum(), v["sum"].sum(), v["n"].sum()
        pooled = (yt / nt) / (yc / nc) - 1
        se = (yt / nt) / (yc / nc) * np.sqrt((1 - yt / nt) / yt + (1 - yc / nc) / yc)
        assert abs(overall["effect"] - pooled) < 0.25 * se
        assert overall["ci_upper"] - overall["ci_lower"] == pytest.approx(2 * 1.96 * se, rel=0.3)
        assert res.idatas[("conversion", "device", "treatment")].posterior["theta"].sizes["segment"] == J
    assert np.sqrt(np.mean(np.square(err_h))) < np.sqrt(np.mean(np.square(err_u)))


# --------------------------------------------------------------------------------------------
# bad input, prior predictive
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: pymc.beta_binomial(PROP.drop(columns="n")), "lacks column"),
    (lambda: pymc.beta_binomial(PROP, control="ctrl"), "control variant 'ctrl'"),
    (lambda: pymc.beta_binomial(PROP, difference="ratio"), "difference"),
    (lambda: pymc.beta_binomial(PROP.assign(sum=[80, 900, 71])), "integer count in \\[0, n\\]"),
    (lambda: pymc.gaussian(PROP.assign(sum_squares=PROP["sum"])), "no metric of kind"),
    (lambda: pymc.hierarchical(PROP), "'dimension' and 'segment'"),
    (lambda: pymc.revenue_hurdle(PROP), "positive_n"),
    (lambda: pymc.beta_binomial(PROP, sampler="stan"), "sampler"),
    (lambda: pymc.prior_predictive(PROP, "lda"), "model must be"),
    (lambda: pymc.prior_predictive(PROP, "beta_binomial", metric="nope"), "metric 'nope'"),
    (lambda: pymc.hierarchical(PROP.assign(dimension="d", segment="s"), likelihood="t"), "likelihood"),
    (lambda: pymc.beta_binomial(PROP, draws=0), "draws must be >= 1"),
    (lambda: pymc.beta_binomial(PROP, target_accept=1.0), "target_accept"),
    (lambda: pymc.beta_binomial(PROP, alpha=0.0), "alpha must be in"),
])
def test_bad_input_raises_naming_the_culprit(call, match):
    with pytest.raises(StatsInputError, match=match):
        call()


def test_prior_predictive_draws_from_the_prior():
    pp = pymc.prior_predictive(PROP, "beta_binomial", priors=pymc.BetaPrior(2, 8), draws=2000, random_seed=4)
    p = pp.prior["p"].values.ravel()
    assert p.mean() == pytest.approx(0.2, abs=4 * np.sqrt(stats.beta.var(2, 8) / p.size))
    y = pp.prior_predictive["y"].sel(arm="control").values.ravel()
    # Beta-binomial predictive mean and sd for n = 800.
    bb = stats.betabinom(800, 2, 8)
    assert y.mean() == pytest.approx(bb.mean(), abs=4 * bb.std() / np.sqrt(y.size))
