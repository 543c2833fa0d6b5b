"""The numbers a results row shows (workbench/readout/numbers.py), against hand values and
statsmodels' Holm adjustment."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from workbench.readout import numbers


def _results(correction: bool) -> pd.DataFrame:
    raw = np.array([0.001, 0.02, 0.04, 0.30])
    frame = pd.DataFrame({"metric": ["a", "b", "c", "d"], "variant": "t", "p_value": raw,
                          "dimension": None})
    if correction:
        frame["p_value_adjusted"] = multipletests(raw, method="holm")[1]
    segment = frame.iloc[:1].assign(dimension="device", p_value=0.5)  # not an overall row
    return pd.concat([frame, segment], ignore_index=True)


def test_the_shown_p_value_is_the_adjusted_one_when_there_is_one():
    results = _results(correction=True)
    holm = multipletests([0.001, 0.02, 0.04, 0.30], method="holm")[1]
    rows = numbers.overall_rows(results)
    assert len(rows) == 4
    assert [numbers.shown_p(r) for _, r in rows.iterrows()] == pytest.approx(holm)
    assert numbers.shown_p({"p_value": 0.02}) == 0.02
    assert numbers.shown_p({"p_value": 0.02, "p_value_adjusted": float("nan")}) == 0.02
    assert math.isnan(numbers.shown_p({}))


def test_the_correction_label_counts_the_overall_rows_only():
    assert numbers.correction_text(_results(True), "holm") == "adjusted, Holm across 4 comparisons"
    assert numbers.correction_text(_results(False), "holm") == "unadjusted"
    assert numbers.correction_text(_results(False).drop(columns="p_value"), None) == ""


def test_chance_and_risk_are_in_the_metrics_good_direction():
    up = {"chance_to_win": 0.9, "risk_variant": 0.001, "risk_control": 0.02}
    down = dict(up, higher_is_better=False)
    assert numbers.chance_of(up) == pytest.approx(0.9)
    assert numbers.chance_of(down) == pytest.approx(0.1)
    assert numbers.risk_of(up) == 0.001 and numbers.risk_of(down) == 0.02
    assert numbers.chance_of(dict(up, higher_is_better=None)) == pytest.approx(0.9)
