"""workbench.tracking.run: starting and ending runs, the typed failure of a block that raises."""
from __future__ import annotations

import pytest

from workbench import tracking
from workbench.errors import RunFailure


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_block_that_raises_ends_failed(sqlite_env):
    with pytest.raises(ZeroDivisionError):
        with tracking.start_run("adhoc", "boom") as run:
            1 / 0  # noqa: B018
    record = tracking.read_run(run.run_dir)
    assert record["status"] == "FAILED" and record["error"]["ename"] == "ZeroDivisionError"
    assert _client(sqlite_env).get_run(record["mlflow_run_id"]).info.status == "FAILED"
    failure = RunFailure.from_dict(record["error"])
    assert failure.cell_index is None and failure.evalue == "division by zero"
    assert failure.message == "ZeroDivisionError: division by zero"
    assert failure.traceback_tail[-1] == "ZeroDivisionError: division by zero"
    assert any("1 / 0" in line for line in failure.traceback_tail)
    tags = _client(sqlite_env).get_run(record["mlflow_run_id"]).data.tags
    assert tags["workbench.error"] == failure.message and tags["workbench.status"] == "FAILED"


def test_mark_sets_the_outcome_of_the_block(sqlite_env):
    stopped = RunFailure(2, "StoppedEarly", "", "stopped at cell 2")
    with tracking.start_run("adhoc", "marked") as run:
        run.mark(tracking.STOPPED, stopped)
    record = tracking.read_run(run.run_dir)
    assert record["status"] == "STOPPED" and RunFailure.from_dict(record["error"]) == stopped
    # MLflow has no "stopped early": it is FAILED there
    assert _client(sqlite_env).get_run(record["mlflow_run_id"]).info.status == "FAILED"


def test_mlflow_down_keeps_the_run_unsynced(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unknownscheme://nowhere")
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    with tracking.start_run("adhoc", "offline") as run:
        tracking.log_metrics({"m": 1.0})
    record = tracking.read_run(run.run_dir)
    assert record["status"] == "FINISHED" and record["synced"] is False
    assert record["mlflow_run_id"] is None and len(record["run_id"]) == 32
    assert record["metrics"] == {"m": 1.0} and record["sync_error"]
