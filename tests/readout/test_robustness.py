"""The robustness check (``workbench.readout.robustness``) on data built so the answer is known."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.readout.experiment import Experiment
from workbench.readout.record import ROBUST_TAG, ReadoutRecord


@pytest.fixture(scope="module")
def outliers():
    """Treatment spends a little less per user, but 15 whales make its uncapped mean larger."""
    rng = np.random.default_rng(3)
    n = 3000
    control = rng.exponential(10.0, n)
    treatment = rng.exponential(9.5, n)
    treatment[:15] = 3000.0
    return pd.DataFrame({"variant": ["control"] * n + ["treatment"] * n,
                         "revenue": np.r_[control, treatment]})


def _readout(frame):
    exp = Experiment.from_units(frame, "variant",
                                {"revenue": wb.mean("revenue", role="primary")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exp.analyze(robustness=True, timeseries=False)


def test_a_cap_that_flips_the_sign_is_flagged(outliers):
    # the oracle: numpy, uncapped and winsorised at the 99th percentile of all units
    y = outliers["revenue"].to_numpy()
    t = (outliers["variant"] == "treatment").to_numpy()
    assert y[t].mean() > y[~t].mean()
    capped = np.minimum(y, np.quantile(y, 0.99))
    assert capped[t].mean() < capped[~t].mean()

    result = _readout(outliers)
    assert result.decision.startswith("ship treatment")
    table = result.robustness
    cap = table[table["choice"] == "cap"].set_index("setting")
    assert bool(cap.loc["99 %", "flips"])
    # 15 whales of 6,000 units lie above the 99.9th percentile: that cap leaves them whole
    assert not bool(cap.loc["99.9 %", "flips"])
    assert cap.loc["99 %", "primary_effect"] < 0 < result.results["effect"].iloc[0]
    assert not bool(table[table["baseline"].astype(bool)]["flips"].any())
    record = ReadoutRecord.from_result(result)
    assert record.tags()[ROBUST_TAG] == "false"


def test_a_clear_effect_is_robust():
    rng = np.random.default_rng(5)
    n = 4000
    frame = pd.DataFrame({"variant": ["control"] * n + ["treatment"] * n,
                          "revenue": np.r_[rng.normal(10, 2, n), rng.normal(11, 2, n)]})
    result = _readout(frame)
    assert result.decision.startswith("ship treatment")
    table = result.robustness
    applicable = table[table["decision"] != "not applicable"]
    assert not applicable["flips"].astype(bool).any(), table[["choice", "setting", "decision"]]
    assert set(table["choice"]) >= {"cuped", "cap", "prior", "correction", "method"}
    assert ReadoutRecord.from_result(result).tags()[ROBUST_TAG] == "true"
