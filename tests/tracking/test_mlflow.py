"""workbench.tracking.mlflow against SQLite and a real `mlflow server` process on loopback."""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from workbench import __version__, tracking
from workbench.config import get_settings
from workbench.errors import TrackingError
from workbench.tracking import mlflow as tracking_mlflow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on a free loopback port (SQLite backend, served artifacts)."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
         "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        start_new_session=True)  # its own group: the server starts worker processes
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # slow to start on a busy machine (~45 s seen)
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError("mlflow server did not start:\n" + (root / "server.log").read_text())
        time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _artifacts(client, run_id, path=None):
    out = []
    for item in client.list_artifacts(run_id, path):
        out.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return out


def _log_everything(run, X, y):
    import matplotlib.pyplot as plt
    from sklearn.linear_model import LogisticRegression

    table = pd.DataFrame({"metric": ["conversion"], "variant": ["treatment_a"], "effect": [0.1]})
    tracking.log_table(table, "results")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    tracking.log_figure(ax, "lift")
    plt.close(fig)
    tracking.log_metrics({"auc": 0.75, "nan_metric": float("nan"), "inf_metric": math.inf})
    tracking.log_summary({"decision": "ship treatment_a", "srm_p_value": np.float64(0.42)})
    model = LogisticRegression().fit(X, y)
    tracking.log_model(model, "clf", X)
    return table, model


def _check_run_in_mlflow(uri, run, table, model, X):
    import mlflow.sklearn

    record = tracking.read_run(run.run_dir)
    assert record["synced"] is True and record["status"] == "FINISHED"
    client = _client(uri)
    mrun = client.get_run(record["mlflow_run_id"])
    assert mrun.info.status == "FINISHED"
    # NaN and inf never reach MLflow; they stay null in run.json
    assert mrun.data.metrics == {"auc": 0.75}
    assert record["metrics"] == {"auc": 0.75, "nan_metric": None, "inf_metric": None}
    assert mrun.data.params["alpha"] == "0.05"
    assert len(mrun.data.params["long"]) == 500
    tags = mrun.data.tags
    assert tags["workbench.template"] == "adhoc" and tags["workbench.version"] == __version__
    assert tags["summary.decision"] == "ship treatment_a"
    assert tags["workbench.run_dir"] == str(run.run_dir.resolve())
    assert client.get_experiment(mrun.info.experiment_id).name == "checkout_redesign"
    arts = _artifacts(client, mrun.info.run_id)
    assert {"tables/results.parquet", "figures/lift.png", "run.json"} <= set(arts)
    local = client.download_artifacts(mrun.info.run_id, "tables/results.parquet",
                                      str(run.run_dir.parent / "dl"))
    pd.testing.assert_frame_equal(pd.read_parquet(local), table)
    # the model is an MLflow model with a signature; its predictions equal the original's
    models = client.search_logged_models([mrun.info.experiment_id])
    logged = [m for m in models if m.source_run_id == mrun.info.run_id]
    assert [m.name for m in logged] == ["clf"]
    loaded = mlflow.sklearn.load_model(logged[0].model_uri)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    from mlflow.models import get_model_info

    info = get_model_info(logged[0].model_uri)
    assert [c.name for c in info.signature.inputs.inputs] == ["a", "b"]


def test_sanitisers():
    assert tracking.sanitize_metrics({"a": 1, "b": float("nan"), "c": -math.inf, "d": "x",
                                      "e f(g)": np.float32(2.5)}) == {"a": 1.0, "e f_g_": 2.5}
    params = tracking.sanitize_params({"s": "x" * 900, "l": [1, 2], "n": None})
    assert len(params["s"]) == 500 and params["l"] == "[1, 2]" and params["n"] == "null"


