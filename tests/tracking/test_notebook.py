"""workbench.tracking.notebook: the logging API of notebooks, and log_record's round trip."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench import tracking
from workbench.tracking import notebook


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_outside_a_run_log_calls_are_noops(monkeypatch, capsys):
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    monkeypatch.setattr(notebook, "_NOTICE_SHOWN", False)
    assert tracking.current_run() is None
    assert tracking.log_table(pd.DataFrame({"a": [1]}), "t") is None
    assert tracking.log_metrics({"a": 1}) is None
    assert tracking.log_record(_FakeRecord()) is None
    err = capsys.readouterr().err
    assert err.count("not inside a run") == 1  # one notice, not one per call


def test_env_attached_run_writes_to_the_runner_folder(sqlite_env, monkeypatch):
    run = tracking.begin_run("adhoc", "attached")
    monkeypatch.setenv(tracking.ENV_RUN_DIR, str(run.run_dir))
    monkeypatch.setattr(notebook, "_ATTACHED", {})
    attached = tracking.current_run()
    assert attached is not None and not attached.owner and attached.run_dir == run.run_dir
    tracking.log_metrics({"m": 2.0})
    tracking.log_summary({"decision": "keep control"})
    data = run.finish()
    assert data["metrics"] == {"m": 2.0} and data["summary"] == {"decision": "keep control"}
    assert _client(sqlite_env).get_run(data["mlflow_run_id"]).data.metrics == {"m": 2.0}


class _FakeRecord:
    """The four things log_record reads from a ReadoutRecord, with known values."""

    tables = {
        "results": pd.DataFrame({"metric": ["conversion", "revenue"],
                                 "variant": ["treatment_a"] * 2, "effect": [0.05, -0.5]}),
        "validation": pd.DataFrame({"check": ["srm"], "status": ["ok"], "p_value": [0.4]}),
    }

    def metrics(self):
        return {"conversion.treatment_a.lift": 0.05, "revenue.treatment_a.lift": -0.5,
                "not_finite": float("nan")}

    def tags(self):
        return {"workbench.decision": "ship treatment_a", "workbench.schema_version": 1}

    def summary_dict(self):
        return {"decision": "ship treatment_a", "srm_p_value": 0.4,
                "reasons": ["conversion up 5 %"], "schema_version": 1}


def test_log_record_round_trip(sqlite_env):
    record = _FakeRecord()
    with tracking.start_run("ab_test", "checkout_redesign") as run:
        tracking.log_record(record)
    data = tracking.read_run(run.run_dir)
    # folder: every table as given, summary and metrics as given (NaN as null)
    assert data["tables"] == ["results", "validation"]
    for name, frame in record.tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(run.run_dir / "tables" / f"{name}.parquet"),
                                      frame)
    assert data["summary"] == record.summary_dict()
    assert data["metrics"] == {**record.metrics(), "not_finite": None}
    assert data["tags"] == {"workbench.decision": "ship treatment_a",
                            "workbench.schema_version": "1"}
    # MLflow, read back by its own client
    mrun = _client(sqlite_env).get_run(data["mlflow_run_id"])
    assert mrun.data.metrics == {"conversion.treatment_a.lift": 0.05,
                                 "revenue.treatment_a.lift": -0.5}
    assert mrun.data.tags["workbench.decision"] == "ship treatment_a"
    assert mrun.data.tags["summary.decision"] == "ship treatment_a"
    assert json.loads(mrun.data.tags["summary.reasons"]) == ["conversion up 5 %"]


def test_log_record_reads_only_the_duck_typed_interface(sqlite_env):
    class Missing:
        tables = {}

    with pytest.raises(AttributeError, match="metrics"):
        with tracking.start_run("ab_test", "broken"):
            tracking.log_record(Missing())
