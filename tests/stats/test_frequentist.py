"""Fixed-horizon frequentist comparisons (Welch t, z-test, delta-method lift) vs statsmodels/scipy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats import proportion as smprop
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from workbench.stats import analyze


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
