"""Multiple-testing corrections vs statsmodels' ``multipletests`` (holm, fdr_bh, bonferroni)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from workbench.stats import analyze, corrections

SM_NAMES = {"bonferroni": "bonferroni", "holm": "holm", "bh": "fdr_bh"}


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


# statsmodels' Holm reference takes ~20 s per case on a loaded 2-core machine: one seed in the
# quick suite, the other four in the slow one
_CASES = [pytest.param(m, s, marks=[pytest.mark.slow] if m == "holm" and s else [])
          for m in ("bonferroni", "holm", "bh") for s in range(5)]


@pytest.mark.parametrize(("method", "seed"), _CASES)
def test_adjust_matches_multipletests_with_ties_nans_and_many_families(method, seed):
    rng = np.random.default_rng(seed)
    size = 300
    p = rng.uniform(0, 1, size) ** rng.uniform(1, 4)
    p[rng.integers(0, size, 20)] = 0.01  # ties
    p[rng.integers(0, size, 10)] = np.nan  # rows that could not be computed
    fam = rng.integers(0, 25, size)
    got = corrections.adjust(p, fam, method)
    assert np.isnan(got[np.isnan(p)]).all()
    for f in np.unique(fam):
        sel = (fam == f) & np.isfinite(p)
        if sel.any():
            ref = multipletests(p[sel], method=SM_NAMES[method])[1]
            assert got[sel] == pytest.approx(ref, abs=1e-12)
    # one family (the default) is the plain call
    ok = np.isfinite(p)
    assert corrections.adjust(p, None, method)[ok] == pytest.approx(
        multipletests(p[ok], method=SM_NAMES[method])[1], abs=1e-12)


def test_levels_normalise_and_adjusted_alpha():
    p = np.array([0.001, 0.02, 0.03, 0.2, np.nan])
    for method, expected in (("bonferroni", [1 / 4] * 4), ("holm", [1 / 4, 1 / 3, 1 / 2, 1]),
                             ("bh", [1 / 4, 2 / 4, 3 / 4, 1])):
        adj, lev = corrections.adjust(p, method=method, return_levels=True)
        assert lev[:4] == pytest.approx(expected) and np.isnan(lev[4])
        a = corrections.adjusted_alpha(p[:4], adj[:4], 0.05, lev[:4])
        # an interval at level a excludes 0 exactly when the adjusted p is below alpha
        assert ((p[:4] < a) == (adj[:4] < 0.05)).all() and (a <= 0.05).all()
    same, ones = corrections.adjust(p, method=None, return_levels=True)
    assert np.array_equal(same, p, equal_nan=True) and (ones == 1).all()
    assert corrections.normalise("fdr_bh") == "bh" and corrections.normalise("Holm") == "holm"
    assert corrections.normalise("none") is None and corrections.normalise(None) is None
    with pytest.raises(ValueError, match="unknown correction 'sidak'"):
        corrections.normalise("sidak")
    assert np.isnan(corrections.adjust(np.array([np.nan, np.nan]), method="holm")).all()


def test_bh_controls_the_false_discovery_rate_by_simulation():
    rng = np.random.default_rng(12)
    m, m1, reps = 50, 10, 400
    fdp = []
    for _ in range(reps):
        z = rng.normal(size=m)
        z[:m1] += 3.0
        p = 2 * stats.norm.sf(np.abs(z))
        rejected = corrections.adjust(p, method="bh") < 0.1
        fdp.append(rejected[m1:].sum() / max(rejected.sum(), 1))
    # BH at q = 0.1 with independent tests: FDR = q m0 / m = 0.08 (Benjamini & Hochberg 1995)
    assert np.mean(fdp) == pytest.approx(0.1 * (m - m1) / m, abs=3.5 * np.std(fdp) / np.sqrt(reps))
