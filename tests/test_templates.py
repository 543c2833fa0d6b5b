"""Every template (and the quickstart notebook) executed through papermill on the small sample."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import nbformat
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from workbench import runner, tracking
from workbench.config import get_settings
from workbench.data.fingerprint import fingerprint

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ["ab_test", "model_experiment", "explain", "drift_report", "aa_test", "plan"]


def test_templates_are_thin_and_have_literal_parameters():
    for name in TEMPLATES:
        path = ROOT / "templates" / f"{name}.ipynb"
        book = nbformat.read(path, as_version=4)
        assert book.metadata["kernelspec"]["name"] == "python3"
        params = runner.read_parameters(path)  # literals only, or it raises
        assert "source" in params
        for cell in book.cells:
            if cell.cell_type == "code":
                assert "\ndef " not in f"\n{cell.source}" and "\nclass " not in f"\n{cell.source}"
    jobs = runner.load_jobs(ROOT / "templates" / "demo_jobs.yml")  # validates every job
    assert sorted(Path(j["template"]).stem for j in jobs) == sorted(TEMPLATES)


@pytest.fixture(scope="module")
def executed(template_runs):
    """All templates + the quickstart (tests/conftest.py: template_runs)."""
    return template_runs


def _run(executed, template):
    results, uri, _ = executed
    r = results[template]
    assert r["exit_code"] == 0, r["message"]
    assert r["synced"]
    run_dir = Path(r["run_dir"])
    return run_dir, json.loads((run_dir / "run.json").read_text()), uri


def _sql(path, query):
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query).df()


def test_ab_test(executed, small_warehouse):
    run_dir, record, uri = _run(executed, "ab_test")
    assert {"results", "segments", "timeseries", "validation"} <= set(record["tables"])
    assert {"decision", "srm_p_value"} <= set(record["summary"])
    assert record["tags"]["workbench.data_fingerprint"] == fingerprint(small_warehouse)
    assert record["tags"]["workbench.data_source"] == str(Path(small_warehouse).resolve())
    results = pd.read_parquet(run_dir / "tables" / "results.parquet")
    # independent: counts, conversion and SRM from SQL on the raw tables, scipy's chi-square
    raw = _sql(small_warehouse, """
        WITH x AS (SELECT * FROM experiments WHERE experiment_id = 'checkout_redesign'),
        a AS (SELECT a.user_id, a.variant, a.assigned_at FROM assignments a
              WHERE experiment_id = 'checkout_redesign' AND user_id IN (
                  SELECT user_id FROM assignments WHERE experiment_id = 'checkout_redesign'
                  GROUP BY 1 HAVING count(DISTINCT variant) = 1))
        SELECT a.variant, count(*) AS n, avg(CASE WHEN EXISTS (
            SELECT 1 FROM events e WHERE e.user_id = a.user_id AND e.event_type = 'order'
              AND e.event_time >= a.assigned_at
              AND e.event_time < (SELECT max(end_date) FROM x) + INTERVAL 1 DAY)
            THEN 1.0 ELSE 0.0 END) AS conversion
        FROM a GROUP BY 1 ORDER BY 1""").set_index("variant")
    srm = sps.chisquare(raw["n"], raw["n"].sum() / 3 * np.ones(3)).pvalue
    assert record["summary"]["srm_p_value"] == pytest.approx(srm, rel=1e-6)
    conv = results[results["metric"] == "conversion"].set_index("variant")
    for variant in ["treatment_a", "treatment_b"]:
        assert conv.loc[variant, "n_variant"] == raw.loc[variant, "n"]
        if not conv.loc[variant, "cuped"]:
            assert conv.loc[variant, "control_mean"] == pytest.approx(raw.loc["control", "conversion"])
            assert conv.loc[variant, "variant_mean"] == pytest.approx(raw.loc[variant, "conversion"])
    from mlflow.tracking import MlflowClient

    mrun = MlflowClient(uri).get_run(record["mlflow_run_id"])
    assert MlflowClient(uri).get_experiment(mrun.info.experiment_id).name == "checkout_redesign"
    lift = conv.loc["treatment_a", "effect"]
    assert mrun.data.metrics["conversion.treatment_a.lift"] == pytest.approx(lift)
    if not conv.loc["treatment_a", "cuped"]:  # independent: the relative lift of the raw means
        expected = raw.loc["treatment_a", "conversion"] / raw.loc["control", "conversion"] - 1
        assert mrun.data.metrics["conversion.treatment_a.lift"] == pytest.approx(expected)
    assert "bayes.conversion.treatment_a.chance_to_win" in mrun.data.metrics
    # the same variance reduction in the table, the report and MLflow (CUPED rows)
    for _, row in results[results["cuped"].astype(bool)].iterrows():
        key = f"{row['metric']}.{row['variant']}.variance_reduction"
        assert mrun.data.metrics[key] == pytest.approx(row["variance_reduction"])
    # planned_mde: the power reached so far for every overall comparison
    power = pd.read_parquet(run_dir / "tables" / "power.parquet")
    assert set(zip(power["metric"], power["variant"])) == set(zip(results["metric"],
                                                                  results["variant"]))
    assert (power["mde"] == 0.05).all() and power["power"].between(0, 1).all()
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png") >= 4  # figures inline in the stakeholder report
    assert "experiment.analyze(" not in html  # code hidden


def test_model_experiment_logs_a_model_with_signature(executed, small_warehouse):
    import mlflow.pyfunc

    run_dir, record, uri = _run(executed, "model_experiment")
    assert record["models"] == ["best_model"] and "scores" in record["tables"]
    scores = pd.read_parquet(run_dir / "tables" / "scores.parquet")
    assert len(scores) >= 2  # scikit-learn and xgboost compared
    model = mlflow.pyfunc.load_model(str(run_dir / "models" / "best_model"))
    assert model.metadata.signature is not None
    data = _sql(small_warehouse, "SELECT * FROM model_data WHERE period = 'current'")
    features = [c.name for c in model.metadata.signature.inputs.inputs]
    assert set(features) <= set(data.columns)
    assert record["summary"]["best_model"] in set(scores["model"])
    # the in-sample predictions of the logged model are informative (independent AUC)
    example = json.loads((run_dir / "models" / "best_model" / "input_example.json").read_text())
    assert example
    assert 0.5 < max(v for k, v in record["metrics"].items() if k.endswith("roc_auc")) <= 1
    from sklearn.metrics import roc_auc_score

    train = _sql(small_warehouse, "SELECT * FROM model_data WHERE period = 'reference'")
    predicted = np.asarray(model.predict(train[features])).astype(float)
    assert roc_auc_score(train["label"], predicted) > 0.55  # scored here, not by the run


def test_explain(executed):
    run_dir, record, _ = _run(executed, "explain")
    imp = pd.read_parquet(run_dir / "tables" / "shap_importance.parquet")
    assert len(imp) > 3 and record["summary"]["top_feature"] == str(imp.iloc[0, 0])
    values = imp["mean_abs_shap"]
    assert values.is_monotonic_decreasing and values.iloc[0] > 0  # the top feature is the largest
    assert {"shap_importance", "shap_beeswarm"} <= set(record["figures"])
    assert "uplift_shap_importance" in record["tables"]


def test_drift_report(executed, small_warehouse):
    run_dir, record, _ = _run(executed, "drift_report")
    drift = pd.read_parquet(run_dir / "tables" / "drift.parquet")
    assert record["summary"]["dataset_drift"] in (True, False)
    assert (run_dir / "artifacts" / "evidently" / "evidently_drift.html").stat().st_size > 10_000
    # independent: a two-sample KS test on every numeric column; the strongest shift must be
    # among the columns the template flags
    data = _sql(small_warehouse, "SELECT * FROM model_data")
    ref, cur = data[data.period == "reference"], data[data.period == "current"]
    numeric = [c for c in drift["column"] if c in data and pd.api.types.is_float_dtype(data[c])]
    ks = {c: sps.ks_2samp(ref[c].dropna(), cur[c].dropna()).statistic for c in numeric}
    strongest = max(ks, key=ks.get)
    assert drift.set_index("column").loc[strongest, "drifted"]


def test_quickstart_notebook(executed):
    run_dir, record, _ = _run(executed, "1.0-wb-quickstart")
    executed_nb = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    assert all(c.get("execution_count") for c in executed_nb.cells if c.cell_type == "code")
    # the notebook's own start_run made a second, nested record
    root = executed[2]
    assert list((root / "reports" / "quickstart").glob("*/*/run.json"))
    assert get_settings  # settings resolved in the kernel from the same environment


@pytest.mark.slow
def test_ab_test_with_pymc_models(small_warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    result = runner.run_template("ab_test", {"source": str(small_warehouse), "pymc_draws": 300,
                                             "pymc_chains": 2, "segments": ["device"]},
                                 progress=False)
    assert result.ok, result.message
    hurdle = pd.read_parquet(result.run_dir / "tables" / "revenue_hurdle.parquet")
    results = pd.read_parquet(result.run_dir / "tables" / "results.parquet")
    # the hurdle model's revenue per user is close to the observed means (weak priors)
    obs = results[results["metric"] == "revenue_per_user"].set_index("variant")
    for _, row in hurdle[hurdle["metric"] == "revenue_per_user"].iterrows():
        if row["variant"] in obs.index and not obs.loc[row["variant"], "cuped"]:
            assert row["variant_mean"] == pytest.approx(obs.loc[row["variant"], "variant_mean"],
                                                        rel=0.3)
    assert "hierarchical" in result.record["tables"]



@pytest.mark.slow
def test_ab_test_incremental_equals_a_full_run(executed, small_warehouse, tmp_path, monkeypatch):
    """A scheduled daily run with an incremental state: the first run builds it on the data up
    to two days before the end, the next one (the last two days arrived) updates it with those
    days' events; its tables equal those of a run reading every event (the executed ab_test,
    the same parameters on the complete data)."""
    import shutil

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    work, state = tmp_path / "work.duckdb", tmp_path / "state.duckdb"
    shutil.copy(small_warehouse, work)
    end = _sql(small_warehouse, "SELECT max(end_date) AS d FROM experiments")["d"][0]
    cut = f"TIMESTAMP '{pd.Timestamp(end) - pd.Timedelta(days=1)}'"
    with duckdb.connect(str(work)) as con:
        con.execute(f"DELETE FROM events WHERE event_time >= {cut}")
        con.execute(f"DELETE FROM assignments WHERE assigned_at >= {cut}")
    params = {"source": str(work), "pymc_draws": 0, "segments": ["device"], "planned_mde": 0.05,
              "incremental": str(state)}
    first = runner.run_template("ab_test", params, progress=False)
    assert first.ok, first.message
    with duckdb.connect(str(work)) as con:
        con.execute(f"ATTACH '{small_warehouse}' AS src (READ_ONLY)")
        con.execute(f"INSERT INTO events SELECT * FROM src.events WHERE event_time >= {cut}")
        con.execute("INSERT INTO assignments SELECT * FROM src.assignments "
                    f"WHERE assigned_at >= {cut}")
    daily = runner.run_template("ab_test", params, progress=False)
    assert daily.ok, daily.message
    html = (daily.run_dir / "report.html").read_text()
    assert "incremental: state" in html and "updated;" in html  # not rebuilt
    full_dir, _, _ = _run(executed, "ab_test")
    for name in ("results", "segments", "timeseries"):
        a = pd.read_parquet(full_dir / "tables" / f"{name}.parquet")
        b = pd.read_parquet(daily.run_dir / "tables" / f"{name}.parquet")
        assert list(a.columns) == list(b.columns) and len(a) == len(b), name
        num = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
        other = [c for c in a.columns if c not in num]
        pd.testing.assert_frame_equal(a[other], b[other], check_dtype=False)
        np.testing.assert_allclose(b[num].to_numpy(float), a[num].to_numpy(float),
                                   rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)

# -- any experiment: another schema, a per-unit file, the "your own data" walkthrough ----------
@pytest.fixture(scope="module")
def other_runs(other_experiment, tmp_path_factory):
    """Three `workbench run` processes at once, each with its own reports folder and MLflow
    file: ab_test on the foreign event log, ab_test on its per-unit CSV, the 2.0 notebook."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("other_runs")
    exe = [sys.executable, "-m", "workbench.cli", "run"]
    commands = {
        "log": ["ab_test", "-p", "source", str(other_experiment["path"]), "-p", "experiment_id",
                "pricing", "-p", "metrics", str(other_experiment["metrics"]),
                "-p", "pymc_draws", "50", "-p", "pymc_chains", "1"],
        "units": ["ab_test", "-p", "source", str(other_experiment["units_csv"]), "-p",
                  "experiment_id", "pricing_units", "-p", "metrics",
                  str(other_experiment["units_metrics"]), "-p", "variant_column", "arm",
                  "-p", "unit_column", "customer_id", "-p", "pymc_draws", "0"],
        "own": [str(ROOT / "notebooks" / "2.0-wb-your-own-data.ipynb"), "-p", "n_users", "4000",
                "-p", "csv_path", str(root / "own.csv")],
    }
    procs = {}
    for key, args in commands.items():
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / key / 'mlflow.db'}",
               "WORKBENCH_REPORTS_DIR": str(root / key / "reports")}
        env.pop(tracking.ENV_RUN_DIR, None)
        (root / key).mkdir()
        procs[key] = subprocess.Popen([*exe, *args, "--no-progress"], cwd=root / key, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {}
    for key, proc in procs.items():
        text = proc.communicate(timeout=600)[0]
        runs = sorted((root / key / "reports").glob("*/*/*/run.json"))
        out[key] = {"code": proc.returncode, "output": text, "root": root / key,
                    "runs": [json.loads(p.read_text()) | {"dir": p.parent} for p in runs]}
    return out


def _only_run(runs, key, template="ab_test"):
    r = runs[key]
    assert r["code"] == 0, r["output"]
    assert "FINISHED (exit 0)" in r["output"]
    (record,) = [x for x in r["runs"] if x["template"] == template]
    assert record["status"] == "FINISHED"
    return record


def _assert_lifts(results, per, variant):
    means = per.groupby(variant)[["purchased", "spend", "visits"]].mean()
    rows = results.set_index("metric")
    for metric in ("purchased", "spend", "visits"):
        assert rows.loc[metric, "variant"] == "B"
        assert rows.loc[metric, "effect"] == pytest.approx(
            means.loc["B", metric] / means.loc["A", metric] - 1, rel=1e-9)


def test_ab_test_on_another_schema(other_runs, other_experiment, tmp_path):
    from workbench.cli import main

    record = _only_run(other_runs, "log")
    notes = " | ".join(record["summary"]["notes"])
    for sentence in ("segments: skipped (no 'users' table",
                     "PyMC revenue hurdle model: skipped (no mean metric has log_stats: true",
                     "PyMC hierarchical model: skipped (no segment dimension",
                     "events.ts is time-zone aware; converted to UTC",
                     "control: 'A' (no variant named 'control'",
                     "planned split: equal over A, B (no 'experiments' table"):
        assert sentence in notes
    assert {"results", "timeseries", "validation", "bayesian"} <= set(record["tables"])
    assert not {"segments", "revenue_hurdle", "hierarchical"} & set(record["tables"])
    results = pd.read_parquet(record["dir"] / "tables" / "results.parquet")
    _assert_lifts(results, other_experiment["per_unit"], "variant")
    html = (record["dir"] / "report.html").read_text()
    assert "the span of the assignments" in html  # the notes are displayed
    # `workbench readout` with the template's correction gives the same numbers
    out = tmp_path / "cli.parquet"
    assert main(["readout", "--source", str(other_experiment["path"]), "--experiment",
                 "pricing", "--metrics", str(other_experiment["metrics"]), "--correction",
                 "holm", "--output", str(out)]) == 0
    cli = pd.read_parquet(out)
    for col in ("effect", "ci_lower", "ci_upper", "p_value_adjusted"):
        np.testing.assert_allclose(cli[col], results[col], rtol=1e-12)


def test_ab_test_on_a_per_unit_csv(other_runs, other_experiment):
    record = _only_run(other_runs, "units")
    notes = " | ".join(record["summary"]["notes"])
    assert "'device', 'country', 'channel' skipped (not column(s) of the per-unit table)" in notes
    assert "time series: skipped (no date column" in notes
    assert "PyMC models: skipped (pymc_draws = 0)" in notes
    assert "timeseries" not in record["tables"]
    results = pd.read_parquet(record["dir"] / "tables" / "results.parquet")
    _assert_lifts(results, other_experiment["per_unit"].rename(columns={"variant": "arm"}),
                  "arm")


def test_your_own_data_notebook(other_runs, tmp_path):
    from workbench.dashboards import catalogue

    r = other_runs["own"]
    assert r["code"] == 0, r["output"]
    (nested,) = [x for x in r["runs"] if x["template"] == "your_own_data"]
    assert nested["status"] == "FINISHED" and nested["summary"]["decision"]
    frame = pd.read_csv(r["root"].parent / "own.csv")
    results = pd.read_parquet(nested["dir"] / "tables" / "results.parquet").set_index("metric")
    # independent: the CUPED lift of revenue is the OLS coefficient of y ~ new + (x - mean x),
    # divided by the control mean of y adjusted the same way; here the plain ratio check
    conv = frame.groupby("variant")["converted"].mean()
    assert results.loc["converted", "effect"] == pytest.approx(conv["new"] / conv["old"] - 1,
                                                               rel=1e-9)
    uri = f"sqlite:///{r['root'] / 'mlflow.db'}"
    assert nested["mlflow_run_id"] in catalogue.published_run_ids(uri)


@pytest.mark.slow
def test_ab_test_pymc_models_on_a_per_unit_csv(other_experiment, tmp_path, monkeypatch):
    """The PyMC models pick the hurdle's mean metric with log statistics and an existing
    segment column of a per-unit table."""
    import yaml

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    per = other_experiment["per_unit"].copy()
    per["region"] = np.where(per["customer_id"] % 3 == 0, "north", "south")
    per.to_csv(tmp_path / "u.csv", index=False)
    (tmp_path / "u.yml").write_text(yaml.safe_dump({"metrics": [
        {"name": "purchased", "kind": "proportion", "column": "purchased", "role": "primary"},
        {"name": "spend", "kind": "mean", "column": "spend", "log_stats": True}]}))
    result = runner.run_template("ab_test", {
        "source": str(tmp_path / "u.csv"), "metrics": str(tmp_path / "u.yml"),
        "experiment_id": "pricing_pymc", "segments": ["region", "device"],
        "hierarchical_dimension": "device", "pymc_draws": 200, "pymc_chains": 2},
        progress=False)
    assert result.ok, result.message
    hurdle = pd.read_parquet(result.run_dir / "tables" / "revenue_hurdle.parquet")
    pooled = pd.read_parquet(result.run_dir / "tables" / "hierarchical.parquet")
    assert set(hurdle["metric"]) == {"spend"} and set(pooled["metric"]) == {"purchased"}
    assert set(pooled["dimension"].dropna()) == {"region"}
    notes = result.record["summary"]["notes"]
    assert any("'device' skipped" in n for n in notes)
    # the hurdle's revenue per user is close to the observed means (weak priors)
    means = per.groupby("variant")["spend"].mean()
    for _, row in hurdle.iterrows():
        if row["variant"] in means.index:
            assert row["variant_mean"] == pytest.approx(means[row["variant"]], rel=0.3)
