"""Frequentist, sequential, CUPED, ratio and corrections vs independent implementations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats import proportion as smprop
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from workbench.stats import analyze, corrections


def _mean_row(metric, variant, y, **extra):
    return {"metric": metric, "variant": variant, "kind": "mean", "n": len(y), "sum": y.sum(),
            "sum_squares": (y**2).sum(), **extra}


def _ratio_row(metric, variant, y, d):
    return {"metric": metric, "variant": variant, "kind": "ratio", "n": len(y), "sum": y.sum(),
            "sum_squares": (y**2).sum(), "den_sum": d.sum(), "den_sum_squares": (d**2).sum(),
            "sum_product": (y * d).sum()}


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(11)
    arms = {"control": (50, 1.0, 12.0, 400), "a": (60, 1.4, 13.0, 350), "b": (70, 0.8, 11.0, 500)}
    data = {}
    for name, (_, mu_shift, sd, n) in arms.items():
        y = rng.gamma(2.0, 3.0, n) * mu_shift + rng.normal(0, sd / 4, n)
        d = rng.poisson(3, n) + 1.0
        num = d * (2.0 + mu_shift) + rng.normal(0, 2, n)
        data[name] = (y, num, d)
    return data


def _frame(raw):
    rows = []
    for v, (y, num, d) in raw.items():
        rows.append(_mean_row("m", v, y))
        rows.append(_ratio_row("r", v, num, d))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("alternative,sp", [("two-sided", "two-sided"), ("greater", "greater"),
                                            ("less", "less")])
def test_welch_matches_scipy_and_statsmodels(raw, alternative, sp):
    res = analyze(_frame(raw), difference="absolute", alternative=alternative).to_frame()
    for v in ("a", "b"):
        row = res[(res.metric == "m") & (res.variant == v)].iloc[0]
        yt, yc = raw[v][0], raw["control"][0]
        ref = stats.ttest_ind_from_stats(yt.mean(), yt.std(ddof=1), len(yt), yc.mean(),
                                         yc.std(ddof=1), len(yc), equal_var=False,
                                         alternative=sp)
        assert row.statistic == pytest.approx(ref.statistic, rel=1e-8)
        assert row.p_value == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-14)
        assert row.effect == pytest.approx(yt.mean() - yc.mean(), rel=1e-10)
        smalt = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
        lo, hi = CompareMeans(DescrStatsW(yt), DescrStatsW(yc)).tconfint_diff(
            alpha=0.05, usevar="unequal", alternative=smalt)
        assert row.ci_lower == pytest.approx(lo, rel=1e-8) if np.isfinite(lo) else row.ci_lower == -np.inf
        assert row.ci_upper == pytest.approx(hi, rel=1e-8) if np.isfinite(hi) else row.ci_upper == np.inf


def test_proportion_z_test_matches_statsmodels_wald():
    df = pd.DataFrame({"metric": "c", "variant": ["control", "a"], "kind": "proportion",
                       "n": [1000, 1010], "sum": [100, 120]})
    row = analyze(df, difference="absolute").to_frame().iloc[0]
    ref = smprop.test_proportions_2indep(120, 1010, 100, 1000, method="wald", compare="diff")
    assert row.statistic == pytest.approx(ref.statistic, rel=1e-8)
    assert row.p_value == pytest.approx(ref.pvalue, rel=1e-8)
    lo, hi = smprop.confint_proportions_2indep(120, 1010, 100, 1000, method="wald", compare="diff")
    assert (row.ci_lower, row.ci_upper) == pytest.approx((lo, hi), rel=1e-8)


def test_relative_effect_delta_method_matches_statsmodels_nonlinear_delta(raw):
    res = analyze(_frame(raw), difference="relative").to_frame()
    row = res[(res.metric == "m") & (res.variant == "a")].iloc[0]
    yt, yc = raw["a"][0], raw["control"][0]
    params = np.array([yt.mean(), yc.mean()])
    cov = np.diag([yt.var(ddof=1) / len(yt), yc.var(ddof=1) / len(yc)])
    nd = NonlinearDeltaCov(lambda p: np.atleast_1d(p[0] / p[1] - 1), params, cov)
    assert row.effect == pytest.approx(params[0] / params[1] - 1, rel=1e-10)
    assert row.se == pytest.approx(float(np.sqrt(np.diag(nd.cov()))[0]), rel=1e-6)


def test_ratio_delta_method_matches_statsmodels_nonlinear_delta(raw):
    res = analyze(_frame(raw), difference="absolute").to_frame()
    row = res[(res.metric == "r") & (res.variant == "b")].iloc[0]
    ses = []
    for v in ("b", "control"):
        _, num, d = raw[v]
        params = np.array([num.mean(), d.mean()])
        cov = np.cov(np.vstack([num, d]), ddof=1) / len(num)
        nd = NonlinearDeltaCov(lambda p: np.atleast_1d(p[0] / p[1]), params, cov)
        ses.append(float(np.sqrt(np.diag(nd.cov()))[0]))
    assert row.variant_mean == pytest.approx(raw["b"][1].sum() / raw["b"][2].sum(), rel=1e-12)
    assert row.se == pytest.approx(np.hypot(*ses), rel=1e-6)
    assert row.p_value == pytest.approx(2 * stats.norm.sf(abs(row.effect) / np.hypot(*ses)), rel=1e-5)


def test_cuped_equals_ancova_regression():
    rng = np.random.default_rng(3)
    rows, ys, xs, ts = [], [], [], []
    for i, v in enumerate(["control", "a", "b"]):
        n = 300 + 50 * i
        x = rng.normal(10, 3, n)
        y = 2 + 0.8 * x + rng.normal(0, 2, n) + 0.3 * i
        rows.append(_mean_row("m", v, y, pre_sum=x.sum(), pre_sum_squares=(x**2).sum(),
                              pre_sum_product=(x * y).sum()))
        ys.append(y), xs.append(x), ts.append(np.full(n, i))
    res = analyze(pd.DataFrame(rows), difference="absolute").to_frame()
    y, x, t = np.concatenate(ys), np.concatenate(xs), np.concatenate(ts)
    design = np.column_stack([np.ones_like(y), t == 1, t == 2, x]).astype(float)
    ols = sm.OLS(y, design).fit(cov_type="HC0")
    assert res.cuped.all()
    assert res.effect.to_numpy() == pytest.approx(ols.params[1:3], rel=1e-8)
    assert res.cuped_theta.iloc[0] == pytest.approx(ols.params[3], rel=1e-8)
    # the CUPED variance treats theta as known: close to the robust regression's
    assert res.se.to_numpy() == pytest.approx(ols.bse[1:3], rel=0.02)


def test_ratio_cuped_matches_unit_level_linearisation():
    rng = np.random.default_rng(5)
    rows, unit = [], {}
    for i, v in enumerate(["control", "a"]):
        n = 2000
        w = rng.poisson(3, n) + 1.0
        x = w * 2 + rng.normal(0, 2, n)
        d = w + rng.poisson(1, n)
        y = d * (2 + 0.1 * i) + 0.6 * (x - 2 * w) + rng.normal(0, 1.5, n)
        rows.append({"metric": "r", "variant": v, "kind": "ratio", "n": n, "sum": y.sum(),
                     "sum_squares": (y**2).sum(), "den_sum": d.sum(),
                     "den_sum_squares": (d**2).sum(), "sum_product": (y * d).sum(),
                     "pre_sum": x.sum(), "pre_sum_squares": (x**2).sum(),
                     "pre_sum_product": (x * y).sum(), "pre_den_sum": w.sum(),
                     "pre_den_sum_squares": (w**2).sum(), "pre_den_sum_product": (x * w).sum(),
                     "den_pre_sum_product": (d * x).sum(), "sum_pre_den_product": (y * w).sum(),
                     "den_pre_den_sum_product": (d * w).sum()})
        unit[v] = (y, d, x, w)
    res = analyze(pd.DataFrame(rows), difference="absolute").to_frame().iloc[0]
    # unit-level: linearised values, pooled within-arm slope, adjusted ratios
    zs, us, rs, rxs = {}, {}, {}, {}
    for v, (y, d, x, w) in unit.items():
        rs[v], rxs[v] = y.sum() / d.sum(), x.sum() / w.sum()
        zs[v] = (y - rs[v] * d) / d.mean()
        us[v] = (x - rxs[v] * w) / w.mean()
    theta = sum(np.sum((zs[v] - zs[v].mean()) * (us[v] - us[v].mean())) for v in unit) / sum(
        np.sum((us[v] - us[v].mean()) ** 2) for v in unit)
    eff = (rs["a"] - theta * rxs["a"]) - (rs["control"] - theta * rxs["control"])
    var = sum(np.var(zs[v] - theta * us[v], ddof=1) / len(zs[v]) for v in unit)
    assert res.cuped and res.cuped_theta == pytest.approx(theta, rel=1e-8)
    assert res.effect == pytest.approx(eff, rel=1e-8)
    assert res.se == pytest.approx(np.sqrt(var), rel=1e-8)
    plain = analyze(pd.DataFrame(rows), difference="absolute", cuped=False).to_frame().iloc[0]
    assert res.se < 0.8 * plain.se


@pytest.mark.parametrize("method,sm_name", [("bonferroni", "bonferroni"), ("holm", "holm"),
                                            ("bh", "fdr_bh")])
def test_corrections_match_multipletests_per_family(method, sm_name):
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(0, 1, 30) ** 3, [0.01, 0.01, 0.5], rng.uniform(0, 0.1, 17)])
    fam = np.repeat([2, 0, 1], [20, 13, 17])
    got = corrections.adjust(p, fam, method)
    for f in np.unique(fam):
        ref = multipletests(p[fam == f], method=sm_name)[1]
        assert got[fam == f] == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("correction", ["bonferroni", "holm", "bh"])
@pytest.mark.parametrize("method", ["frequentist", "sequential"])
def test_adjusted_intervals_exclude_zero_iff_adjusted_p_below_alpha(correction, method):
    rng = np.random.default_rng(2)
    k = 40
    n = rng.integers(3000, 8000, size=(k, 2)).astype(float)
    p0 = rng.uniform(0.05, 0.3, k)
    lift = rng.normal(0, 0.08, k)
    s = np.column_stack([rng.binomial(n[:, 0].astype(int), p0),
                         rng.binomial(n[:, 1].astype(int), np.clip(p0 * (1 + lift), 0, 1))])
    df = pd.DataFrame({"metric": np.repeat([f"m{i}" for i in range(k)], 2),
                       "variant": np.tile(["control", "t"], k), "kind": "proportion",
                       "n": n.ravel(), "sum": s.ravel()})
    res = analyze(df, method=method, correction=correction).to_frame()
    excl = (res.ci_lower > 0) | (res.ci_upper < 0)
    assert ((res.p_value_adjusted < 0.05) == excl).all()
    assert 0 < excl.sum() < k  # both cases occur
    if correction == "bonferroni" and method == "frequentist":
        z = stats.norm.ppf(1 - 0.05 / k / 2)
        assert (res.ci_upper - res.effect).to_numpy() == pytest.approx(z * res.se.to_numpy(), rel=1e-9)
    raw = analyze(df, method=method).to_frame()
    assert ((raw.ci_upper - raw.ci_lower) <= (res.ci_upper - res.ci_lower) + 1e-12).all()


def test_sequential_interval_matches_howard_normal_mixture_formula():
    df = pd.DataFrame({"metric": "m", "variant": ["control", "a"], "kind": "mean",
                       "n": [3000, 3100], "sum": [30000, 31500], "sum_squares": [330000, 350000]})
    row = analyze(df, method="sequential", difference="absolute", sequential_tuning=5000).to_frame().iloc[0]
    fx = analyze(df, difference="absolute").to_frame().iloc[0]
    # Howard et al. (2021) eq. (14), two-sided, in "intrinsic time" V = N with unit variance s^2
    alpha, N = 0.05, 6100.0
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / 5000
    s2 = fx.se**2 * N
    radius = np.sqrt((N + 1 / rho2) * np.log((N * rho2 + 1) / alpha**2)) * np.sqrt(s2) / N
    assert row.ci_upper - row.effect == pytest.approx(radius, rel=1e-10)
    assert radius > fx.ci_upper - fx.effect
    mart = np.exp(rho2 * (N * row.effect) ** 2 / (2 * s2 * (1 + rho2 * N))) / np.sqrt(1 + rho2 * N)
    assert row.p_value == pytest.approx(min(1.0, 1 / mart), rel=1e-10)


def test_correction_family_columns_choose_the_families():
    rng = np.random.default_rng(4)
    rows = []
    for seg in ("mobile", "desktop", "tablet"):
        for metric in ("m1", "m2"):
            for v in ("control", "a", "b"):
                n = int(rng.integers(800, 1200))
                rows.append({"dimension": "device", "segment": seg, "metric": metric,
                             "variant": v, "kind": "proportion", "n": n,
                             "sum": rng.binomial(n, 0.1 + 0.03 * (v == "a"))})
    df = pd.DataFrame(rows)
    fam = ["metric", "variant", "dimension"]
    res = analyze(df, correction="bh", correction_family=fam).to_frame()
    for _, g in res.groupby(fam):
        assert len(g) == 3
        assert g.p_value_adjusted.to_numpy() == pytest.approx(
            multipletests(g.p_value, method="fdr_bh")[1], abs=1e-12)
    default = analyze(df, correction="bh").to_frame()  # families: the segments
    for _, g in default.groupby(["dimension", "segment"]):
        assert g.p_value_adjusted.to_numpy() == pytest.approx(
            multipletests(g.p_value, method="fdr_bh")[1], abs=1e-12)
    with pytest.raises(Exception, match="correction_family"):
        analyze(df, correction="bh", correction_family=["nope"])


def test_one_sided_sequential_is_conservative_half_of_two_sided():
    df = pd.DataFrame({"metric": "m", "variant": ["control", "a"], "kind": "mean",
                       "n": [20000, 20000], "sum": [200000, 201500],
                       "sum_squares": [200000 * 10 + 19999 * 25, 201500**2 / 20000 + 19999 * 25]})
    two = analyze(df, method="sequential", difference="absolute").to_frame().iloc[0]
    up = analyze(df, method="sequential", difference="absolute", alternative="greater").to_frame().iloc[0]
    down = analyze(df, method="sequential", difference="absolute", alternative="less").to_frame().iloc[0]
    assert up.p_value == two.p_value and down.p_value == 1.0
    assert up.ci_lower == two.ci_lower and up.ci_upper == np.inf
