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
