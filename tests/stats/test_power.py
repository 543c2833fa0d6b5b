"""Power, sample size, MDE and duration vs statsmodels' ``NormalIndPower``."""
from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower

from workbench.errors import ParameterError
from workbench.stats import duration, mde, power_table, sample_size


@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_power_matches_statsmodels(alternative, ratio):
    solver = NormalIndPower()
    # proportions: effect size with the unpooled variance of the two arms
    p1, rel = 0.1, 0.1
    p2 = p1 * (1 + rel)
    v = p1 * (1 - p1) + p2 * (1 - p2) / ratio
    es = (p2 - p1) / math.sqrt(v / (1 + 1 / ratio))
    ref = solver.solve_power(effect_size=es, alpha=0.05, power=0.8, ratio=ratio,
                             alternative=alternative)
    got = sample_size(p1, rel, alpha=0.05, power=0.8, ratio=ratio, alternative=alternative)
    assert got == pytest.approx(ref, rel=1e-6)
    # MDE for proportions: statsmodels power at the returned effect is the target
    n = 20_000
    d = mde(p1, n, relative=False, ratio=ratio, alternative=alternative)
    p2 = p1 + d
    es = d / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2) / ratio) / (1 + 1 / ratio))
    assert solver.power(es, n, 0.05, ratio=ratio, alternative=alternative) == pytest.approx(0.8, abs=1e-6)
    # means
    sd = 3.0
    # (statsmodels' own effect-size solver stops at power 0.79997; check the power instead)
    d = mde(10.0, n, kind="mean", sd=sd, relative=False, ratio=ratio, alternative=alternative)
    assert solver.power(d / sd, n, 0.05, ratio=ratio, alternative=alternative) == pytest.approx(0.8, abs=1e-9)
    n_ref = solver.solve_power(effect_size=0.5 / sd, alpha=0.05, power=0.8, ratio=ratio,
                               alternative=alternative)
    assert sample_size(10.0, 0.05, kind="mean", sd=sd, ratio=ratio,
                       alternative=alternative) == pytest.approx(n_ref, rel=1e-6)


def test_power_table_for_a_planned_duration():
    tab = power_table(0.1, users_per_day=3000, days=14, arms=3)
    assert list(tab.columns) == ["day", "units_per_arm", "mde"] and len(tab) == 14
    assert tab.units_per_arm.iloc[-1] == 14_000 and tab.mde.is_monotonic_decreasing
    assert tab.mde.iloc[-1] == pytest.approx(mde(0.1, 14_000))
    with pytest.raises(ParameterError):
        sample_size(1.5, 0.1)
    n_ref = NormalIndPower().solve_power(effect_size=0.5 / 3.0, alpha=0.05, power=0.8)
    assert duration(10.0, 0.05, users_per_day=100, kind="mean", sd=3.0, arms=3) == math.ceil(
        n_ref * 3 / 100)


# -- mid-experiment power and calibration helpers ------------------------------------------
def test_reached_power_matches_statsmodels():
    import numpy as np
    from statsmodels.stats.power import TTestIndPower

    from workbench.stats.power import reached_power

    sd, n1, ratio, delta = 3.0, 4000.0, 1.5, 0.15
    se = sd * math.sqrt(1 / n1 + 1 / (ratio * n1))
    got = reached_power(se, n1 * (1 + ratio), delta, days_elapsed=10.0)
    ref = NormalIndPower().power(delta / sd, n1, 0.05, ratio=ratio)
    assert got["power"].iloc[0] == pytest.approx(ref, rel=1e-9)
    need1 = NormalIndPower().solve_power(delta / sd, alpha=0.05, power=0.8, ratio=ratio)
    assert got["n_needed"].iloc[0] == pytest.approx(need1 * (1 + ratio), rel=1e-6)
    assert got["days_needed"].iloc[0] == pytest.approx(10 * need1 / n1, rel=1e-6)
    assert got["days_left"].iloc[0] == pytest.approx(max(0, 10 * need1 / n1 - 10), rel=1e-6)
    # the t-test's power is the same at these sizes
    assert got["power"].iloc[0] == pytest.approx(
        TTestIndPower().power(delta / sd, n1, 0.05, ratio=ratio), abs=1e-3)
    assert np.isnan(reached_power(np.nan, 10, 0.1)["power"].iloc[0])
    with pytest.raises(ParameterError):
        reached_power(0.1, 10, 0.0)


def test_reached_power_against_a_simulation_with_known_truth():
    import numpy as np

    from workbench.stats.power import reached_power

    rng = np.random.default_rng(1)
    n, delta, sd, k = 500, 0.3, 2.0, 4000
    a = rng.normal(0, sd, (k, n))
    b = rng.normal(delta, sd, (k, n))
    se = np.sqrt(a.var(1, ddof=1) / n + b.var(1, ddof=1) / n)
    hits = np.abs((b.mean(1) - a.mean(1)) / se) > 1.959964
    got = reached_power(sd * math.sqrt(2 / n), 2 * n, delta)["power"].iloc[0]
    assert abs(hits.mean() - got) < 4 * math.sqrt(got * (1 - got) / k)
    # sequential: the confidence sequence at N excludes 0 as often as the formula says
    from workbench.stats import sequential

    _, p, _, _ = sequential.test(b.mean(1) - a.mean(1), se, 2 * n, 0.05)
    seq = reached_power(sd * math.sqrt(2 / n), 2 * n, delta, method="sequential")
    assert abs((p < 0.05).mean() - seq["power"].iloc[0]) < 4 * math.sqrt(0.25 / k)


def test_wilson_interval_and_calibration_match_statsmodels_and_scipy():
    import numpy as np
    from scipy import stats as sps
    from statsmodels.stats.proportion import proportion_confint

    from workbench.stats.power import calibration, wilson_interval

    lo, hi = wilson_interval(np.array([0, 7, 40]), np.array([50, 200, 40]))
    ref = proportion_confint(np.array([0, 7, 40]), np.array([50, 200, 40]), method="wilson")
    np.testing.assert_allclose(lo, ref[0], atol=1e-12)
    np.testing.assert_allclose(hi, ref[1], atol=1e-12)
    p = np.random.default_rng(2).random(300)
    cal = calibration(np.r_[p, np.nan])
    assert cal["replicates"] == 300 and cal["false_positive_rate"] == (p < 0.05).mean()
    assert cal["ks_p_value"] == pytest.approx(sps.kstest(p, "uniform").pvalue)
