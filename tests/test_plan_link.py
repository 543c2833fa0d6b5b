"""A readout linked to its plan (workbench/tracking/plans.py): the plan run found by its tag
(newest finished, of this experiment only), the power table's planned columns against the
logged plan table read back with pandas, the record's tag and sentence, and the catalogue
listing plan runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.dashboards import catalogue
from workbench.errors import ParameterError
from workbench.readout.record import ReadoutRecord
from workbench.tracking import plans

START, END = "2026-09-28", "2026-10-04"
EXP = "checkout_redesign"


def _plan_run(reports: Path, run_id: str, experiment: str, *, status: str = "FINISHED",
              started: str = "2026-10-01T10:00:00Z", table: pd.DataFrame | None = None,
              summary: dict | None = None) -> Path:
    """A run folder as the runner writes it (run.json, tables/plan.csv)."""
    stamp = started.replace("-", "").replace(":", "")[:15] + "Z"
    folder = reports / "plan" / experiment / f"{stamp}-{run_id[:8]}"
    (folder / "tables").mkdir(parents=True)
    if table is None:
        table = pd.DataFrame({"metric": ["conversion"], "cuped": [False], "mde": [0.05],
                              "n_fixed": [1000.0], "days_fixed": [3.0],
                              "n_sequential": [1500.0], "days_sequential": [4.0]})
    table.to_csv(folder / "tables" / "plan.csv", index=False)
    data = {"run_id": run_id, "template": "plan", "name": experiment, "status": status,
            "started_at": started, "ended_at": started, "tags": {plans.TAG: experiment},
            "parameters": {"experiment_id": experiment}, "summary": summary or {},
            "tables": ["plan"], "figures": []}
    (folder / "run.json").write_text(json.dumps(data))
    return folder


def test_lookup_newest_finished_plan_of_the_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    old = _plan_run(tmp_path, "a" * 32, EXP, started="2026-10-01T10:00:00Z")
    new = _plan_run(tmp_path, "b" * 32, EXP, started="2026-10-02T10:00:00Z")
    _plan_run(tmp_path, "c" * 32, EXP, status="FAILED", started="2026-10-03T10:00:00Z")
    _plan_run(tmp_path, "d" * 32, EXP, status="RUNNING", started="2026-10-04T10:00:00Z")
    _plan_run(tmp_path, "e" * 32, "other_experiment", started="2026-10-05T10:00:00Z")
    assert plans.find(EXP, tmp_path) == new
    assert plans.locate("auto", EXP, tmp_path) == new
    assert plans.locate(EXP, None, tmp_path) == new  # the planned experiment's id
    assert plans.locate("a" * 32, None, tmp_path) == old  # a run id
    assert plans.locate(str(old), None, tmp_path) == old  # a folder
    table, run_id = plans.resolve("auto", EXP, tmp_path)
    assert run_id == "b" * 32
    pd.testing.assert_frame_equal(table, pd.read_csv(new / "tables" / "plan.csv"))
    # "auto" without a plan stays silent; an explicit id that finds nothing names it
    assert plans.resolve("auto", "nothing_planned", tmp_path) == (None, None)
    with pytest.raises(ParameterError, match="no_such_plan"):
        plans.resolve("no_such_plan", EXP, tmp_path)
    with pytest.raises(ParameterError, match="plan_run"):
        plans.locate("other", EXP, tmp_path / "empty")


@pytest.fixture(scope="module")
def linked(small_warehouse, tmp_path_factory):
    """A plan of the sample's pre-period logged as a run folder (CSV), the readout linked to
    it with ``plan="auto"`` (frequentist) and by experiment id (sequential)."""
    reports = tmp_path_factory.mktemp("reports")
    p = wb.plan(small_warehouse, None, start_date=START, end_date=END, mde=0.05,
                experiment_id=EXP)
    folder = _plan_run(reports, "f" * 32, EXP, table=p.to_frame())
    exp = wb.Experiment.from_source(small_warehouse)
    mp = pytest.MonkeyPatch()
    mp.setenv("WORKBENCH_REPORTS_DIR", str(reports))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{reports / 'none.db'}")
    try:
        fixed = exp.analyze(plan="auto", timeseries=False)
        seq = exp.analyze("sequential", plan=EXP, timeseries=False)
    finally:
        mp.undo()
    return folder, fixed, seq, exp


@pytest.mark.parametrize("which", ["fixed", "sequential"])
def test_power_table_planned_columns_equal_the_logged_plan(linked, which):
    folder, fixed, seq, _ = linked
    result = fixed if which == "fixed" else seq
    logged = pd.read_csv(folder / "tables" / "plan.csv")  # read independently
    power = result.power
    assert list(power.columns[:12]) == [
        "metric", "variant", "mde", "power", "target_power", "n_so_far", "n_needed",
        "days_elapsed", "days_needed", "days_left", "planned_n", "planned_days"]
    used = result.results.set_index(["metric", "variant"])["cuped"]
    assert used.any()  # the sample's metrics have covariates: the CUPED rows are used
    for r in power.to_dict("records"):
        cup = bool(used.loc[(r["metric"], r["variant"])])
        row = logged[(logged["metric"] == r["metric"]) & (logged["cuped"] == cup)].iloc[0]
        assert r["planned_n"] == pytest.approx(row[f"n_{which}"])
        assert r["planned_days"] == pytest.approx(row[f"days_{which}"])
        assert r["mde"] == pytest.approx(row["mde"])
    assert result.plan_run == "f" * 32


def test_record_links_the_plan_and_says_the_progress(linked, small_warehouse):
    _, fixed, _, exp = linked
    record = ReadoutRecord.from_result(fixed)
    assert record.tags()["workbench.plan_run"] == "f" * 32
    again = ReadoutRecord.from_logged(record.summary_dict(), record.tables)
    assert again.plan_run == "f" * 32
    primary = fixed.results.loc[fixed.results["role"] == "primary", "metric"].unique()
    said = [n for n in fixed.notes if "planned" in n and "power so far" in n]
    assert len(said) == len(primary) * fixed.power["variant"].nunique() >= 1
    row = fixed.power[fixed.power["metric"] == primary[0]].iloc[0]
    assert f"{row['planned_days']:.0f} days" in said[0]
    assert f"{row['power'] * 100:.0f} %" in said[0]
    assert any(n in str(fixed.summary()) for n in said)
    # the dashboard renders what the record holds: the sentence by the decision, the columns
    from workbench.dashboards import text
    from workbench.readout.table import table_cells

    _, sentences = text.decision_sentences(again)
    assert set(said) <= set(sentences)
    header, cells = table_cells("power", again.table("power"))
    assert header[-2:] == ["planned n", "planned days"]
    assert cells[0][-1] == f"{again.table('power')['planned_days'].iloc[0]:.0f} days"
    # no plan: no planned columns' values, no sentence, no tag
    plain = exp.analyze(planned_mde=0.05, timeseries=False)
    assert plain.power["planned_days"].isna().all() and plain.plan_run is None
    assert "workbench.plan_run" not in ReadoutRecord.from_result(plain).tags()
    assert not [n for n in plain.notes if "power so far" in n]


def test_auto_without_a_plan_is_silent(small_warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none.db'}")
    exp = wb.Experiment.from_source(small_warehouse)
    result = exp.analyze(plan="auto", timeseries=False)
    assert result.power.empty and result.plan_run is None
    with pytest.raises(ParameterError, match="no_such_plan"):
        exp.analyze(plan="no_such_plan", timeseries=False)


def test_catalogue_lists_a_plan_run(tmp_path, small_warehouse):
    p = wb.plan(small_warehouse, None, start_date=START, end_date=END, mde=0.05,
                experiment_id=EXP)
    head = p.headline()
    _plan_run(tmp_path, "9" * 32, EXP, table=p.to_frame(), summary=head)
    runs = catalogue.list_runs(reports_dir=tmp_path,
                               tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")
    (run,) = runs
    assert run.kind == "plan" and run.experiment == EXP
    table = p.to_frame()
    row = table[(table["metric"] == head["primary_metric"]) & table["cuped"]].iloc[0]
    assert head["primary_metric"] in p.parameters["primary_metrics"]
    assert run.planned_days == pytest.approx(row["days_fixed"]) and np.isfinite(run.planned_days)
    assert run.to_dict()["kind"] == "plan"
    assert run.to_dict()["planned_days"] == run.planned_days


def test_lookup_falls_back_to_mlflow(tmp_path, monkeypatch):
    """A plan run only MLflow holds (no run folder here): the newest FINISHED one of the
    experiment, its table downloaded; a newer FAILED one and another experiment's ignored."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("plans", artifact_location=str(tmp_path / "artifacts"))
    made = {}
    for key, experiment, status, start, days in (("old", EXP, "FINISHED", 1, 3.0),
                                                 ("new", EXP, "FINISHED", 2, 5.0),
                                                 ("failed", EXP, "FAILED", 3, 7.0),
                                                 ("other", "other_exp", "FINISHED", 4, 9.0)):
        run = client.create_run(exp_id, start_time=start * 1000, tags={plans.TAG: experiment})
        src = tmp_path / key / "tables"
        src.mkdir(parents=True)
        pd.DataFrame({"metric": ["conversion"], "cuped": [False], "mde": [0.05],
                      "n_fixed": [100.0], "days_fixed": [days]}).to_csv(src / "plan.csv",
                                                                      index=False)
        client.log_artifacts(run.info.run_id, str(src), artifact_path="tables")
        client.set_terminated(run.info.run_id, status=status, end_time=start * 1000 + 10)
        made[key] = run.info.run_id
    table, run_id = plans.resolve("auto", EXP, tmp_path / "no_reports")
    assert run_id == made["new"] and table["days_fixed"].tolist() == [5.0]
    table, run_id = plans.resolve(made["old"], EXP, tmp_path / "no_reports")  # by run id
    assert run_id == made["old"] and table["days_fixed"].tolist() == [3.0]
    assert plans.resolve("auto", "unplanned", tmp_path / "no_reports") == (None, None)
    # downloaded once per run into the cache (no temporary folder left per readout)
    assert sorted(p.name for p in (tmp_path / "cache" / "plans").iterdir()) \
        == sorted([made["new"], made["old"]])
    assert plans.find_in_mlflow(EXP) == tmp_path / "cache" / "plans" / made["new"]
