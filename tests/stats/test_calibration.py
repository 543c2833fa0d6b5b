"""Calibration by simulation (seeded): sufficient statistics are simulated directly, and
thousands of experiments are analysed in one ``analyze`` call."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.stats import analyze

ALPHA = 0.05


def _within(rate, target, k, z=3.5):
    return abs(rate - target) < z * np.sqrt(target * (1 - target) / k)


def _normal_stats(rng, n, mu, sd, size):
    """Exact sampling distribution of (sum, sum of squares) for normal data."""
    s = rng.normal(n * mu, np.sqrt(n) * sd, size)
    ss = sd**2 * rng.chisquare(n - 1, size) + s**2 / n
    return s, ss


def _frame(metric_ids, n_c, s_c, ss_c, n_t, s_t, ss_t, kind):
    k = len(metric_ids)
    n_c, n_t = np.broadcast_to(n_c, k), np.broadcast_to(n_t, k)
    df = pd.DataFrame({"metric": np.repeat(metric_ids, 2), "variant": np.tile(["control", "t"], k),
                       "kind": kind, "n": np.column_stack([n_c, n_t]).ravel(),
                       "sum": np.column_stack([s_c, s_t]).ravel()})
    if ss_c is not None:
        df["sum_squares"] = np.column_stack([ss_c, ss_t]).ravel()
    return df


@pytest.mark.parametrize("kind", ["mean", "proportion"])
def test_aa_false_positive_rate_is_alpha(kind):
    rng = np.random.default_rng(20)
    k, n = 4000, 300
    ids = np.arange(k).astype(str)
    if kind == "mean":
        s_c, ss_c = _normal_stats(rng, n, 5.0, 2.0, k)
        s_t, ss_t = _normal_stats(rng, n, 5.0, 2.0, k)
    else:
        s_c, s_t = rng.binomial(n, 0.2, k), rng.binomial(n, 0.2, k)
        ss_c = ss_t = None
    df = _frame(ids, n, s_c, ss_c, n, s_t, ss_t, kind)
    for difference in ("absolute", "relative"):
        res = analyze(df, difference=difference).to_frame()
        assert (res.error_message == "").all()
        fpr = (res.p_value < ALPHA).mean()
        assert _within(fpr, ALPHA, k), fpr
    if kind == "mean":  # p-values are uniform under the null (binomial ones are discrete)
        assert stats.kstest(res.p_value, "uniform").pvalue > 1e-3


def test_interval_coverage_with_a_true_effect():
    rng = np.random.default_rng(21)
    k, n, p0, lift = 4000, 4000, 0.1, 0.05
    s_c, s_t = rng.binomial(n, p0, k), rng.binomial(n, p0 * (1 + lift), k)
    df = _frame(np.arange(k).astype(str), n, s_c, None, n, s_t, None, "proportion")
    rel = analyze(df, difference="relative").to_frame()
    cov = ((rel.ci_lower < lift) & (lift < rel.ci_upper)).mean()
    assert _within(cov, 0.95, k), cov
    ab = analyze(df, difference="absolute").to_frame()
    cov = ((ab.ci_lower < p0 * lift) & (p0 * lift < ab.ci_upper)).mean()
    assert _within(cov, 0.95, k), cov
    bay = analyze(df, difference="absolute", method="bayesian", prior="flat").to_frame()
    cov = ((bay.ci_lower < p0 * lift) & (p0 * lift < bay.ci_upper)).mean()
    assert _within(cov, 0.95, k), cov


def test_sequential_survives_daily_peeking_while_fixed_horizon_does_not():
    rng = np.random.default_rng(22)
    k, days, per_day = 2000, 20, 150
    # daily increments of (sum, sum of squares) per arm, accumulated: looks at days 1..20
    inc = [_normal_stats(rng, per_day, 3.0, 2.0, (k, days)) for _ in range(2)]
    cum = [(np.cumsum(s, axis=1), np.cumsum(ss, axis=1)) for s, ss in inc]
    n = per_day * np.arange(1, days + 1)
    ids = np.repeat(np.arange(k).astype(str), days)
    date = np.tile(np.arange(days), k)
    df = pd.DataFrame({"metric": np.repeat(ids, 2), "date": np.repeat(date, 2),
                       "variant": np.tile(["control", "t"], k * days), "kind": "mean",
                       "n": np.repeat(np.tile(n, k), 2),
                       "sum": np.column_stack([cum[0][0].ravel(), cum[1][0].ravel()]).ravel(),
                       "sum_squares": np.column_stack([cum[0][1].ravel(), cum[1][1].ravel()]).ravel()})
    fixed = analyze(df, difference="absolute").to_frame()
    seq = analyze(df, method="sequential", difference="absolute").to_frame()
    fixed_any = (fixed.p_value < ALPHA).to_numpy().reshape(k, days).any(axis=1).mean()
    seq_any = (seq.p_value < ALPHA).to_numpy().reshape(k, days).any(axis=1).mean()
    # a fixed-horizon test peeked at 20 times rejects ~25% of A/A tests
    assert fixed_any > 0.18, fixed_any
    assert seq_any <= ALPHA, seq_any
    # the confidence sequence covers the true effect (0) at every look at once
    covered = ((seq.ci_lower < 0) & (seq.ci_upper > 0)).to_numpy().reshape(k, days).all(axis=1)
    assert covered.mean() >= 0.95 - 3.5 * np.sqrt(0.05 * 0.95 / k)


def test_cuped_cuts_variance_by_rho_squared():
    rng = np.random.default_rng(23)
    k, n, rho = 3000, 400, 0.7
    cov = np.array([[4.0, rho * 2 * 3], [rho * 2 * 3, 9.0]])  # (y, x), sd 2 and 3
    rows = []
    for arm in ("control", "t"):
        sums = rng.multivariate_normal([n * 5.0, n * 10.0], n * cov, k)
        scatter = stats.wishart.rvs(df=n - 1, scale=cov, size=k, random_state=rng)
        yy = scatter[:, 0, 0] + sums[:, 0] ** 2 / n
        xx = scatter[:, 1, 1] + sums[:, 1] ** 2 / n
        xy = scatter[:, 0, 1] + sums[:, 0] * sums[:, 1] / n
        rows.append(pd.DataFrame({"metric": np.arange(k).astype(str), "variant": arm,
                                  "kind": "mean", "n": n, "sum": sums[:, 0], "sum_squares": yy,
                                  "pre_sum": sums[:, 1], "pre_sum_squares": xx,
                                  "pre_sum_product": xy}))
    df = pd.concat(rows, ignore_index=True)
    adj = analyze(df, difference="absolute").to_frame()
    raw = analyze(df, difference="absolute", cuped=False).to_frame()
    assert adj.cuped.all() and not raw.cuped.any()
    ratio = adj.effect.var() / raw.effect.var()
    assert ratio == pytest.approx(1 - rho**2, abs=0.06)
    assert (adj.se**2).mean() / (raw.se**2).mean() == pytest.approx(1 - rho**2, abs=0.02)
    assert _within((adj.p_value < ALPHA).mean(), ALPHA, k)
