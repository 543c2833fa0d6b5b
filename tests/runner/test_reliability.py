"""Faults during a run (issue 17's break test): a full disk, a killed kernel, a cell timeout,
Ctrl-C, MLflow on a full disk. Each ends in a recorded run, one line for the user, no
traceback, no file left half-written or behind. The full-disk cases use a real 2 MB tmpfs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from workbench import runner, tracking

_CLI = [sys.executable, "-m", "workbench.cli"]


def _notebook(path: Path, *cells: str, parameters: str = "x = 0") -> Path:
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    book.cells = [nbformat.v4.new_markdown_cell("# fault"), params,
                  *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(book, path)
    return path


def _cli(args, env_extra, timeout=300, **kwargs):
    env = dict(os.environ, **env_extra)
    env.pop(tracking.ENV_RUN_DIR, None)
    return subprocess.run([*_CLI, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, **kwargs)


def _only_run(reports: Path) -> Path:
    runs = tracking.find_runs(reports)
    assert len(runs) == 1, runs
    return runs[0]


def fill_disk(path: Path) -> None:
    """Fill the file system of ``path`` (a file there) to the last block."""
    try:
        with open(path, "wb") as handle:
            while True:
                handle.write(b"x" * 4096)
                handle.flush()
    except OSError:  # full (already full, even)
        pass
    free = os.statvfs(path.parent)
    assert free.f_bavail == 0, free


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith((".tmp", ".wal")))


def test_killed_kernel_is_reported_at_the_cell_that_was_running(env, tmp_path):
    cells = ("y = 1", "print('before')", "import os\nos.kill(os.getpid(), 9)", "print('after')")
    path = _notebook(tmp_path / "killed.ipynb", *cells)
    result = runner.run_template(path, progress=False)
    # the template's cells: markdown 0, parameters 1, then the code cells in order
    killer = 2 + cells.index("import os\nos.kill(os.getpid(), 9)")
    assert result.status == "FAILED" and result.exit_code == 1
    assert result.failure.cell_index == killer == 4
    assert result.failure.ename == "DeadKernelError"
    assert f"cell {killer}" in result.message
    assert tracking.read_run(result.run_dir)["error"]["cell_index"] == killer


def test_cell_timeout_prints_no_kernel_traceback(env, tmp_path):
    path = _notebook(tmp_path / "slow.ipynb", "import time", "time.sleep(60)", "print('end')")
    done = _cli(["run", str(path), "--cell-timeout", "2", "--no-progress"],
                {"WORKBENCH_REPORTS_DIR": str(tmp_path / "reports"),
                 "MLFLOW_TRACKING_URI": env["uri"]})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "ZMQError" not in done.stderr, done.stderr
    assert "IPKernelApp" not in done.stderr and "Timeout waiting" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].endswith("FAILED (exit 1) -> " + str(_only_run(tmp_path / "reports")))
    assert "cell 3" in lines[1] and "CellTimeoutError" in lines[1]
    assert len(lines) <= 3, lines


@pytest.mark.slow
def test_interrupted_run_is_recorded_failed_in_one_line(env, tmp_path):
    path = _notebook(tmp_path / "ctrlc.ipynb", "import time", "time.sleep(120)", "print('end')")
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [*_CLI, "run", str(path), "--no-progress"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
        env={**os.environ, "WORKBENCH_REPORTS_DIR": str(reports),
             "MLFLOW_TRACKING_URI": env["uri"]})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # wait until the sleeping cell started
        saved = list(reports.glob("*/*/*/notebook.ipynb"))
        if saved:  # papermill marks the cell it is executing (not just the run) as running
            try:
                cells = json.loads(saved[0].read_text())["cells"]
            except (ValueError, KeyError):
                cells = []  # caught mid-write
            if any("time.sleep(120)" in "".join(c.get("source", ""))
                   and c.get("metadata", {}).get("papermill", {}).get("status") == "running"
                   for c in cells):
                break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the run never reached its sleeping cell")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = proc.communicate(timeout=120)
    run_dir = _only_run(reports)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (f"workbench run: interrupted; run {run_dir} "
                                            "recorded FAILED (interrupted)")
    assert "Traceback" not in err and "ZMQError" not in err, err
    record = tracking.read_run(run_dir)
    assert record["status"] == "FAILED" and record["error"]["ename"] == "KeyboardInterrupt"
    assert record["error"]["cell_index"] == 3 and record["synced"]
    json.loads((run_dir / "notebook.ipynb").read_text())  # the partial notebook is valid
    from mlflow.tracking import MlflowClient

    assert MlflowClient(env["uri"]).get_run(record["mlflow_run_id"]).info.status == "FAILED"


@pytest.mark.slow
def test_disk_full_during_a_run(env, tmp_path, tmpfs):
    """The reports folder fills up while the notebook runs (another writer takes the space)."""
    reports = tmpfs / "reports"
    filler = tmpfs / "filler"
    path = _notebook(
        tmp_path / "full.ipynb", "print('start')",
        "with open(filler, 'wb') as f:\n    try:\n        while True:\n"
        "            f.write(b'x' * 4096); f.flush()\n    except OSError:\n        pass",
        "print('y' * 50000)", "print('end')", parameters=f"filler = {str(filler)!r}")
    done = _cli(["run", str(path), "--no-progress"],
                {"WORKBENCH_REPORTS_DIR": str(reports), "MLFLOW_TRACKING_URI": env["uri"]})
    run_dir = _only_run(reports)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("full/full: FAILED (exit 1)") and len(lines) <= 3, lines
    assert "no space left on device" in lines[1]
    record = json.loads((run_dir / "run.json").read_text())  # valid, and ended
    assert record["status"] == "FAILED" and record["ended_at"]
    assert record["error"]["evalue"] == "no space left on device"
    notebook = nbformat.reads((run_dir / "notebook.ipynb").read_text(), as_version=4)
    assert "print('start')" in [c.source for c in notebook.cells]  # a valid partial notebook
    assert _leftovers(tmpfs) == []
    assert list((reports / tracking.STATE_DIR / "running").glob("*.json")) == []
    from mlflow.tracking import MlflowClient

    mlflow_run = MlflowClient(env["uri"]).get_run(record["mlflow_run_id"])
    assert mlflow_run.info.status == "FAILED"
    assert "no space left on device" in mlflow_run.data.tags["workbench.error"]
    # a later sync has nothing to correct: the cause stays, not "Killed"
    filler.unlink()
    assert _cli(["sync"], {"WORKBENCH_REPORTS_DIR": str(reports),
                           "MLFLOW_TRACKING_URI": env["uri"]}).returncode == 0
    assert tracking.read_run(run_dir)["error"]["evalue"] == "no space left on device"


@pytest.mark.slow
def test_mlflow_on_a_full_disk_is_one_line(env, tmp_path, tmpfs):
    uri = f"sqlite:///{tmpfs / 'mlflow.db'}"
    path = _notebook(tmp_path / "ok.ipynb", "print('fine')")
    extra = {"WORKBENCH_REPORTS_DIR": str(tmp_path / "reports"), "MLFLOW_TRACKING_URI": uri}
    assert _cli(["run", str(path), "--no-progress"], extra).returncode == 0  # creates the db
    fill_disk(tmpfs / "filler")
    done = _cli(["run", str(path), "--no-progress"], extra)
    assert done.returncode == 0  # the run itself is fine; it waits in reports/ for a sync
    assert "Traceback" not in done.stderr and "SQLAlchemy" not in done.stderr, done.stderr
    cannot = [line for line in done.stderr.splitlines() if "cannot record the run" in line]
    assert len(cannot) == 1 and "no space left on device" in cannot[0], done.stderr
    assert "not synced to MLflow (no space left on device)" in done.stdout
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
    run_dir = tracking.find_runs(tmp_path / "reports")[-1]
    assert tracking.read_run(run_dir)["status"] == "FINISHED"
    assert tracking.read_run(run_dir)["synced"] is False


@pytest.mark.slow
def test_sample_data_on_a_full_disk_leaves_nothing(tmpfs):
    out = tmpfs / "warehouse.duckdb"
    done = _cli(["sample-data", "--users", "200000", "--out", str(out)], {})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"workbench sample-data: error: could not write {out}: no space left on device")
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmpfs.iterdir()) == []  # no .tmp, no .wal
