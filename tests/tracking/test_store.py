"""workbench.tracking.store: the run folder, run.json, markers of runs in progress, stale runs."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np

from workbench import tracking
from workbench.errors import RunFailure
from workbench.tracking import store


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_jsonable():
    assert tracking.jsonable({"x": np.nan, "y": np.int64(3), "z": (1.5, np.inf)}) == {
        "x": None, "y": 3, "z": [1.5, None]}


def test_write_json_is_strict_and_atomic(tmp_path):
    path = tmp_path / "run.json"
    store.write_json(path, {"a": float("nan"), "b": np.float32(0.5)})
    assert json.loads(path.read_text()) == {"a": None, "b": 0.5}  # strict JSON, no NaN
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left
    assert store.read_json(tmp_path / "missing.json") == {}


def _folder(reports, template, name, stamp, run_id="abcdef0123"):
    data = {"run_id": run_id, "template": template, "name": name, "host": "h",
            "reports_dir": str(reports)}
    import datetime as dt

    started = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return store.create_run_folder(reports, data, started)


def test_find_runs_oldest_first_and_read_run(tmp_path):
    reports = tmp_path / "reports"
    late = _folder(reports, "ab_test", "exp", "20261202T100000Z", "bbbbbbbb1")
    early = _folder(reports, "model", "task", "20261201T100000Z", "aaaaaaaa1")
    assert late.name == "20261202T100000Z-bbbbbbbb"
    assert tracking.find_runs(reports) == [early, late]
    assert tracking.read_run(late)["template"] == "ab_test"
    assert tracking.read_run(tmp_path) == {}


def test_close_run_folder_writes_the_typed_failure_and_drops_the_marker(tmp_path):
    reports = tmp_path / "reports"
    run_dir = _folder(reports, "t", "n", "20261201T100000Z")
    marker = reports / tracking.STATE_DIR / "running" / "abcdef0123.json"
    assert json.loads(marker.read_text())["run_dir"] == str(run_dir.resolve())
    store.update_logged(run_dir, "metrics", {"m": 1.5})
    failure = RunFailure(3, "ValueError", "boom", "t: cell 3 failed: ValueError: boom",
                         ("Traceback", "ValueError: boom"))
    data = store.close_run_folder(run_dir, tracking.FAILED, failure)
    assert data["error"] == {"cell_index": 3, "ename": "ValueError", "evalue": "boom",
                             "message": "t: cell 3 failed: ValueError: boom",
                             "traceback_tail": ["Traceback", "ValueError: boom"]}
    assert RunFailure.from_dict(tracking.read_run(run_dir)["error"]) == failure
    assert tracking.read_run(run_dir)["metrics"] == {"m": 1.5}  # logged.json merged ...
    assert not (run_dir / tracking.LOGGED_JSON).exists() and not marker.exists()  # ... and gone


def _kill_marker(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker = next((tmp_path / "reports" / tracking.STATE_DIR / "running").glob("*.json"))
    info = json.loads(marker.read_text())
    marker.write_text(json.dumps({**info, "pid": dead.pid}))
    return marker, dead.pid


def test_run_left_running_by_a_dead_process_is_ended_failed(sqlite_env, tmp_path):
    run = tracking.begin_run("adhoc", "killed")
    marker, pid = _kill_marker(tmp_path)
    assert tracking.recover_stale_runs() == [run.run_dir]
    record = tracking.read_run(run.run_dir)
    assert record["status"] == "FAILED" and record["error"]["ename"] == "Killed"
    assert f"pid {pid}" in record["error"]["message"]
    assert _client(sqlite_env).get_run(record["mlflow_run_id"]).info.status == "FAILED"
    assert not marker.exists()


def test_end_stale_runs_spares_live_processes(sqlite_env, tmp_path):
    run = tracking.begin_run("adhoc", "alive")  # this process: alive
    assert store.end_stale_runs() == []
    assert tracking.read_run(run.run_dir)["status"] == "RUNNING"
    _kill_marker(tmp_path)
    assert store.end_stale_runs() == [run.run_dir]
    record = tracking.read_run(run.run_dir)
    assert record["status"] == "FAILED" and record["synced"] is False  # pushed by sync later


# ----------------------------------------------------------------------------- full disk (issue 17)
def _enospc(*args, **kwargs):
    import errno
    import os

    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_path_leaves_no_temporary_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "run.json"
    store.write_json(target, {"v": 1})
    try:
        with store.atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')  # half written, then the disk is full
            _enospc()
    except OSError as exc:
        assert store.error_cause(exc) == "no space left on device"
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_full_disk_run_json_rewritten_in_place_with_the_cause(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    run_dir = _folder(reports, "t", "n", "20261201T100000Z")
    monkeypatch.setattr(store, "write_json", _enospc)  # no room for a temporary file
    failure = RunFailure(2, "OSError", "no space left on device",
                         "t: the run's files could not be written at cell 2: no space left on "
                         "device", ("line",) * 8)
    data = store.close_run_folder(run_dir, tracking.FAILED, failure)
    assert "record_error" not in data
    on_disk = json.loads((run_dir / "run.json").read_text())  # valid JSON, rewritten in place
    assert on_disk["status"] == "FAILED" and on_disk["error"]["evalue"] == "no space left on device"
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json"]


def test_full_disk_keeps_the_cause_in_the_marker_for_a_later_sync(tmp_path, monkeypatch):
    """Nothing of run.json can be rewritten: the outcome waits in the marker, and the later
    recovery records it, not "Killed" (the break test saw "Killed")."""
    reports = tmp_path / "reports"
    run_dir = _folder(reports, "t", "n", "20261201T100000Z")
    store.write_json(run_dir / "run.json", dict(tracking.read_run(run_dir), status="RUNNING"))
    marker = reports / tracking.STATE_DIR / "running" / "abcdef0123.json"
    failure = RunFailure(2, "OSError", "no space left on device",
                         "t: the run's files could not be written at cell 2: no space left on "
                         "device")
    with monkeypatch.context() as m:
        m.setattr(store, "write_json", _enospc)
        real = store._rewrite_in_place
        m.setattr(store, "_rewrite_in_place",
                  lambda path, data: real(path, data) if path == marker else _enospc())
        data = store.close_run_folder(run_dir, tracking.FAILED, failure)
    assert data["record_error"] == "run.json could not be updated: no space left on device"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "RUNNING"
    assert json.loads(marker.read_text())["error"]["evalue"] == "no space left on device"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info = json.loads(marker.read_text())
    marker.write_text(json.dumps({**info, "pid": dead.pid, "host": socket.gethostname()}))
    assert store.end_stale_runs(reports) == [run_dir]
    record = tracking.read_run(run_dir)
    assert record["status"] == "FAILED" and record["error"]["ename"] == "OSError"
    assert record["error"]["message"] == failure.message and not marker.exists()


def test_resolve_run_by_any_of_its_ids(tmp_path):
    """An offline run synced later: its folder carries the local id, MLflow another one."""
    reports = tmp_path / "reports"
    run_dir = _folder(reports, "t", "n", "20261201T100000Z")
    local = tracking.read_run(run_dir)["run_id"]
    data = dict(tracking.read_run(run_dir), mlflow_run_id="f" * 32)
    store.write_json(run_dir / "run.json", data)
    prefix = run_dir.name.rpartition("-")[2]
    assert len(prefix) == 8 and local.startswith(prefix)
    for query in (prefix, local, "f" * 32, "f" * 8):
        assert tracking.resolve_run(query, reports) == run_dir, query
    assert tracking.resolve_run("f" * 7, reports) is None  # too short to be a prefix
    assert tracking.resolve_run("0" * 32, reports) is None
