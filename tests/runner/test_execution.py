"""workbench.runner.execution: papermill runs, their outputs, typed failures, exit codes."""
from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from workbench import runner
from workbench.cli import main
from workbench.errors import RunFailure


@pytest.fixture(scope="module")
def success(env):
    return runner.run_template(env["notebook"], {"token": "abc", "items": [5, 6]},
                               text_parameters={"n": "4", "label": "007"}, progress=False)


def test_success_layout_outputs_and_mlflow(success, env):
    from mlflow.tracking import MlflowClient

    assert success.ok and success.status == "FINISHED" and success.exit_code == 0
    run_dir = success.run_dir
    assert run_dir.parent.parent.name == "t1" and run_dir.parent.name == "exp1"
    assert run_dir.name.endswith(success.mlflow_run_id[:8])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "FINISHED" and record["synced"] is True
    assert record["parameters"]["label"] == "007" and record["parameters"]["n"] == 4
    assert record["tables"] == ["results"] and record["figures"] == ["line"]
    assert record["summary"] == {"decision": "ship", "label": "007"}
    assert record["metrics"] == {"n": 4, "sum_items": 11, "nan": None}
    expected = pd.DataFrame({"i": range(4), "label": "007", "token": "abc"})
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "tables" / "results.parquet"),
                                  expected)
    executed = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code")
    assert not any(runner.SENTINEL_TAG in c.metadata.get("tags", []) for c in executed.cells)
    html = (run_dir / "report.html").read_text()
    assert "SECRET-CODE-MARKER-OUTPUT" in html  # outputs shown ...
    assert "tracking.log_table" not in html  # ... code hidden
    mrun = MlflowClient(env["uri"]).get_run(success.mlflow_run_id)
    assert mrun.info.status == "FINISHED"
    assert mrun.data.metrics == {"n": 4.0, "sum_items": 11.0}
    assert mrun.data.params["label"] == "007"
    assert mrun.data.tags["workbench.template"] == "t1"
    arts = {a.path for a in MlflowClient(env["uri"]).list_artifacts(success.mlflow_run_id)}
    assert {"notebook.ipynb", "report.html", "run.json", "tables", "figures"} <= arts


def test_failing_cell_exit_1_partial_notebook_kept(env, capsys, success):
    from mlflow.tracking import MlflowClient

    code = main(["run", str(env["notebook"]), "-p", "token", "t", "-p", "fail", "true",
                 "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "cell 4" in err and "ValueError: boom in cell 4" in err
    run_dir = max((env["root"] / "reports" / "t1" / "exp1").iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "FAILED" and record["error"]["cell_index"] == 4
    executed = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    last = executed.cells[-1]
    assert last.get("execution_count") is None  # partial: the cells after the error did not run
    assert (run_dir / "tables" / "results.parquet").exists()  # what was logged before is kept
    assert MlflowClient(env["uri"]).get_run(record["mlflow_run_id"]).info.status == "FAILED"
    # the typed failure: one object, the same in run.json and on the result
    failure = RunFailure.from_dict(record["error"])
    assert failure.ename == "ValueError" and failure.evalue == "boom in cell 4"
    assert failure.message == "t1: cell 4 (execution count [5]) failed: ValueError: boom in cell 4"
    assert failure.traceback_tail[-1] == "ValueError: boom in cell 4"
    assert not any("\x1b[" in line for line in failure.traceback_tail)  # no terminal colours


def test_failure_on_the_result(env):
    result = runner.run_template(env["notebook"], {"token": "t", "fail": True}, progress=False)
    assert result.status == "FAILED" and result.exit_code == 1 and not result.ok
    assert result.failure == RunFailure.from_dict(result.record["error"])
    assert result.failure.cell_index == 4 and result.message == result.failure.message


def _cell(source, status, count, outputs=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.execution_count = count
    cell.metadata["papermill"] = {"status": status}
    cell.outputs = list(outputs)
    return cell


def test_notebook_failure_without_a_kernel():
    book = nbformat.v4.new_notebook()
    injected = _cell("n = 1", "completed", 1)
    injected.metadata["tags"] = ["injected-parameters"]
    error = nbformat.v4.new_output("error", ename="KeyError", evalue="'x'",
                                   traceback=["\x1b[31mTraceback\x1b[0m", "KeyError: 'x'"])
    book.cells = [nbformat.v4.new_markdown_cell("# t"), injected, _cell("a = 1", "completed", 2),
                  _cell("d['x']", "failed", 3, [error]), _cell("b = 2", "pending", None)]
    # papermill raised: the failed cell, counted without the injected cell
    failure = runner.notebook_failure(book, "t", RuntimeError("papermill says"))
    assert failure == RunFailure(2, "KeyError", "'x'",
                                 "t: cell 2 (execution count [3]) failed: KeyError: 'x'",
                                 ("Traceback", "KeyError: 'x'"))
    # nothing saved at all (kernel never started)
    failure = runner.notebook_failure(None, "t", RuntimeError("kernel died\nmore"))
    assert failure == RunFailure(None, "RuntimeError", "kernel died",
                                 "t: before any cell ran failed: RuntimeError: kernel died")
    # no exception but a cell did not run: stopped early, blamed on the cell before it
    book.cells[3] = _cell("sys.exit()", "completed", 3)
    stopped = runner.notebook_failure(book, "t")
    assert stopped.cell_index == 2 and stopped.ename == "StoppedEarly"
    assert "stopped early at cell 2" in stopped.message
    book.cells[4] = _cell("b = 2", "completed", 4)
    assert runner.notebook_failure(book, "t") is None


def test_run_error_carries_the_failure():
    from workbench.errors import RunError, WorkbenchError

    failure = RunFailure(1, "ValueError", "x", "t: cell 1 failed: ValueError: x")
    exc = RunError(failure)
    assert isinstance(exc, WorkbenchError) and exc.failure is failure
    assert str(exc) == failure.message
    with pytest.raises(RunError):
        runner.execution._raise_for_errors(None, ValueError("x"), "t")
    assert runner.execution._raise_for_errors(None, None, "t") is None
