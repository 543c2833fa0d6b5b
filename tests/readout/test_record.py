"""The readout record: built from a readout, written as a run writes it, read back equal."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from workbench.errors import DataError
from workbench.readout import record as rec
from workbench.readout.experiment import Experiment
from workbench.readout.record import ReadoutRecord


def _pymc_table():
    """Rows of two fits as workbench.stats.pymc tables carry them (each row repeats its fit's
    diagnostics), and one row that was not fitted."""
    return pd.DataFrame({
        "metric": ["conversion"] * 3 + ["revenue"], "variant": ["b"] * 4,
        "segment": ["(all)", "mobile", "desktop", "(all)"],
        "effect": [0.1, 0.2, 0.0, np.nan],
        "r_hat_max": [1.002, 1.002, 1.002, np.nan], "ess_bulk_min": [900.0] * 3 + [np.nan],
        "ess_tail_min": [700.0] * 3 + [np.nan], "divergences": [2, 2, 2, np.nan],
        "diagnostics_ok": [True, True, True, True], "sampler": ["nutpie"] * 3 + [""]})


@pytest.fixture(scope="module")
def readouts(small_warehouse):
    exp = Experiment.from_source(small_warehouse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(segments=["device"], correction="holm")
        bayes = exp.analyze("bayesian", timeseries=False)
    return result, bayes


def test_round_trip(readouts, tmp_path):
    result, bayes = readouts
    hurdle = _pymc_table().assign(r_hat_max=[1.02, 1.02, 1.02, np.nan], diagnostics_ok=False)
    record = ReadoutRecord.from_result(
        result, bayesian=bayes, extra={rec.HIERARCHICAL: _pymc_table(),
                                       rec.REVENUE_HURDLE: hurdle},
        notes=["the PyMC models ran with 100 draws"])
    assert set(record.tables) == {rec.RESULTS, rec.SEGMENTS, rec.HETEROGENEITY,
                                  rec.TIMESERIES, rec.VALIDATION, rec.BAYESIAN, rec.STATS,
                                  rec.HIERARCHICAL, rec.REVENUE_HURDLE, rec.ARMS}
    # what a run writes: JSON for the summary, parquet for the tables
    summary = json.loads(json.dumps(record.summary_dict()))
    tables = {}
    for name, frame in record.tables.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
        tables[name] = pd.read_parquet(tmp_path / f"{name}.parquet")
    again = ReadoutRecord.from_logged(summary, tables)
    for name in ("experiment_id", "method", "alpha", "difference", "control", "correction",
                 "decision", "decisions", "reasons", "notes", "trustworthy", "schema_version"):
        assert getattr(again, name) == getattr(record, name), name
    assert again.srm_p_value == pytest.approx(record.srm_p_value, rel=1e-15)
    assert set(again.tables) == set(record.tables)
    for name, frame in record.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], frame, check_dtype=False)
    assert again.metrics() == record.metrics() and again.tags() == record.tags()
    # independent of the record: the readout's own numbers
    assert record.decision == result.decision and record.correction == "holm"
    assert record.srm_p_value == result.validation.srm_p_value
    pd.testing.assert_frame_equal(again.table(rec.VALIDATION), result.validation.to_frame(),
                                  check_dtype=False)
    row = result.results.iloc[0]
    key = f"{row.metric}.{row.variant}"
    assert record.metrics()[f"{key}.lift"] == row.effect
    brow = bayes.results.iloc[0]
    assert record.metrics()[f"bayes.{brow.metric}.{brow.variant}.chance_to_win"] == \
        brow.chance_to_win


def test_mcmc_tags_from_the_diagnostic_columns(readouts):
    result, _ = readouts
    hurdle = _pymc_table().assign(r_hat_max=[1.02, 1.02, 1.02, np.nan], diagnostics_ok=False)
    record = ReadoutRecord.from_result(result, extra={rec.HIERARCHICAL: _pymc_table(),
                                                      rec.REVENUE_HURDLE: hurdle})
    tags = record.tags()
    assert tags["workbench.mcmc.hierarchical.ok"] == "true"
    assert tags["workbench.mcmc.hierarchical.fits"] == "1"  # 3 rows of one fit
    assert tags["workbench.mcmc.hierarchical.divergences"] == "2"
    assert tags["workbench.mcmc.hierarchical.sampler"] == "nutpie"
    assert tags["workbench.mcmc.revenue_hurdle.ok"] == "false"
    assert tags["workbench.mcmc.ok"] == "false"
    assert tags["workbench.mcmc.r_hat_max"] == "1.02"
    assert tags["workbench.mcmc.ess_bulk_min"] == "900"
    assert tags["workbench.mcmc.ess_tail_min"] == "700"
    assert tags["workbench.mcmc.divergences"] == "4"
    assert tags["workbench.trustworthy"] == "true"
    plain = ReadoutRecord.from_result(result).tags()
    assert not any(k.startswith("workbench.mcmc") for k in plain)


def test_bad_names_and_versions_raise(readouts):
    result, _ = readouts
    with pytest.raises(DataError, match="unknown readout table 'resultz'"):
        ReadoutRecord.from_result(result, extra={"resultz": result.results})
    record = ReadoutRecord.from_result(result)
    with pytest.raises(DataError, match="unknown readout table"):
        record.table("nope")
    assert record.table(rec.BAYESIAN) is None
    summary = record.summary_dict()
    with pytest.raises(DataError, match="schema 99"):
        ReadoutRecord.from_logged({**summary, rec.SCHEMA_KEY: 99}, {})
    with pytest.raises(DataError, match="no readout record"):
        ReadoutRecord.from_logged({"decision": "ship"}, {})
