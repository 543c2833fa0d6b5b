"""THE SRM test against scipy.stats.chisquare, its degenerate cases, and the engine's use of it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from workbench import messages
from workbench.stats import analyze
from workbench.stats.srm import SRM_THRESHOLD, p_values, srm


@pytest.mark.parametrize("counts,weights", [
    ({"a": 5000, "b": 5100, "c": 4900}, {"a": 1, "b": 1, "c": 1}),
    ({"a": 5000, "b": 5600}, {"a": 0.5, "b": 0.5}),
    ({"a": 2000, "b": 1000}, {"a": 2 / 3, "b": 1 / 3}),
    ({"a": 812, "b": 1203, "c": 990}, {"a": 0.25, "b": 0.4, "c": 0.35}),
])
def test_matches_scipy(counts, weights):
    obs = np.array(list(counts.values()), float)
    w = np.array([weights[k] for k in counts], float)
    ref = st.chisquare(obs, obs.sum() * w / w.sum())
    r = srm(counts, weights)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert r.flagged == (ref.pvalue < SRM_THRESHOLD)
    assert (r.message == "") == (not r.flagged)


def test_vectorised_rows_match_scipy_row_by_row():
    rng = np.random.default_rng(3)
    obs = rng.integers(50, 5000, size=(40, 3)).astype(float)
    w = np.array([0.5, 0.25, 0.25])
    stat, p = p_values(obs, w)
    for i, row in enumerate(obs):
        ref = st.chisquare(row, row.sum() * w)
        assert p[i] == pytest.approx(ref.pvalue, rel=1e-9)
        assert stat[i] == pytest.approx(ref.statistic, rel=1e-9)


def test_empty_and_unplanned_arms_never_pass():
    r = srm({"a": 3, "b": 2}, {"a": 1, "b": 1, "c": 1})  # c planned, no units
    assert r.p_value == 0.0 and r.flagged and r.message == messages.SRM_EMPTY_VARIANT
    r = srm({"a": 100, "b": 100, "c": 5}, {"a": 0.5, "b": 0.5})  # c unplanned, has units
    assert r.p_value == 0.0 and np.isinf(r.statistic)
    stat, p = p_values([[0, 0], [10, 12]], [0.5, 0.5])
    assert np.isnan(p[0]) and p[1] == pytest.approx(st.chisquare([10, 12]).pvalue)


def test_threshold_and_summary():
    r = srm({"a": 5000, "b": 5600}, {"a": 1, "b": 1}, threshold=1e-12)
    assert not r.flagged and r.threshold == 1e-12
    assert str(r.summary()).startswith("SRM chi-square") and "<table" in r._repr_html_()


def test_the_engine_uses_the_same_test():
    """analyze's per-group SRM p-values are srm()'s on the largest n per variant and group."""
    rows = []
    for seg, ns in (("x", (1000, 1100)), ("y", (500, 420))):
        for v, n in zip(("control", "b"), ns):
            rows.append({"metric": "m", "variant": v, "kind": "proportion", "n": n,
                         "sum": n // 10, "dimension": "d", "segment": seg})
    stats = pd.DataFrame(rows)
    res = analyze(stats, planned_weights={"control": 0.5, "b": 0.5}).to_frame()
    got = res.set_index("segment")["srm_p_value"]
    assert got["x"] == pytest.approx(srm({"control": 1000, "b": 1100}).p_value, rel=1e-12)
    assert got["y"] == pytest.approx(st.chisquare([500, 420]).pvalue, rel=1e-10)


def test_srm_matches_chisquare_and_flags_mismatch():
    r = srm({"control": 5000, "a": 5100, "b": 4900}, {"control": 1, "a": 1, "b": 1})
    ref = st.chisquare([5000, 5100, 4900])
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12) and not r.flagged and r.message == ""
    r = srm({"control": 5000, "a": 5600}, {"control": 0.5, "a": 0.5})
    assert r.flagged and r.p_value < 1e-3 and "sample ratio mismatch" in r.message
    r = srm({"control": 2000, "a": 1000}, {"control": 2 / 3, "a": 1 / 3})
    assert r.p_value == pytest.approx(1.0) and not r.flagged
    assert "SRM" in r.summary() and len(r.to_frame()) == 2
