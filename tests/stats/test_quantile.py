"""Quantile metrics in the stats engine (outer CI of Deng, Knoblich & Lu 2018), checked against a
bootstrap on the unit values, the exact binomial order-statistic interval, the asymptotic
closed form sqrt(q(1-q)/n)/f(Q) and, in the slow suite, a coverage simulation."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from workbench import messages
from workbench.errors import DegenerateDataWarning, StatsInputError
from workbench.stats import analyze
from workbench.stats import quantile as sq


def _frame(arms: dict, q: float, metric: str = "m") -> pd.DataFrame:
    rows = [{"metric": metric, "variant": v, "kind": "quantile", **sq.unit_stats(x, q)}
            for v, x in arms.items()]
    return pd.DataFrame(rows)


def _lognormal_arms(seed=1, n=5000, shift=0.1):
    rng = np.random.default_rng(seed)
    return {"control": rng.lognormal(0.0, 1.0, n), "treatment": rng.lognormal(shift, 1.0, n)}


def _bootstrap(arms, q, b=2000, seed=2):
    rng = np.random.default_rng(seed)
    c, t = arms["control"], arms["treatment"]
    qc = np.quantile(c[rng.integers(0, c.size, (b, c.size))], q, axis=1)
    qt = np.quantile(t[rng.integers(0, t.size, (b, t.size))], q, axis=1)
    return qt - qc, qt / qc - 1


@pytest.mark.parametrize("q", [0.5, 0.9])
def test_effect_and_se_agree_with_bootstrap(q):
    arms = _lognormal_arms()
    b = 2000
    boot_abs, boot_rel = _bootstrap(arms, q, b)
    n = arms["control"].size
    # the outer CI's SE is a spacing of k = 2 Z sqrt(nq(1-q)) order statistics: relative noise
    # ~ 1/sqrt(k); the bootstrap SE's Monte Carlo error is ~ 1/sqrt(2(b-1)); 3 sigma of both
    k = 2 * sq.Z * np.sqrt(n * q * (1 - q))
    tol_se = 3 * np.sqrt(1 / k + 1 / (2 * (b - 1)))
    for diff, boot in (("absolute", boot_abs), ("relative", boot_rel)):
        row = analyze(_frame(arms, q), difference=diff).table.iloc[0]
        assert row["error_message"] == ""
        sd = boot.std(ddof=1)
        # the point estimate vs the bootstrap mean: Monte Carlo error sd/sqrt(b)
        assert abs(row["effect"] - boot.mean()) < 4 * sd / np.sqrt(b) + 0.05 * sd
        assert abs(row["se"] / sd - 1) < tol_se, (diff, row["se"], sd)
        # and the interval vs the bootstrap percentile interval, to the same precision
        lo, hi = np.quantile(boot, [0.025, 0.975])
        assert abs(row["ci_lower"] - lo) < tol_se * (hi - lo) / 2
        assert abs(row["ci_upper"] - hi) < tol_se * (hi - lo) / 2


def test_bootstrap_check_can_fail():
    """A standard error off by 50 % (e.g. one arm's variance forgotten: -29 %, or the density
    misestimated) is caught by the tolerance above (~26 % at n = 5,000, q = 0.5)."""
    arms = _lognormal_arms()
    boot_abs, _ = _bootstrap(arms, 0.5)
    row = analyze(_frame(arms, 0.5), difference="absolute").table.iloc[0]
    k = 2 * sq.Z * np.sqrt(5000 * 0.25)
    tol_se = 3 * np.sqrt(1 / k + 1 / 3998)
    assert abs(1.5 * row["se"] / boot_abs.std(ddof=1) - 1) > tol_se
    assert abs(row["se"] / np.sqrt(2) / boot_abs.std(ddof=1) - 1) > tol_se


def test_interval_ranks_match_the_binomial_order_statistic_interval():
    """quantile_lower/upper sit within 2 ranks of the exact distribution-free interval
    [X_(l), X_(u)], l = Binom(n, q).ppf(0.025), u = Binom(n, q).ppf(0.975) + 1."""
    rng = np.random.default_rng(3)
    for n, q in ((1000, 0.5), (5000, 0.9), (20_000, 0.99)):
        x = np.sort(rng.lognormal(0, 1, n))
        r = sq.unit_stats(x, q)
        lo_rank = int(stats.binom.ppf(0.025, n, q))
        hi_rank = int(stats.binom.ppf(0.975, n, q)) + 1
        assert x[lo_rank - 1 - 2] <= r["quantile_lower"] <= x[lo_rank - 1 + 2]
        assert x[hi_rank - 1 - 2] <= r["quantile_upper"] <= x[hi_rank - 1 + 2]
        assert r["quantile"] == pytest.approx(np.quantile(x, q), rel=1e-12)


def test_se_matches_the_asymptotic_closed_form():
    """Mean of the backed-out SE over 500 samples vs sqrt(q(1-q)/n) / f(Q) (lognormal density)."""
    rng = np.random.default_rng(4)
    n, reps = 4000, 500
    x = rng.lognormal(0.0, 1.0, (reps, n))
    for q in (0.5, 0.9):
        lo, hi = sq.probabilities(q, sq.unit_cdf_se(q, n))
        ql, qh = np.quantile(x, [float(lo), float(hi)], axis=1)
        se = (qh - ql) / (2 * sq.Z)
        qv = np.exp(special.ndtri(q))
        f = stats.lognorm(s=1.0).pdf(qv)
        truth = np.sqrt(q * (1 - q) / n) / f
        assert abs(se.mean() / truth - 1) < 0.02
        # and the spread of the sample quantile itself
        assert abs(np.quantile(x, q, axis=1).std(ddof=1) / truth - 1) < 0.08


def _clustered(rng, users, shift=0.0):
    """Events of users with a user effect (strong intra-cluster correlation)."""
    k = rng.poisson(5, users) + 1
    user_effect = rng.normal(0, 0.8, users)
    cluster = np.repeat(np.arange(users), k)
    values = np.exp(shift + user_effect[cluster] + rng.normal(0, 0.6, cluster.size))
    return values, cluster


def _weighted_quantile(sorted_values, weights, q):
    cw = np.cumsum(weights, axis=1)
    target = q * cw[:, -1:]
    idx = (cw < target).sum(axis=1)
    return sorted_values[np.minimum(idx, sorted_values.size - 1)]


def test_event_level_se_agrees_with_a_cluster_bootstrap():
    rng = np.random.default_rng(5)
    q, users, b = 0.9, 3000, 1000
    values, cluster = _clustered(rng, users)
    r = sq.cluster_stats(values, cluster, q)
    se = (r["quantile_upper"] - r["quantile_lower"]) / (2 * sq.Z)
    order = np.argsort(values)
    sv, sc = values[order], cluster[order]
    boot = np.empty(b)
    for i in range(0, b, 100):  # resample users; an event weighs its user's multiplicity
        mult = np.stack([np.bincount(rng.integers(0, users, users), minlength=users)
                         for _ in range(100)])
        boot[i:i + 100] = _weighted_quantile(sv, mult[:, sc], q)
    sd = boot.std(ddof=1)
    k = 2 * sq.Z * np.sqrt(values.size * q * (1 - q))
    assert abs(se / sd - 1) < 3 * np.sqrt(1 / k + 1 / (2 * (b - 1))) + 0.05
    # ignoring the clustering (events as independent units) understates the SE badly
    naive = sq.unit_stats(values, q)
    naive_se = (naive["quantile_upper"] - naive["quantile_lower"]) / (2 * sq.Z)
    assert naive_se < 0.7 * sd
    assert r["n"] == users and r["quantile"] == pytest.approx(np.quantile(values, q))


def test_cluster_cdf_se_equals_unit_formula_for_one_event_per_unit():
    x = np.random.default_rng(6).lognormal(0, 1, 2000)
    a = sq.cluster_stats(x, np.arange(x.size), 0.9)
    b = sq.unit_stats(x, 0.9)
    # with d_i = 1 the delta method is the n-1 sample variance of the indicator: p(1-p)n/(n-1)
    assert a["quantile_lower"] <= b["quantile_lower"] + 1e-12
    qv = np.quantile(x, 0.9)
    p = np.mean(x <= qv)
    se = sq.cluster_cdf_se(x.size, p * x.size, p * x.size, x.size, x.size, p * x.size)
    assert se == pytest.approx(np.sqrt(p * (1 - p) / (x.size - 1)), rel=1e-9)


def test_interval_and_p_value_are_a_z_test_on_the_backed_out_se():
    arms = _lognormal_arms(seed=7, n=3000)
    df = _frame(arms, 0.9)
    row = analyze(df, difference="absolute", alpha=0.1).table.iloc[0]
    se = np.hypot(*[(r.quantile_upper - r.quantile_lower) / (2 * sq.Z) for r in df.itertuples()])
    eff = df["quantile"].iat[1] - df["quantile"].iat[0]
    assert row["effect"] == pytest.approx(eff, rel=1e-12)
    assert row["se"] == pytest.approx(se, rel=1e-12)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(eff / se)), rel=1e-9)
    assert row["ci_lower"] == pytest.approx(eff - stats.norm.ppf(0.95) * se, rel=1e-9)
    assert np.isinf(row["dof"]) or np.isnan(row["dof"])


def test_bayesian_is_a_gaussian_approximation_with_the_same_se():
    df = _frame(_lognormal_arms(seed=8, n=3000), 0.5)
    freq = analyze(df, difference="absolute").table.iloc[0]
    bayes = analyze(df, method="bayesian", prior="flat", difference="absolute").table.iloc[0]
    assert bayes["effect"] == pytest.approx(freq["effect"], rel=1e-9)
    assert bayes["se"] == pytest.approx(freq["se"], rel=1e-9)
    assert bayes["chance_to_win"] == pytest.approx(stats.norm.cdf(freq["effect"] / freq["se"]))


def test_quantile_rows_mix_with_other_kinds_and_skip_cuped():
    q = _frame(_lognormal_arms(seed=9, n=2000), 0.5)
    means = pd.DataFrame({"metric": "rev", "variant": ["control", "treatment"], "kind": "mean",
                          "n": 2000, "sum": [2000.0, 2100.0], "sum_squares": [6000.0, 6500.0],
                          "pre_sum": [1000.0, 1010.0], "pre_sum_squares": [3000.0, 3050.0],
                          "pre_sum_product": [2500.0, 2600.0]})
    res = analyze(pd.concat([means, q], ignore_index=True), cuped=True).table
    assert list(res["error_message"]) == ["", ""]
    assert list(res["cuped"]) == [True, False]
    only_q = analyze(q, method="sequential").table
    assert only_q["error_message"].iat[0] == ""


def test_degenerate_quantile_rows_get_an_error_message():
    # too few units for the order statistics at q +/- Z sigma (p99 of 50 units)
    few = _frame({"control": np.arange(50.0), "treatment": np.arange(50.0) + 1}, 0.99)
    assert few["quantile_upper"].isna().all()
    # a median of zeros in both arms: no spread
    zeros = _frame({"control": np.zeros(500), "treatment": np.zeros(500)}, 0.5, metric="z")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDataWarning)
        with pytest.raises(DegenerateDataWarning):
            analyze(pd.concat([few, zeros], ignore_index=True))
    res = analyze(pd.concat([few, zeros], ignore_index=True), warn=False).table
    assert list(res["error_message"]) == [messages.QUANTILE_TOO_FEW, messages.ZERO_VARIANCE]
    rel = analyze(_frame({"control": np.zeros(500), "treatment": np.ones(500)}, 0.5),
                  warn=False).table
    assert rel["error_message"].iat[0] in (messages.ZERO_BASELINE, messages.ZERO_VARIANCE)


def test_malformed_quantile_rows_raise():
    df = _frame(_lognormal_arms(seed=10, n=500), 0.5)
    bad = df.copy()
    bad.loc[0, "quantile_level"] = 1.5
    with pytest.raises(StatsInputError, match="quantile_level"):
        analyze(bad)
    bad = df.copy()
    bad.loc[1, "quantile_lower"] = bad.loc[1, "quantile"] + 1
    with pytest.raises(StatsInputError, match="quantile_lower"):
        analyze(bad)
    with pytest.raises(StatsInputError, match="quantile_upper"):
        analyze(df.drop(columns=["quantile_upper"]))


def _coverage(q, diff, reps=10_000, n=2000, seed=11):
    rng = np.random.default_rng(seed)
    lo, hi = sq.probabilities(q, sq.unit_cdf_se(q, n))
    frames = []
    for v, mu in (("control", 0.0), ("treatment", 0.1)):
        out = np.empty((reps, 3))
        for s in range(0, reps, 500):
            x = rng.lognormal(mu, 1.0, (min(500, reps - s), n))
            out[s:s + 500] = np.quantile(x, [q, float(lo), float(hi)], axis=1).T
        frames.append(pd.DataFrame({
            "metric": np.arange(reps).astype(str), "variant": v, "kind": "quantile", "n": n,
            "quantile_level": q, "quantile": out[:, 0], "quantile_lower": out[:, 1],
            "quantile_upper": out[:, 2]}))
    res = analyze(pd.concat(frames, ignore_index=True), difference=diff).table
    qc, qt = np.exp(special.ndtri(q)), np.exp(0.1 + special.ndtri(q))
    truth = qt - qc if diff == "absolute" else qt / qc - 1
    return np.mean((res["ci_lower"] <= truth) & (truth <= res["ci_upper"]))


@pytest.mark.slow
@pytest.mark.parametrize("q", [0.5, 0.9])
@pytest.mark.parametrize("diff", ["absolute", "relative"])
def test_coverage_on_lognormal_data(q, diff):
    """10,000 seeded experiments of 2 x 2,000 lognormal(sigma=1) units, true shift 0.1 on the
    log scale: the 95 % interval covers the true difference of quantiles 95 % +/- 1 % of the time
    (Monte Carlo sd 0.22 %; ~1 s each)."""
    cover = _coverage(q, diff)
    assert 0.94 <= cover <= 0.96, cover
