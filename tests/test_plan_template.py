"""The plan template executed through papermill on the small sample's pre-period, logging the
plan that the ab_test template's `plan_run` reads back."""
from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from workbench import runner, tracking
from workbench.plan import TABLE, TAG, load, planned_mde

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a kernel and a plan: over a minute on a loaded machine
def test_plan_template_runs_and_logs_the_plan(small_warehouse, tmp_path, monkeypatch):
    path = ROOT / "templates" / "plan.ipynb"
    params = runner.read_parameters(path)  # literals only
    assert {"source", "start_date", "end_date", "mde"} <= set(params)
    for cell in nbformat.read(path, as_version=4).cells:
        assert "\ndef " not in f"\n{cell.source}" and "\nclass " not in f"\n{cell.source}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    metrics = str(ROOT / "workbench" / "data" / "checkout_metrics.yml")
    result = runner.run_template("plan", {"source": str(small_warehouse), "metrics": metrics,
                                          "mde": 0.05}, progress=False)
    assert result.ok, result.message
    table = pd.read_parquet(result.run_dir / "tables" / f"{TABLE}.parquet")
    assert set(table["cuped"]) == {False, True}
    assert np.isfinite(table["n_fixed"]).all() and (table["mde"] == 0.05).all()
    assert result.record["tags"][TAG] == "checkout_redesign"
    assert "power_curve" in result.record["figures"]
    # what a readout links to: the table read back by run id gives the planned MDEs
    back = load(result.run_dir)
    assert planned_mde(back) == dict.fromkeys(table["metric"].unique(), 0.05)
    # the catalogue's line of the plan: kind, experiment, planned days of the primary metric
    summary = result.record["summary"]
    assert summary["kind"] == "plan" and summary["experiment_id"] == "checkout_redesign"
    first = table[table["metric"] == summary["primary_metric"]]
    assert summary["planned_days"] in set(first["days_fixed"])

    # ONE ab_test run after it: plan_run defaults to "auto" and finds this plan by its tag
    readout = runner.run_template("ab_test", {"source": str(small_warehouse), "pymc_draws": 0,
                                              "segments": ["device"]}, progress=False)
    assert readout.ok, readout.message
    power = pd.read_parquet(readout.run_dir / "tables" / "power.parquet")
    results = pd.read_parquet(readout.run_dir / "tables" / "results.parquet")
    results = results[results["dimension"].isna() | (results["dimension"] == "(all)")] \
        if "dimension" in results else results
    used = results.set_index(["metric", "variant"])["cuped"]
    assert len(power) and power["planned_days"].notna().all()
    for r in power.to_dict("records"):
        row = table[(table["metric"] == r["metric"])
                    & (table["cuped"] == bool(used.loc[(r["metric"], r["variant"])]))].iloc[0]
        assert r["planned_days"] == row["days_fixed"] and r["planned_n"] == row["n_fixed"]
        assert r["mde"] == 0.05
    import mlflow

    plan_id = result.record["mlflow_run_id"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    tags = client.get_run(readout.record["mlflow_run_id"]).data.tags
    assert tags["workbench.plan_run"] == plan_id
    assert client.get_run(plan_id).data.tags[TAG] == "checkout_redesign"