def test_start_run_sqlite_logs_everything(sqlite_env, classification):
    X, y = classification
    params = {"alpha": 0.05, "long": "y" * 800}
    with tracking.start_run("adhoc", "checkout_redesign", parameters=params) as run:
        assert tracking.current_run() is run
        table, model = _log_everything(run, X, y)
    assert tracking.current_run() is None
    # layout: reports/<template>/<name>/<UTC timestamp>-<run id[:8]>/
    record = tracking.read_run(run.run_dir)
    assert run.run_dir.parent.parent.parent == get_settings().reports_dir
    assert run.run_dir.parent.name == "checkout_redesign"
    assert run.run_dir.name.endswith("-" + record["mlflow_run_id"][:8])
    assert time.strptime(run.run_dir.name.split("-")[0], "%Y%m%dT%H%M%SZ")
    assert record["tables"] == ["results"] and record["figures"] == ["lift"]
    assert record["summary"] == {"decision": "ship treatment_a", "srm_p_value": 0.42}
    assert not (run.run_dir / tracking.LOGGED_JSON).exists()
    _check_run_in_mlflow(sqlite_env, run, table, model, X)


def _finished_run(name):
    with tracking.start_run("adhoc", name) as run:
        pass
    return tracking.read_run(run.run_dir)["mlflow_run_id"]


def test_set_tag_and_runs_with_tag_on_sqlite(sqlite_env):
    first, second, third = (_finished_run(n) for n in ("one", "two", "three"))
    tracking.set_tag(first, "workbench.published", "true")
    tracking.set_tag(second, "workbench.published", "True")  # typed by hand in the MLflow UI
    tracking.set_tag(third, "workbench.published", "false")
    # what MLflow itself reads back (independent of the fast path below)
    client = _client(sqlite_env)
    assert client.get_run(first).data.tags["workbench.published"] == "true"
    assert client.get_run(third).data.tags["workbench.published"] == "false"
    fast = tracking.runs_with_tag("workbench.published", "true")
    assert fast == {first, second}
    assert tracking.runs_with_tag("workbench.published", "false") == {third}
    assert tracking.runs_with_tag("workbench.published", "t_ue") == set()  # no wildcards
    # the MLflow client path (other stores) agrees with the direct SQLite read
    assert tracking_mlflow._runs_with_tag_via_client(
        sqlite_env, "workbench.published", "true") == fast
    # a deleted run is no longer found
    client.delete_run(second)
    assert tracking.runs_with_tag("workbench.published", "true") == {first}
    # the SQLite read does not import MLflow (every dashboard page view pays for that import)
    code = ("import sys; from workbench import tracking; "
            f"ids = tracking.runs_with_tag('workbench.published', 'true', {sqlite_env!r}); "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'; print(sorted(ids))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == str([first])


def test_runs_with_tag_on_a_store_that_does_not_exist(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert tracking.runs_with_tag("workbench.published", "true", tracking_uri=uri) == set()
    assert not (tmp_path / "none.db").exists()  # not created by a read


def test_set_tag_on_an_unknown_run_names_it(sqlite_env):
    _finished_run("exists")  # the store has its tables
    with pytest.raises(TrackingError, match="no-such-run"):
        tracking.set_tag("no-such-run", "k", "v")


def test_real_server_and_unreachable_then_sync(mlflow_server, tmp_path, monkeypatch,
                                               classification):
    X, y = classification
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    # 1. a normal run against the server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    params = {"alpha": 0.05, "long": "y" * 800}
    with tracking.start_run("adhoc", "checkout_redesign", parameters=params) as run:
        table, model = _log_everything(run, X, y)
    _check_run_in_mlflow(mlflow_server, run, table, model, X)

    # 2. the server is unreachable: outputs still written, run kept unsynced
    closed = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    with tracking.start_run("adhoc", "checkout_redesign", parameters=params) as offline:
        table, model = _log_everything(offline, X, y)
    record = tracking.read_run(offline.run_dir)
    assert record["synced"] is False and record["mlflow_run_id"] is None
    assert record["status"] == "FINISHED" and record["sync_error"]
    assert (offline.run_dir / "tables" / "results.parquet").exists()
    assert (offline.run_dir / "models" / "clf" / "MLmodel").exists()

    # 3. `workbench sync` logs it to the server once it is back
    from workbench.cli import main

    assert main(["sync", "--tracking-uri", mlflow_server]) == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    _check_run_in_mlflow(mlflow_server, offline, table, model, X)
    assert main(["sync", "--tracking-uri", mlflow_server]) == 0  # idempotent: nothing left
