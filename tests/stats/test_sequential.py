"""Always-valid confidence sequences and mixture-SPRT p-values vs Howard et al. (2021)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.stats import analyze, sequential


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


def test_one_sided_sequential_is_conservative_half_of_two_sided():
    df = pd.DataFrame({"metric": "m", "variant": ["control", "a"], "kind": "mean",
                       "n": [20000, 20000], "sum": [200000, 201500],
                       "sum_squares": [200000 * 10 + 19999 * 25, 201500**2 / 20000 + 19999 * 25]})
    two = analyze(df, method="sequential", difference="absolute").to_frame().iloc[0]
    up = analyze(df, method="sequential", difference="absolute", alternative="greater").to_frame().iloc[0]
    down = analyze(df, method="sequential", difference="absolute", alternative="less").to_frame().iloc[0]
    assert up.p_value == two.p_value and down.p_value == 1.0
    assert up.ci_lower == two.ci_lower and up.ci_upper == np.inf


@pytest.mark.parametrize("tuning", [1000, 5000, 50_000])
def test_boundary_is_tightest_at_the_tuning_sample_size(tuning):
    alpha, se1 = 0.05, 1.0  # per-unit sd 1: se = 1/sqrt(N)
    rho2 = sequential.rho_squared(alpha, tuning)
    ns = np.geomspace(tuning / 20, tuning * 20, 2001)
    # normalised half-width h * sqrt(N) / s, minimised near where the mixture was tuned (the
    # closed-form rho is Howard et al.'s approximation of the optimum: within a few per cent)
    h = sequential.halfwidth(se1 / np.sqrt(ns), ns, alpha, rho2) * np.sqrt(ns)
    assert ns[np.argmin(h)] == pytest.approx(tuning, rel=0.05)
    # closed form of Howard et al. eq. (14) at N = tuning
    n = float(tuning)
    ref = np.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))
    assert sequential.halfwidth(np.array([1 / np.sqrt(n)]), np.array([n]), alpha, rho2)[0] == \
        pytest.approx(ref, rel=1e-12)
