"""workbench.runner.jobs: a YAML list of runs, checked first, run in separate processes."""
from __future__ import annotations

import json

import pytest

from workbench import runner
from workbench.errors import ParameterError


def test_parallel_jobs_stop_timeout_and_success_on_sqlite(env, tmp_path):
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


def test_load_jobs_checks_every_job_first(env, tmp_path):
    nb = env["notebook"]
    jobs = tmp_path / "jobs.yml"
    jobs.write_text(f"jobs:\n  - template: {nb}\n    parameters: {{token: t, n: 2}}\n")
    assert runner.load_jobs(jobs) == [{"template": str(nb), "name": None,
                                       "parameters": {"token": "t", "n": 2},
                                       "cell_timeout": None}]
    cases = [("[]", "expected a list of jobs"),
             (f"- template: {nb}\n  color: red\n", "unknown keys \\['color'\\]"),
             (f"- template: {nb}\n  parameters: [1]\n", "must be a mapping"),
             (f"- template: {nb}\n  parameters: {{n: 1}}\n", "job 0 .*token"),
             ("- name: x\n", "job 0 needs a `template`"),
             ("- [unclosed\n", "not valid YAML")]
    for text, match in cases:
        jobs.write_text(text)
        with pytest.raises(ParameterError, match=match):
            runner.load_jobs(jobs)


def test_jobs_exit_code_is_the_worst_outcome():
    def codes(*values):
        return runner.jobs_exit_code([{"exit_code": c} for c in values])

    assert codes(0, 0) == 0
    assert codes(0, 3) == 3
    assert codes(3, 1, 0) == 1
    assert codes(1, 2, 3) == 2  # a refused job wins: the input must be fixed first


def test_run_jobs_publish_publishes_only_the_runs_it_made(env, tmp_path, capsys):
    """`make demo`'s step: an older run under reports/ and a failed job stay unpublished."""
    from workbench import tracking
    from workbench.cli import main
    from workbench.dashboards import catalogue

    with tracking.start_run("t1", "older") as older:
        pass
    nb = env["notebook"]
    jobs = tmp_path / "jobs.yml"
    jobs.write_text(f"- template: {nb}\n  name: made\n  parameters: {{token: t}}\n"
                    f"- template: {nb}\n  name: broken\n  parameters: {{token: t, fail: true}}\n")
    assert main(["run-jobs", str(jobs), "--publish", "--no-progress"]) == 1  # one job failed
    records = {r["name"]: r for r in map(tracking.read_run, tracking.find_runs())}
    made, broken = records["made"], records["broken"]
    assert made["status"] == "FINISHED" and broken["status"] == "FAILED"
    published = catalogue.published_run_ids(env["uri"])
    assert made["mlflow_run_id"] in published
    assert older.mlflow_run_id not in published and broken["mlflow_run_id"] not in published
    assert f"published run {made['mlflow_run_id']}" in capsys.readouterr().out
