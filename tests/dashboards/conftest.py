"""Runs for the dashboard tests, logged the way the templates log them.

Made once per session (shared by the widget, catalogue and browser tests): a real readout of the
``small_warehouse`` sample (frequentist, Holm-corrected, with its reasons, arms and robustness
tables, and its Bayesian readout beside it), one of the
``faulty_warehouse`` (with an SRM), a run of an older schema (tables but no readout record) and
a model task (scikit-learn scores, SHAP importance and ``workbench.drift``, one run each), logged
with ``workbench.tracking`` into a temporary reports folder and a temporary SQLite MLflow store.
Readouts are logged with ``tracking.log_record(ReadoutRecord.from_result(...))``, as the ab_test
template does, so what the dashboards show has made the whole round trip.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXPERIMENT = "checkout_redesign"
FAULTY_EXPERIMENT = "checkout_redesign_faulty"
LEGACY_EXPERIMENT = "checkout_redesign_legacy"
MODEL_TASK = "purchase_propensity"


@dataclass
class DashboardRuns:
    reports_dir: Path
    tracking_uri: str
    frequentist: str  # run ids
    latest: str
    faulty: str
    legacy: str
    model: str
    unpublished: str
    results: dict  # run id -> the AnalysisResult (or model tables) that was logged
    records: dict  # run id -> the ReadoutRecord that was logged
    env: dict  # environment for a served dashboard
    model_runs: list  # scores, SHAP and drift runs of one model task (oldest first)
    bayes: object  # the Bayesian readout logged as the latest run's Bayesian table
    experiment: str = EXPERIMENT
    faulty_experiment: str = FAULTY_EXPERIMENT
    legacy_experiment: str = LEGACY_EXPERIMENT


_RUNS: dict = {}


def _readout(source, method="frequentist", segments=("device",), timeseries=True,
             correction=None, robustness=False):
    import workbench as wb

    exp = wb.Experiment.from_source(str(source), EXPERIMENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exp.analyze(method=method, segments=list(segments), timeseries=timeseries,
                           correction=correction, robustness=robustness)


def _experiment_run(result, experiment_name, *, reports_dir, uri, bayes=None):
    """Log a readout as the ab_test template does; returns (run id, the record logged)."""
    import matplotlib.pyplot as plt

    from workbench import tracking
    from workbench.readout.record import ReadoutRecord

    record = ReadoutRecord.from_result(result, bayesian=bayes)
    params = {"experiment_id": EXPERIMENT, "alpha": 0.05, "difference": "relative"}
    with tracking.start_run("ab_test", experiment_name, parameters=params,
                            experiment=experiment_name, reports_dir=reports_dir,
                            tracking_uri=uri) as run:
        tracking.log_record(record)
        tracking.log_figure(result.plot_forest().figure, "forest")
    plt.close("all")
    return run.mlflow_run_id, record


def _legacy_run(result, *, reports_dir, uri):
    """A run of the schema before readout records: tables and a summary without a version."""
    from workbench import tracking
    from workbench.readout.record import RESULTS

    with tracking.start_run("ab_test", LEGACY_EXPERIMENT, experiment=LEGACY_EXPERIMENT,
                            parameters={"experiment_id": EXPERIMENT}, reports_dir=reports_dir,
                            tracking_uri=uri) as run:
        tracking.log_table(result.results, RESULTS)
        tracking.log_summary({"decision": result.decision, "srm_p_value": result.srm_p_value})
    return run.mlflow_run_id


def _model_run(*, reports_dir, uri):
    import shap
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import cross_val_score

    from workbench import tracking
    from workbench.data.sample import model_dataset
    from workbench.drift import drift_table

    data = model_dataset(seed=3, n_reference=1500, n_current=1000)
    features = ["tenure_days", "sessions_30d", "orders_30d", "revenue_30d",
                "days_since_last_visit", "pages_per_session"]
    ref = data[data["period"] == "reference"]
    cur = data[data["period"] == "current"]
    model = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0)
    auc = cross_val_score(model, ref[features], ref["label"], cv=3, scoring="roc_auc")
    scores = pd.DataFrame({"model": ["gradient_boosting"], "roc_auc_mean": [auc.mean()],
                           "roc_auc_sd": [auc.std(ddof=1)]})
    model.fit(ref[features], ref["label"])
    values = shap.TreeExplainer(model).shap_values(ref[features].iloc[:300])
    importance = pd.DataFrame({"feature": features,
                               "mean_abs_shap": np.abs(values).mean(axis=0)})
    drift = drift_table(ref.drop(columns=["period", "label", "user_id"]),
                        cur.drop(columns=["period", "label", "user_id"]))
    # one run per template, as the model_experiment, explain and drift_report templates log them
    ids = []
    for template, table, frame, summary in [
            ("model_experiment", "scores", scores,
             {"best_model": "gradient_boosting", "headline": f"best model gradient_boosting "
                                                             f"(roc_auc {auc.mean():.4f})"}),
            ("explain", "shap_importance", importance, {"model": "gradient_boosting"}),
            ("drift_report", "drift", drift.to_frame(),
             {"dataset_drift": bool(drift.dataset_drift)})]:
        with tracking.start_run(template, MODEL_TASK, experiment=MODEL_TASK,
                                parameters={"task": MODEL_TASK}, reports_dir=reports_dir,
                                tracking_uri=uri) as run:
            tracking.log_table(frame, table)
            tracking.log_summary(summary)
        ids.append(run.mlflow_run_id)
    return ids, {"scores": scores, "shap_importance": importance, "drift": drift}


def build_dashboard_runs(base: Path, small_warehouse: Path, faulty_warehouse: Path) -> DashboardRuns:
    """Log the sample runs once per test session."""
    if "runs" in _RUNS:
        return _RUNS["runs"]
    from workbench.dashboards import catalogue

    reports_dir = base / "reports"
    uri = f"sqlite:///{base / 'mlflow.db'}"
    kw = dict(reports_dir=reports_dir, uri=uri)
    # as the ab_test template reads out: Holm across the metrics x variants, with the
    # decision's reasons, arm-versus-arm comparisons and the robustness table
    readout = _readout(small_warehouse, correction="holm", robustness=True)
    bayes = _readout(small_warehouse, "bayesian", segments=(), timeseries=False)
    faulty_readout = _readout(faulty_warehouse, segments=(), timeseries=False)
    # an older run of the same readout without its Bayesian table, and a copy never published
    frequentist, rec_frequentist = _experiment_run(readout, EXPERIMENT, **kw)
    unpublished, rec_unpublished = _experiment_run(readout, EXPERIMENT, **kw)
    faulty, rec_faulty = _experiment_run(faulty_readout, FAULTY_EXPERIMENT, **kw)
    legacy = _legacy_run(readout, **kw)
    results = {frequentist: readout, unpublished: readout, faulty: faulty_readout,
               legacy: readout}
    records = {frequentist: rec_frequentist, unpublished: rec_unpublished, faulty: rec_faulty}
    model_runs, logged = _model_run(**kw)
    model = model_runs[-1]  # the newest: the model dashboard's default
    results[model] = logged
    # newest last: the default run of the dashboard
    latest, records[latest] = _experiment_run(readout, EXPERIMENT, bayes=bayes, **kw)
    results[latest] = readout
    for run_id in (frequentist, faulty, legacy, *model_runs, latest):
        catalogue.publish(run_id, tracking_uri=uri, reports_dir=reports_dir)
    env = dict(os.environ, WORKBENCH_REPORTS_DIR=str(reports_dir), MLFLOW_TRACKING_URI=uri)
    env.pop(catalogue.ALL_RUNS_ENV, None)
    _RUNS["runs"] = DashboardRuns(reports_dir, uri, frequentist, latest, faulty, legacy, model,
                                  unpublished, results, records, env, model_runs, bayes)
    return _RUNS["runs"]


@pytest.fixture(scope="session")
def dashboard_runs(tmp_path_factory, small_warehouse, faulty_warehouse):
    return build_dashboard_runs(tmp_path_factory.mktemp("dashboards"), small_warehouse,
                                faulty_warehouse)


@pytest.fixture()
def runs_env(dashboard_runs, monkeypatch):
    """Point the settings at the session's runs (as ``workbench serve`` does for its kernels)."""
    from workbench.dashboards import catalogue

    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(dashboard_runs.reports_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dashboard_runs.tracking_uri)
    monkeypatch.delenv(catalogue.ALL_RUNS_ENV, raising=False)
    monkeypatch.delenv("QUERY_STRING", raising=False)
    return dashboard_runs
