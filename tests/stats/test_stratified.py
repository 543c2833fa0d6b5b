"""The stratified combination against statsmodels (saturated OLS with HC2) and simulation."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from workbench.errors import StatsInputError
from workbench.stats.stratified import combine


def _units(seed=0, n=(3000, 4000, 5000), share_t=(0.1, 0.25, 0.5), base=(1.0, 1.4, 1.8),
           effect=0.1):
    rng = np.random.default_rng(seed)
    frames = []
    for k, (nk, s, b) in enumerate(zip(n, share_t, base)):
        t = (rng.random(nk) < s).astype(int)
        y = rng.gamma(2.0, (b + effect * t) / 2.0)
        frames.append(pd.DataFrame({"phase": f"p{k}", "t": t, "y": y}))
    return pd.concat(frames, ignore_index=True)


def _inputs(df):
    g = df.groupby(["phase", "t"])["y"].agg(["mean", "var", "count"]).unstack("t")
    c, t = g[("mean", 0)].to_numpy(), g[("mean", 1)].to_numpy()
    vc = (g[("var", 0)] / g[("count", 0)]).to_numpy()
    vt = (g[("var", 1)] / g[("count", 1)]).to_numpy()
    w = df.groupby("phase").size().to_numpy() / len(df)
    return c, t, vc, vt, w


def _ols(df):
    """Cell means of a saturated model (phase x arm) with HC2 covariance: per cell the mean and
    s^2 / n, independently of the module."""
    df = df.assign(cell=df["phase"] + "_" + df["t"].astype(str))
    fit = smf.ols("y ~ 0 + C(cell)", df).fit(cov_type="HC2")
    names = [f"C(cell)[{p}_{a}]" for p in sorted(df["phase"].unique()) for a in (0, 1)]
    return fit.params[names].to_numpy(), fit.cov_params().loc[names, names].to_numpy()


def test_absolute_matches_saturated_ols_contrast():
    df = _units()
    c, t, vc, vt, w = _inputs(df)
    est = combine(c, t, vc + vt, vc, w, difference="absolute")
    beta, cov = _ols(df)
    contrast = np.ravel([[-wk, wk] for wk in w])
    assert est.effect == pytest.approx(contrast @ beta, rel=1e-10)
    assert est.se == pytest.approx(np.sqrt(contrast @ cov @ contrast), rel=1e-8)
    # the same contrast through statsmodels' own Wald test
    fit = smf.ols("y ~ 0 + C(cell)", df.assign(cell=df["phase"] + "_" + df["t"].astype(str))
                  ).fit(cov_type="HC2")
    tt = fit.t_test(contrast)
    assert est.p_value == pytest.approx(float(tt.pvalue), rel=1e-6)


def test_relative_matches_numerical_delta_method_on_ols():
    df = _units(seed=3)
    c, t, vc, vt, w = _inputs(df)
    est = combine(c, t, vc + vt, vc, w, difference="relative", alpha=0.1)
    beta, cov = _ols(df)

    def lift(b):
        bc, bt = b[0::2], b[1::2]
        return (w @ bt) / (w @ bc) - 1

    h = 1e-6
    grad = np.array([(lift(beta + h * e) - lift(beta - h * e)) / (2 * h)
                     for e in np.eye(len(beta))])
    assert est.effect == pytest.approx(lift(beta), rel=1e-10)
    assert est.se == pytest.approx(np.sqrt(grad @ cov @ grad), rel=1e-5)
    from scipy import stats

    z = stats.norm.ppf(0.95)
    assert est.ci_lower == pytest.approx(est.effect - z * est.se)
    assert est.control_mean == pytest.approx(w @ c)


def test_coverage_and_naive_bias_by_simulation():
    """A ramp with a trend: the stratified interval covers the truth about 95 % of the time,
    the naive pooled estimate is biased (truth: effect 0.1 absolute in every phase)."""
    rng = np.random.default_rng(7)
    reps, n = 400, 800
    share_t, base = np.array([0.1, 0.25, 0.5]), np.array([1.0, 1.4, 1.8])
    t = rng.random((reps, 3, n)) < share_t[None, :, None]
    y = rng.gamma(2.0, (base[None, :, None] + 0.1 * t) / 2.0)
    cover, naive = 0, []
    for r in range(reps):
        stats = [(y[r, k][~t[r, k]], y[r, k][t[r, k]]) for k in range(3)]
        c = [a.mean() for a, _ in stats]
        m = [b.mean() for _, b in stats]
        vc = [a.var(ddof=1) / a.size for a, _ in stats]
        vt = [b.var(ddof=1) / b.size for _, b in stats]
        est = combine(c, m, np.add(vc, vt), vc, [1, 1, 1], difference="absolute")
        cover += est.ci_lower <= 0.1 <= est.ci_upper
        naive.append(y[r][t[r]].mean() - y[r][~t[r]].mean())
    rate = cover / reps
    assert abs(rate - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)
    assert np.mean(naive) - 0.1 > 0.15  # treatment sits in the later, higher phases


def test_zero_weight_stratum_is_ignored_and_bad_weights_raise():
    est = combine([1.0, np.nan], [1.2, np.nan], [0.01, np.nan], [0.005, np.nan], [1.0, 0.0],
                  difference="absolute")
    assert est.effect == pytest.approx(0.2) and est.se == pytest.approx(0.1)
    with pytest.raises(StatsInputError, match="weights"):
        combine([1.0], [1.0], [0.1], [0.1], [-1.0])
    with pytest.raises(StatsInputError, match="one entry per stratum"):
        combine([1.0, 2.0], [1.0], [0.1], [0.1], [1.0])
    zero = combine([0.0], [0.1], [0.01], [0.0], [1.0], difference="relative")
    assert np.isnan(zero.effect) and np.isnan(zero.se)


def _hand_msprt(effect, se, n, alpha=0.05, tuning=5000):
    """Howard et al. (2021) normal-mixture boundary and the mixture-SPRT p-value, by hand."""
    la = -2 * np.log(alpha)
    rho2 = (la + np.log(la + 1)) / tuning
    s2 = n * se**2
    half = np.sqrt(s2 * 2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
    p = min(1.0, np.sqrt(n * rho2 + 1) * np.exp(-n**2 * rho2 * effect**2
                                                 / (2 * s2 * (n * rho2 + 1))))
    return effect - half, effect + half, p


def test_restate_sequential_and_bayesian_by_hand():
    from scipy import stats as st

    from workbench.stats.stratified import restate

    est = combine([0.08, 0.09, 0.10], [0.085, 0.095, 0.104], [4e-5, 3e-5, 2e-5],
                  [1e-5, 1e-5, 1e-5], [1, 1, 1], difference="absolute")
    freq = restate(est, "frequentist", 9000)
    assert (freq["effect"], freq["ci_lower"], freq["p_value"]) == (est.effect, est.ci_lower,
                                                                  est.p_value)
    assert np.isnan(freq["chance_to_win"])
    lo, hi, p = _hand_msprt(est.effect, est.se, 9000)
    seq = restate(est, "sequential", 9000)
    assert (seq["ci_lower"], seq["ci_upper"], seq["p_value"]) == pytest.approx((lo, hi, p),
                                                                               rel=1e-12)
    assert seq["effect"] == est.effect and seq["ci_lower"] < est.ci_lower  # always-valid: wider
    # flat prior: chance to win Phi(D / se), interval D +- z se, expected losses of N(D, se^2)
    flat = restate(est, "bayesian", 9000, prior_sd=None)
    d, s = est.effect, est.se
    assert flat["chance_to_win"] == pytest.approx(st.norm.cdf(d / s), rel=1e-12)
    assert flat["ci_lower"] == pytest.approx(d - st.norm.ppf(0.975) * s, rel=1e-12)
    draws = st.norm(d, s)
    risk = draws.expect(lambda x: max(x, 0.0), lb=-1, ub=1)
    assert flat["risk_control"] == pytest.approx(risk, rel=1e-6)
    assert np.isnan(flat["p_value"])
    # proper prior N(0, (0.3 |C|)^2) on an absolute difference: the conjugate normal update
    tau = 0.3 * est.control_mean
    post_var = 1 / (1 / s**2 + 1 / tau**2)
    proper = restate(est, "bayesian", 9000, prior_sd=0.3, scale=est.control_mean)
    assert proper["effect"] == pytest.approx(post_var * d / s**2, rel=1e-12)
    assert proper["chance_to_win"] == pytest.approx(
        st.norm.cdf(post_var * d / s**2 / np.sqrt(post_var)), rel=1e-12)
    with pytest.raises(StatsInputError, match="method"):
        restate(est, "bootstrap", 9000)
