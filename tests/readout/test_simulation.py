"""A/A and power simulation: the engine hash vs numpy, re-randomisation vs numpy, calibration."""
from __future__ import annotations

import warnings

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower

import workbench as wb
from workbench.readout.simulation import PRIME, assign_numpy, hash_expr, hash_numpy


def _units(n=4000, seed=3):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"uid": np.arange(n) * 7 + 11, "variant": rng.choice(["A", "B"], n),
                         "y": rng.lognormal(0, 1, n), "c": (rng.random(n) < 0.2).astype(float)})


def test_hash_is_the_same_in_duckdb_and_numpy_and_uniform():
    con = ibis.duckdb.connect()
    ids = np.r_[np.arange(-50, 5000), 2**40 + np.arange(50)]
    t = ibis.memtable({"u": ids.astype(np.int64)})
    reps = ibis.memtable({"r": np.arange(3, dtype=np.int64)})
    j = t.cross_join(reps)
    got = con.execute(j.mutate(h=hash_expr(j.u, j.r, seed=5)).order_by(["r", "u"]))
    want = hash_numpy(got["u"].to_numpy(), got["r"].to_numpy(), seed=5)
    np.testing.assert_array_equal(got["h"].to_numpy(), want)
    # uniform over 20 bins (chi-square), and replicates independent of each other
    h = hash_numpy(np.arange(100_000), 0, seed=1)
    assert h.min() >= 0 and h.max() < PRIME
    counts = np.bincount((h * 20 // PRIME).astype(int), minlength=20)
    assert sps.chisquare(counts).pvalue > 1e-3
    a0 = assign_numpy(np.arange(100_000), 0, ["a", "b"], [0.5, 0.5], 1) == "a"
    a1 = assign_numpy(np.arange(100_000), 1, ["a", "b"], [0.5, 0.5], 1) == "a"
    table = pd.crosstab(a0, a1).to_numpy()
    assert sps.chi2_contingency(table).pvalue > 1e-3


def test_replicates_equal_a_numpy_rerandomisation():
    df = _units()
    exp = wb.Experiment.from_units(df, "variant", {"y": wb.mean("y"), "c": wb.proportion("c")},
                                   unit="uid", planned_weights={"A": 0.3, "B": 0.7})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = exp.simulate(replicates=5, seed=9, difference="absolute")
    s = sim.stats.set_index(["metric", "replicate", "variant"])
    for r in range(5):
        arm = assign_numpy(df["uid"], r, ["A", "B"], [0.3, 0.7], 9)
        for v in ("A", "B"):
            sel = arm == v
            assert s.loc[("y", r, v), "n"] == sel.sum()
            assert s.loc[("y", r, v), "sum"] == pytest.approx(df.y[sel].sum(), rel=1e-12)
            assert s.loc[("y", r, v), "sum_squares"] == pytest.approx((df.y[sel] ** 2).sum(),
                                                                      rel=1e-12)
            assert s.loc[("c", r, v), "sum"] == df.c[sel].sum()
            # Welch's p-value per replicate, from scipy on the raw values
        p = sim.runs.set_index(["metric", "replicate"]).loc[("y", r), "p_value"]
        ref = sps.ttest_ind(df.y[arm == "B"], df.y[arm == "A"], equal_var=False).pvalue
        assert p == pytest.approx(ref, rel=1e-6)
    assert list(sim.table.columns[:9]) == ["metric", "variant", "replicates", "lift",
                                           "false_positive_rate", "fpr_ci_lower",
                                           "fpr_ci_upper", "ks_p_value", "power"]


@pytest.mark.slow
def test_aa_calibration_and_power_for_an_injected_lift():
    rng = np.random.default_rng(0)
    n = 6000
    df = pd.DataFrame({"uid": np.arange(n), "variant": rng.choice(["A", "B"], n),
                       "y": rng.normal(10, 3, n)})
    exp = wb.Experiment.from_units(df, "variant", {"y": wb.mean("y")}, unit="uid")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = exp.simulate(replicates=400, lift=0.02, seed=4, difference="absolute")
    row = sim.table.iloc[0]
    k = 400
    # binomial tolerance around alpha (99.9 %)
    lo, hi = sps.binom.ppf([0.0005, 0.9995], k, 0.05) / k
    assert lo <= row["false_positive_rate"] <= hi
    assert row["ks_p_value"] > 1e-3
    # analytical power of the z-test for a 2 % lift of the mean, with about n/2 units per arm
    es = 0.02 * df.y.mean() / df.y.std()
    ref = NormalIndPower().power(es, n / 2, 0.05)
    assert abs(row["power"] - ref) < 4 * np.sqrt(ref * (1 - ref) / k)
