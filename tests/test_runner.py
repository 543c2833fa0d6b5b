"""workbench.runner: parameter checks, papermill runs, failures, exit codes, parallel jobs."""
from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from workbench import runner, tracking
from workbench.cli import main
from workbench.errors import ParameterError

PARAMETERS = """experiment_id = "exp1"
n = 3
alpha = 0.05
label = "x"  # any text
fail = False
stop = False
sleep = 0.0
items = [1, 2]
anything = None
token = None  # required
"""


def _write_notebook(path):
    book = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    book.cells = [
        nbformat.v4.new_markdown_cell("# Test template"),
        params,
        nbformat.v4.new_code_cell("import sys, time\nimport pandas as pd\n"
                                  "import matplotlib.pyplot as plt\nfrom workbench import tracking"),
        nbformat.v4.new_code_cell(
            "df = pd.DataFrame({'i': list(range(n)), 'label': label, 'token': token})\n"
            "tracking.log_table(df, 'results')\n"
            "fig, ax = plt.subplots(); ax.plot(range(n)); tracking.log_figure(fig, 'line')\n"
            "tracking.log_metrics({'n': n, 'sum_items': sum(items), 'nan': float('nan')})\n"
            "tracking.log_summary({'decision': 'ship', 'label': label})\n"
            "print('SECRET-CODE-MARKER-OUTPUT')"),
        nbformat.v4.new_code_cell("if fail:\n    raise ValueError('boom in cell 4')"),
        nbformat.v4.new_code_cell("if stop:\n    sys.exit()"),
        nbformat.v4.new_code_cell("time.sleep(sleep)"),
        nbformat.v4.new_code_cell("print('last cell ran')"),
    ]
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}
    nbformat.write(book, path)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.setenv("WORKBENCH_REPORTS_DIR", str(root / "reports"))
    mp.delenv(tracking.ENV_RUN_DIR, raising=False)
    yield {"root": root, "notebook": _write_notebook(root / "t1.ipynb"),
           "uri": f"sqlite:///{root / 'mlflow.db'}"}
    mp.undo()


# ------------------------------------------------------------------ parameters (no kernel)
def test_parse_parameters_types_and_required():
    params = runner.parse_parameters(PARAMETERS)
    assert params["n"].type is int and params["alpha"].type is float
    assert params["items"].type is list and params["anything"].type is None
    assert params["token"].required and not params["anything"].required
    assert params["label"].help == "any text"
    with pytest.raises(ParameterError, match="line 2"):
        runner.parse_parameters("a = 1\nb = a + 1")
    with pytest.raises(ParameterError, match="only `name = literal`"):
        runner.parse_parameters("import os")


def test_validate_parameters():
    declared = runner.parse_parameters(PARAMETERS)
    ok = runner.validate_parameters(declared, {"token": "t", "alpha": 1},
                                    {"label": "007", "n": "12", "fail": "true",
                                     "items": "[3, 4]", "anything": "007"})
    # a string default keeps the text; papermill would have made 7 of "007"
    assert ok == {"token": "t", "alpha": 1.0, "label": "007", "n": 12, "fail": True,
                  "items": [3, 4], "anything": "007"}
    assert isinstance(ok["alpha"], float)
    cases = [({"token": "t", "nope": 1}, None, "unknown parameter 'nope'"),
             ({}, None, "missing required parameter\\(s\\): token"),
             ({"token": None}, None, "'token' is required"),
             ({"token": "t", "n": 1.5}, None, "'n': expected int"),
             ({"token": "t", "n": True}, None, "'n': expected int"),
             ({"token": "t", "label": 7}, None, "'label': expected str"),
             ({"token": "t"}, {"n": "x"}, "'n': expected int"),
             ({"token": "t"}, {"fail": "maybe"}, "'fail': expected bool"),
             ({"token": "t", "os.system('x'); a": 1}, None, "not a Python identifier"),
             ({"token": "t", "class": 1}, None, "not a Python identifier")]
    for values, text, match in cases:
        with pytest.raises(ParameterError, match=match):
            runner.validate_parameters(declared, values, text)


def test_bad_input_exits_2_before_any_kernel(env, capsys, tmp_path):
    nb = str(env["notebook"])
    assert main(["run", nb, "-p", "zz", "1"]) == 2
    assert main(["run", nb, "-p", "n", "abc", "-p", "token", "t"]) == 2
    assert main(["run", nb]) == 2  # token is required
    assert main(["run", "no_such_template"]) == 2
    jobs = tmp_path / "jobs.yml"
    jobs.write_text(f"- template: {nb}\n  parameters: {{token: t, n: oops}}\n")
    assert main(["run-jobs", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'zz'" in err and "'n': expected int" in err
    assert "job 0" in err
    assert not list((env["root"] / "reports").glob("*/*/*/run.json"))  # nothing started


# ------------------------------------------------------------------ executed runs
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


def test_parallel_jobs_stop_timeout_and_success_on_sqlite(env, tmp_path, success):
    """Two runs at once on one SQLite file: separate folders, all synced, right statuses."""
    from mlflow.tracking import MlflowClient

    nb = env["notebook"]
    jobs = tmp_path / "jobs.yml"
    jobs.write_text(
        f"- template: {nb}\n  name: stopped\n  parameters: {{token: t, stop: true}}\n"
        f"- template: {nb}\n  name: timeout\n  cell_timeout: 10\n"
        f"  parameters: {{token: t, sleep: 120.0}}\n"
        f"- template: {nb}\n  name: fine\n  parameters: {{token: t}}\n")
    results = runner.run_jobs(jobs, parallel=2, progress=False)
    by_name = {r["name"]: r for r in results}
    assert by_name["stopped"]["exit_code"] == 3 and by_name["stopped"]["status"] == "STOPPED"
    assert "cell 5" in by_name["stopped"]["message"] and "SystemExit" in by_name["stopped"]["message"]
    assert by_name["timeout"]["exit_code"] == 1 and "cell 6" in by_name["timeout"]["message"]
    assert "CellTimeoutError" in by_name["timeout"]["message"]
    assert by_name["fine"]["exit_code"] == 0
    assert runner.jobs_exit_code(results) == 1
    dirs = {r["run_dir"] for r in results}
    assert len(dirs) == 3 and all(r["synced"] for r in results)
    client = MlflowClient(env["uri"])
    status = {r["name"]: client.get_run(r["mlflow_run_id"]).info.status for r in results}
    assert status == {"stopped": "FAILED", "timeout": "FAILED", "fine": "FINISHED"}
    pids = {json.loads(open(f"{d}/run.json").read())["pid"] for d in dirs}
    assert len(pids) == 3  # each job in its own process
