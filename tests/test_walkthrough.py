"""The plan-to-rollout walkthrough (notebooks/3.0-wb-plan-to-rollout.ipynb), executed as
`workbench run` executes it (papermill, its own kernel): its numbers against hand DuckDB
counts, statsmodels' power solver and the generator's truth."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.data.sample import RAMP_EXPERIMENT, load_truth

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "3.0-wb-plan-to-rollout.ipynb"

# the history's units (anyone active in the 3 weeks) and converters (any order)
HISTORY = """
select count(distinct user_id) as n,
       count(distinct case when event_type = 'order' then user_id end) as conv
from events where event_time >= timestamp '2026-02-09' and event_time < timestamp '2026-03-02'
"""


def _sql(path, query):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query).df()


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    root = tmp_path_factory.mktemp("walkthrough")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "WORKBENCH_REPORTS_DIR": str(root / "reports")}
    env.pop("WORKBENCH_RUN_DIR", None)
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(NOTEBOOK), "-p",
                           "data_dir", str(root / "data"), "--no-progress"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {}
    for path in (root / "reports").glob("*/*/*/run.json"):
        record = json.loads(path.read_text())
        runs[record["template"]] = record | {"dir": path.parent}
    return root, runs


def _table(run, name):
    return pd.read_parquet(run["dir"] / "tables" / f"{name}.parquet")


def test_every_step_ran_and_the_readout_links_its_plan(walked):
    _, runs = walked
    assert {"plan", "plan_to_rollout"} <= set(runs)
    for run in runs.values():
        assert run["status"] == "FINISHED"
    plan, readout = runs["plan"], runs["plan_to_rollout"]
    assert plan["tags"]["workbench.plan"] == RAMP_EXPERIMENT
    assert readout["tags"]["workbench.plan_run"] == plan["mlflow_run_id"]
    assert {"phases", "power", "results"} <= set(readout["tables"])
    assert "power_curve" in plan["figures"] and "phases" in readout["figures"]
    notes = " | ".join(readout["summary"]["notes"])
    assert "conversion: planned 45 days for a 5.0 % MDE; 21 days elapsed" in notes


def test_the_plan_is_statsmodels_size_on_the_history(walked):
    from statsmodels.stats.power import NormalIndPower

    root, runs = walked
    h = _sql(root / "data" / "walkthrough_history.duckdb", HISTORY).iloc[0]
    p = h["conv"] / h["n"]
    effect = 0.05 * p / np.sqrt(p * (1 - p))  # Cohen's d of a 5 % relative lift, 50/50
    n = 2 * NormalIndPower().solve_power(effect, alpha=0.05, power=0.8, ratio=1.0)
    per_day = h["n"] / 21
    plan = _table(runs["plan"], "plan").set_index(["metric", "cuped"])
    assert plan.loc[("conversion", False), "baseline"] == pytest.approx(p, rel=1e-12)
    assert plan.loc[("conversion", False), "n_fixed"] == pytest.approx(n, rel=1e-4)
    assert plan.loc[("conversion", False), "days_fixed"] == np.ceil(n / per_day)
    # the readout's power table carries the plan's sizes beside the power so far
    power = _table(runs["plan_to_rollout"], "power").set_index("metric")
    assert power.loc["conversion", "planned_n"] == pytest.approx(n, rel=1e-4)
    assert power.loc["conversion", "planned_days"] == np.ceil(n / per_day)


def test_stratified_covers_the_truth_and_naive_pooling_does_not(walked, ramp_by_hand):
    root, runs = walked
    ramp = root / "data" / "walkthrough_ramp.duckdb"
    truth = load_truth(ramp, RAMP_EXPERIMENT).set_index("metric")["relative_lift"]
    phases = _table(runs["plan_to_rollout"], "phases")
    row = phases.set_index(["metric", "phase"])
    # conversion by hand: per-phase proportions from SQL, weights the phases' shares of units
    hand = ramp_by_hand.counts(ramp)
    lift, se, _ = ramp_by_hand.stratified_conversion(hand)
    c, t = (hand[hand["variant"] == v] for v in ("control", "treatment"))
    z = stats.norm.ppf(0.975)
    strat = row.loc[("conversion", "(stratified)")]
    assert strat["effect"] == pytest.approx(lift, rel=1e-9)
    assert strat["ci_lower"] == pytest.approx(lift - z * se, rel=1e-9)
    assert lift - z * se <= truth["conversion"] <= lift + z * se
    naive = t["conv"].sum() / t["n"].sum() / (c["conv"].sum() / c["n"].sum()) - 1
    pooled = row.loc[("conversion", "(pooled)")]
    assert pooled["effect"] == pytest.approx(naive, rel=1e-9)
    # both metrics: the stratified interval covers the generator's truth, the naive one not
    for metric in ("conversion", "revenue_per_user"):
        s, n = row.loc[(metric, "(stratified)")], row.loc[(metric, "(pooled)")]
        assert s["ci_lower"] <= truth[metric] <= s["ci_upper"], metric
        assert not n["ci_lower"] <= truth[metric] <= n["ci_upper"], metric
    # the headline is the stratified estimate
    results = _table(runs["plan_to_rollout"], "results").set_index("metric")
    assert results.loc["conversion", "effect"] == pytest.approx(lift, rel=1e-9)
