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


def test_run_names_carry_the_template(sqlite_env):
    """Three templates on one task: three names in the MLflow UI, not three `task-<id>`."""
    names = {}
    for template in ("model_experiment", "explain", "drift_report"):
        with tracking.start_run(template, "conversion_model") as run:
            pass
        record = tracking.read_run(run.run_dir)
        names[template] = _client(sqlite_env).get_run(record["mlflow_run_id"]).info.run_name
        assert names[template] == f"{template}-conversion_model-{record['mlflow_run_id'][:8]}"
    with tracking.start_run("adhoc") as run:  # no name: the template is not said twice
        pass
    record = tracking.read_run(run.run_dir)
    assert (_client(sqlite_env).get_run(record["mlflow_run_id"]).info.run_name
            == f"adhoc-{record['mlflow_run_id'][:8]}")


def test_durations_are_never_negative(sqlite_env):
    """Runs shorter than a second (run.json keeps whole seconds): MLflow's end is not before
    its start, and both are the run.json times."""
    import datetime as dt

    for i in range(5):
        with tracking.start_run("adhoc", f"short{i}") as run:
            pass
        record = tracking.read_run(run.run_dir)
        info = _client(sqlite_env).get_run(record["mlflow_run_id"]).info
        assert info.end_time >= info.start_time
        started = dt.datetime.strptime(record["started_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert info.start_time == int(started.replace(tzinfo=dt.UTC).timestamp() * 1000)


def test_saving_a_model_writes_no_warning(sqlite_env, classification, capfd):
    """MLflow's integer-schema hint and cloudpickle caution stay out of the notebook (they
    were a stderr box in the model report)."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = classification
    X = X.assign(count=(X["a"] > 0).astype(int))  # an integer column: MLflow's hint
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracking.start_run("adhoc", "quiet") as run:
            path = run.log_model(model, "clf", X)
    assert (path / "MLmodel").is_file()
    out, err = capfd.readouterr()
    assert [str(w.message)[:80] for w in caught
            if "mlflow" in w.filename or "Hint" in str(w.message)] == []
    assert "WARNING" not in err and "cloudpickle" not in err, err
