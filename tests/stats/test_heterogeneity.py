"""Cochran's Q against statsmodels' meta-analysis and a hand computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.meta_analysis import combine_effects

from workbench.stats.heterogeneity import COLUMNS, cochran_q

Z = st.norm.ppf(0.975)


def _segments(effects, ses, **keys):
    effects, ses = np.asarray(effects, float), np.asarray(ses, float)
    return pd.DataFrame({"metric": keys.get("metric", "m"), "variant": "b",
                         "dimension": keys.get("dimension", "device"),
                         "segment": [f"s{i}" for i in range(len(effects))],
                         "effect": effects, "ci_lower": effects - Z * ses,
                         "ci_upper": effects + Z * ses})


def test_matches_statsmodels_combine_effects():
    effects, ses = [0.05, 0.12, -0.02, 0.08], [0.02, 0.03, 0.025, 0.05]
    out = cochran_q(_segments(effects, ses))
    ref = combine_effects(np.array(effects), np.array(ses) ** 2)
    assert list(out.columns) == COLUMNS and len(out) == 1
    row = out.iloc[0]
    assert row.q_statistic == pytest.approx(ref.q, rel=1e-9)
    assert row.dof == 3 and row.n_segments == 4
    assert row.p_value == pytest.approx(st.chi2.sf(ref.q, 3), rel=1e-9)
    assert row.i_squared == pytest.approx(max(0.0, (ref.q - 3) / ref.q), rel=1e-9)


def test_hand_computation_and_blocks():
    # two segments: w = 1/se^2 = 100 and 25; bar = (100*0 + 25*0.5) / 125 = 0.1
    # Q = 100 * 0.1^2 + 25 * 0.4^2 = 1 + 4 = 5
    a = _segments([0.0, 0.5], [0.1, 0.2])
    b = _segments([0.1, 0.1, 0.1], [0.1, 0.2, 0.3], dimension="country")
    out = cochran_q(pd.concat([a, b], ignore_index=True)).set_index("dimension")
    assert out.loc["device", "q_statistic"] == pytest.approx(5.0, rel=1e-12)
    assert out.loc["device", "i_squared"] == pytest.approx(0.8, rel=1e-12)
    assert out.loc["country", "q_statistic"] == pytest.approx(0.0, abs=1e-12)
    assert out.loc["country", "i_squared"] == 0.0 and out.loc["country", "p_value"] == 1.0


def test_unusable_segments_and_unadjusted_intervals():
    seg = _segments([0.1, np.nan, 0.3], [0.1, 0.1, 0.0])  # NaN effect, zero se: left out
    row = cochran_q(seg).iloc[0]
    assert row.n_segments == 1 and np.isnan(row.q_statistic) and row.dof == 0
    # the unadjusted interval is preferred when present
    seg = _segments([0.0, 0.5], [0.1, 0.2])
    wide = seg.assign(ci_lower_unadjusted=seg.ci_lower, ci_upper_unadjusted=seg.ci_upper,
                      ci_lower=seg.ci_lower - 1, ci_upper=seg.ci_upper + 1)
    assert cochran_q(wide).iloc[0].q_statistic == pytest.approx(5.0, rel=1e-12)
    assert cochran_q(None).empty and list(cochran_q(pd.DataFrame()).columns) == COLUMNS
