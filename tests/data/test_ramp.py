"""The ramp scenario of the sample generator: its draws follow the stated design, its truth and
naive-pooling expectation are the closed forms, and the CLI writes it."""
from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pytest

from workbench.data.sample import (
    RAMP_BASELINE,
    RAMP_EXPERIMENT,
    RAMP_WEIGHTS,
    generate_ramp,
    load_truth,
)


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    path = tmp_path_factory.mktemp("ramp_data") / "ramp.duckdb"
    return path, generate_ramp(path, seed=3, n_per_phase=20_000)


def test_split_and_conversion_per_phase_follow_the_design(ramp):
    path, _ = ramp
    con = duckdb.connect(str(path), read_only=True)
    df = con.execute("""
        select date_diff('day', date '2026-03-02', a.assigned_at::date) // 7 as k, a.variant,
               count(*) as n, count(o.user_id) as conv
        from assignments a left join (select distinct user_id from events
                                      where event_type = 'order') o using (user_id)
        group by all order by k, variant""").df()
    plan = con.execute("select phase, sum(planned_weight) as s, count(*) as rows "
                       "from experiments group by phase").df()
    con.close()
    assert sorted(df["k"].unique()) == [0, 1, 2]
    assert np.allclose(plan["s"], 1.0) and (plan["rows"] == 2).all()
    for k, grp in df.groupby("k"):
        g = grp.set_index("variant")
        n = g["n"].sum()
        share = g.loc["treatment", "n"] / n
        w = RAMP_WEIGHTS[k]
        assert abs(share - w) < 4 * np.sqrt(w * (1 - w) / n)
        for v, p in (("control", RAMP_BASELINE[k]), ("treatment", RAMP_BASELINE[k] * 1.05)):
            rate = g.loc[v, "conv"] / g.loc[v, "n"]
            assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / g.loc[v, "n"])


def test_truth_is_the_closed_form(ramp):
    path, truth = ramp
    t = truth.set_index("metric")
    p, w = np.array(RAMP_BASELINE), np.array(RAMP_WEIGHTS)
    assert t.loc["conversion", "control_value"] == pytest.approx(p.mean())
    assert t.loc["conversion", "relative_lift"] == pytest.approx(0.05)
    naive = (w @ (p * 1.05) / w.sum()) / ((1 - w) @ p / (1 - w).sum()) - 1
    assert t.loc["conversion", "naive_relative_lift"] == pytest.approx(naive)
    written = load_truth(path, RAMP_EXPERIMENT)
    assert set(written["metric"]) == {"conversion", "revenue_per_user"}


@pytest.mark.slow
def test_cli_writes_the_ramp(tmp_path):
    out = tmp_path / "r.duckdb"
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "sample-data", "--scenario",
                           "ramp", "--users", "3000", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "naive pooled" in proc.stdout and out.exists()
