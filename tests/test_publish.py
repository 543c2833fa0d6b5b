"""Run reading, publishing and the dashboard widgets, on real runs logged through the library.

The runs are made once per session by ``dashboard_runs`` (shared with the browser tests): a real
readout of the ``small_warehouse`` sample (frequentist and Bayesian), one of the
``faulty_warehouse`` (with an SRM), and a model run (scikit-learn scores, SHAP importance and
``workbench.drift``), each logged with ``workbench.tracking`` into a temporary reports folder and
a temporary SQLite MLflow store.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from workbench import publish
from workbench.errors import PublishError

EXPERIMENT = "checkout_redesign"
FAULTY_EXPERIMENT = "checkout_redesign_faulty"
MODEL_TASK = "purchase_propensity"


@dataclass
class DashboardRuns:
    reports_dir: Path
    tracking_uri: str
    frequentist: str  # run ids
    latest: str
    faulty: str
    model: str
    unpublished: str
    results: dict  # run id -> the AnalysisResult / tables that were logged
    env: dict  # environment for a served dashboard
    model_runs: list  # scores, SHAP and drift runs of one model task (oldest first)
    bayes: object  # the Bayesian readout logged as the latest run's ``bayesian`` table


_RUNS: dict = {}


def _readout(source, method="frequentist", segments=("device",), timeseries=True):
    from workbench.experiment import Experiment

    exp = Experiment.from_source(str(source), EXPERIMENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exp.analyze(method=method, segments=list(segments), timeseries=timeseries)


def _experiment_run(result, experiment_name, *, reports_dir, uri, bayes=None):
    """Log a readout as the ab_test template does (``bayes``: its Bayesian readout table)."""
    import matplotlib.pyplot as plt

    from workbench import tracking

    params = {"experiment_id": EXPERIMENT, "alpha": 0.05, "difference": "relative"}
    with tracking.start_run("ab_test", experiment_name, parameters=params,
                            experiment=experiment_name, reports_dir=reports_dir,
                            tracking_uri=uri) as run:
        run.log_table(result.results, "results")
        run.log_table(result.segments, "segments")
        run.log_table(result.timeseries, "timeseries")
        run.log_table(result.validation.to_frame(), "validation")
        if bayes is not None:
            run.log_table(bayes.to_frame(), "bayesian")
        run.log_figure(result.plot_forest().figure, "forest")
        run.log_summary({"decision": result.decision, "srm_p_value": result.srm_p_value,
                         "decisions": result.decisions})
    plt.close("all")
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
            run.log_table(frame, table)
            run.log_summary(summary)
        ids.append(run.mlflow_run_id)
    return ids, {"scores": scores, "shap_importance": importance, "drift": drift}


def build_dashboard_runs(base: Path, small_warehouse: Path, faulty_warehouse: Path) -> DashboardRuns:
    """Log the sample runs once per test session (memoised for the browser tests)."""
    if "runs" in _RUNS:
        return _RUNS["runs"]
    reports_dir = base / "reports"
    uri = f"sqlite:///{base / 'mlflow.db'}"
    kw = dict(reports_dir=reports_dir, uri=uri)
    results = {}
    readout = _readout(small_warehouse)
    bayes = _readout(small_warehouse, "bayesian", segments=(), timeseries=False)
    faulty_readout = _readout(faulty_warehouse, segments=(), timeseries=False)
    # an older run of the same readout without its Bayesian table, and a copy never published
    frequentist = _experiment_run(readout, EXPERIMENT, **kw)
    unpublished = _experiment_run(readout, EXPERIMENT, **kw)
    faulty = _experiment_run(faulty_readout, FAULTY_EXPERIMENT, **kw)
    results.update({frequentist: readout, unpublished: readout, faulty: faulty_readout})
    model_runs, logged = _model_run(**kw)
    model = model_runs[-1]  # the newest: the model dashboard's default
    results[model] = logged
    # newest last: the default run of the dashboard, logged like the ab_test template
    latest = _experiment_run(readout, EXPERIMENT, bayes=bayes, **kw)
    results[latest] = readout
    for run_id in (frequentist, faulty, *model_runs, latest):
        publish.publish(run_id, tracking_uri=uri, reports_dir=reports_dir)
    env = dict(os.environ, WORKBENCH_REPORTS_DIR=str(reports_dir), MLFLOW_TRACKING_URI=uri)
    env.pop(publish.ALL_RUNS_ENV, None)
    _RUNS["runs"] = DashboardRuns(reports_dir, uri, frequentist, latest, faulty, model,
                                  unpublished, results, env, model_runs, bayes)
    return _RUNS["runs"]


@pytest.fixture(scope="session")
def dashboard_runs(tmp_path_factory, small_warehouse, faulty_warehouse):
    return build_dashboard_runs(tmp_path_factory.mktemp("dashboards"), small_warehouse,
                                faulty_warehouse)


@pytest.fixture()
def runs_env(dashboard_runs, monkeypatch):
    """Point the settings at the session's runs (as ``workbench serve`` does for its kernels)."""
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(dashboard_runs.reports_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dashboard_runs.tracking_uri)
    monkeypatch.delenv(publish.ALL_RUNS_ENV, raising=False)
    monkeypatch.delenv("QUERY_STRING", raising=False)
    return dashboard_runs


# ------------------------------------------------------------------------------ reading runs
def test_list_runs_finds_every_run_and_the_published_flag(runs_env):
    from mlflow.tracking import MlflowClient

    runs = publish.list_runs()
    ids = {r.run_id for r in runs}
    r = runs_env
    assert {r.frequentist, r.latest, r.faulty, *r.model_runs, r.unpublished} <= ids
    # the published flag is MLflow's tag, read back by MLflow's own client
    client = MlflowClient(tracking_uri=r.tracking_uri)
    for record in runs:
        tag = client.get_run(record.run_id).data.tags.get(publish.PUBLISHED_TAG)
        assert record.published == (tag == "true")
    published = publish.list_runs(published_only=True)
    assert {x.run_id for x in published} == {r.frequentist, r.latest, r.faulty, *r.model_runs}
    assert [x.run_id for x in publish.list_runs(template="model_experiment")] == r.model_runs[:1]
    # newest first
    assert [x.started_at for x in runs] == sorted((x.started_at for x in runs), reverse=True)


def test_published_ids_fast_path_matches_mlflow_search(runs_env):
    fast = publish.published_run_ids(runs_env.tracking_uri)
    assert fast == publish._published_via_client(runs_env.tracking_uri)
    assert runs_env.unpublished not in fast


def test_a_missing_store_has_no_published_runs_and_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert publish.published_run_ids(uri) == set()
    assert publish.list_runs(reports_dir=tmp_path, tracking_uri=uri) == []
    with pytest.raises(PublishError, match="no MLflow database"):
        publish.publish("0123456789abcdef", tracking_uri=uri, reports_dir=tmp_path)
    assert not (tmp_path / "none.db").exists()


def test_load_run_reads_back_what_was_logged(runs_env):
    run_id = runs_env.frequentist
    result = runs_env.results[run_id]
    loaded = publish.load_run(run_id[:8])  # the prefix shown in folder names works too
    assert loaded.run_id == run_id
    assert loaded.record.template == "ab_test" and loaded.record.experiment == EXPERIMENT
    assert set(loaded.tables) == {"results", "segments", "timeseries", "validation"}
    # independent reader: pyarrow on the file itself, and the frame that was logged
    path = loaded.record.path / "tables" / "results.parquet"
    direct = pq.read_table(path).to_pandas()
    pd.testing.assert_frame_equal(loaded.table("results"), direct)
    np.testing.assert_allclose(loaded.table("results")["effect"], result.results["effect"])
    assert loaded.summary["decision"] == result.decision
    assert loaded.summary["srm_p_value"] == pytest.approx(result.srm_p_value)
    assert loaded.figures["forest"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert loaded.table("nope") is None


def test_load_run_of_an_unknown_id_raises(runs_env):
    with pytest.raises(PublishError, match="not found"):
        publish.load_run("does-not-exist")
    assert publish.find_run("abc", publish.list_runs()) is None  # short prefixes never match


# ------------------------------------------------------------------------------ publishing
def test_publish_and_unpublish_through_the_cli(runs_env, capsys):
    from mlflow.tracking import MlflowClient

    from workbench.cli import main

    run_id = runs_env.unpublished
    client = MlflowClient(tracking_uri=runs_env.tracking_uri)
    assert main(["publish", run_id[:8]]) == 0
    assert f"published run {run_id}" in capsys.readouterr().out
    assert client.get_run(run_id).data.tags[publish.PUBLISHED_TAG] == "true"
    assert main(["publish", run_id, "--unpublish"]) == 0
    assert client.get_run(run_id).data.tags[publish.PUBLISHED_TAG] == "false"
    assert run_id not in publish.published_run_ids()
    assert main(["publish", "ffffffffffffffffffffffffffffffff"]) == 2
    assert "not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------ serving
def test_voila_command_has_the_secure_defaults():
    """The values; that Voilà recognises every option is checked on the served log (browser tests)."""
    cmd = publish.voila_command("dash.ipynb", port=9999)
    assert cmd[1:4] == ["-m", "voila", "dash.ipynb"] and "--no-browser" in cmd
    values = dict(o[2:].split("=", 1) for o in cmd[4:] if "=" in o)
    assert values["Voila.ip"] == "127.0.0.1" and values["port"] == "9999"
    assert values["Voila.port_retries"] == "0"
    assert values["strip_sources"] == "True" and values["show_tracebacks"] == "False"
    assert values["VoilaConfiguration.allow_template_override"] == "NO"
    assert values["VoilaConfiguration.allow_theme_override"] == "NO"
    allow, deny = (values[f"VoilaConfiguration.file_{k}"] for k in ("allowlist", "denylist"))
    assert re.fullmatch(allow, "figures/lift.png") and re.fullmatch(allow, "a.svg")
    assert not re.fullmatch(allow, "secret.txt") and not re.fullmatch(allow, "run.json")
    assert re.fullmatch(deny, "experiment.ipynb") and re.fullmatch(deny, "workbench/config.py")
    assert int(values["MappingKernelManager.cull_idle_timeout"]) > 0
    assert int(values["MappingKernelManager.cull_interval"]) > 0
    assert values["preheat_kernel"] == "True" and values["pool_size"] == "1"
    cold = publish.voila_command("dash.ipynb", port=9999, preheat=False)
    assert "--preheat_kernel=False" in cold and "--pool_size=0" in cold


def test_secrets_go_to_a_config_file_never_to_the_command_line(tmp_path):
    from jupyter_server.auth import passwd_check

    config = publish.voila_config(token="tok-123", password="hunter2")
    assert config["Voila"]["token"] == "tok-123"
    hashed = config["PasswordIdentityProvider"]["hashed_password"]
    assert "hunter2" not in hashed and passwd_check(hashed, "hunter2")
    assert not any("tok-123" in part for part in publish.voila_command("x", port=1))
    # bound beyond localhost without a secret: a random token is required
    assert publish.required_token("127.0.0.1", None, None) is None
    assert len(publish.required_token("0.0.0.0", None, None)) >= 24
    assert publish.required_token("0.0.0.0", "mine", None) == "mine"
    assert publish.required_token("0.0.0.0", None, "pw") is None


def test_unknown_dashboard_is_a_clear_error():
    with pytest.raises(PublishError, match="not found"):
        publish.dashboard_target("nope")
    assert publish.dashboard_target("experiment").name == "experiment.ipynb"
    assert publish.dashboard_target("model").name == "model.ipynb"


# ------------------------------------------------------------------------------ dashboards
def _text(widget) -> str:
    """All HTML/text values of a widget tree."""
    parts = [getattr(widget, "value", "") if isinstance(getattr(widget, "value", None), str) else ""]
    for child in getattr(widget, "children", ()):
        parts.append(_text(child))
    return "\n".join(parts)


def _images(widget) -> list[bytes]:
    found = [widget.value] if widget.__class__.__name__ == "Image" else []
    for child in getattr(widget, "children", ()):
        found += _images(child)
    return found


def test_experiment_dashboard_shows_the_newest_published_decision(runs_env):
    dash = publish.ExperimentDashboard(query_string="")
    result = runs_env.results[runs_env.latest]
    assert dash.run.run_id == runs_env.latest
    text = _text(dash.widget)
    assert publish._esc(result.decision) in text
    # each metric in words: the frequentist readout's numbers and the Bayesian chance to win
    bayes = runs_env.bayes.results.set_index(["metric", "variant"])["chance_to_win"]
    for row in result.results.to_dict("records"):
        p = row["p_value_adjusted"] if np.isfinite(row["p_value_adjusted"]) else row["p_value"]
        p_text = "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"
        sentence = (f"{row['metric']} for {row['variant']}: {row['verdict']} "
                    f"({row['effect']:+.1%}, 95% interval {row['ci_lower']:+.1%} to "
                    f"{row['ci_upper']:+.1%}; {p_text}; chance to beat control "
                    f"{bayes[(row['metric'], row['variant'])]:.0%}).")
        assert sentence in text
    assert "traffic split matches the plan" in text
    checks = result.validation.checks
    assert (checks["status"] == "ok").all()
    assert f"All {len(checks)} data-quality checks passed" in text
    # unpublished runs are not offered
    assert runs_env.unpublished not in [v for _, v in dash.run_select.options]
    assert len(_images(dash.widget)) == 3  # forest, cumulative lift, segments


def test_srm_run_is_flagged_in_plain_words(runs_env):
    dash = publish.ExperimentDashboard(query_string=f"run={runs_env.faulty}")
    assert dash.run.run_id == runs_env.faulty
    text = _text(dash.widget)
    assert "traffic split differs from the plan" in text
    assert "do not trust" in text
    # the checks the readout flagged, counted independently from the logged table
    checks = runs_env.results[runs_env.faulty].validation.checks
    status = checks["status"].str.lower()
    n_fail = int(status.isin(["fail", "failed", "error"]).sum())
    n_warn = int(status.isin(["warn", "warning"]).sum())
    assert n_fail >= 1  # the SRM check at least
    parts = [f"{n_fail} failed"] + ([f"{n_warn} need"] if n_warn else [])
    assert f"Of {len(checks)} data-quality checks, {' and '.join(parts)}" in text
    for name in checks.loc[status != "ok", "check"]:
        assert publish._esc(name) in text


def test_widget_changes_update_the_view(runs_env):
    dash = publish.ExperimentDashboard(query_string="")
    before = _images(dash.metric_area)
    dash.metric_select.value = "revenue_per_user"
    assert "Cumulative lift over time: revenue_per_user" in _text(dash.metric_area)
    assert _images(dash.metric_area) != before
    dash.experiment_select.value = FAULTY_EXPERIMENT
    assert dash.run.run_id == runs_env.faulty
    assert "differs from the plan" in _text(dash.widget)
    dash.experiment_select.value = EXPERIMENT
    dash.run_select.value = runs_env.frequentist
    assert dash.run.run_id == runs_env.frequentist
    assert "This run has no Bayesian readout" in _text(dash.widget)


def test_missing_or_unpublished_run_gives_a_friendly_message(runs_env):
    for requested in ("does-not-exist", runs_env.unpublished):
        dash = publish.ExperimentDashboard(query_string=f"run={requested}")
        assert f"Run “{requested}” was not found among the published runs" in dash.notice.value
        assert dash.run.run_id == runs_env.latest  # the latest is shown instead
    # a viewer's query string is escaped, never rendered as HTML
    dash = publish.ExperimentDashboard(query_string="run=<script>alert(1)</script>")
    assert "<script>" not in dash.notice.value and "&lt;script&gt;" in dash.notice.value


def test_no_runs_at_all_is_a_friendly_message(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    for dash in (publish.ExperimentDashboard(query_string="run=x"),
                 publish.ModelDashboard(query_string="")):
        assert "No published" in _text(dash.widget)
        assert dash.body.children == ()


def test_model_dashboard_scores_shap_and_drift(runs_env):
    dash = publish.ModelDashboard(query_string="")
    logged = runs_env.results[runs_env.model]
    assert dash.run.run_id == runs_env.model
    text = _text(dash.widget)
    # scores and SHAP come from the task's other runs (one template each), said so
    assert "gradient_boosting" in text
    assert f"{logged['scores']['roc_auc_mean'].iloc[0]:.4g}" in text
    assert text.count("from run ") == 2
    drifted = [c for c, d in logged["drift"].verdicts().items() if d]
    assert drifted, "the sample's current period drifts"
    assert f"{len(drifted)} of {logged['drift'].n_columns} columns changed" in text
    for column in drifted:
        assert column in text
    assert len(_images(dash.widget)) == 1  # SHAP importance drawn from the logged table
    # choosing the scores run shows the same task's drift, from the drift run
    dash.run_select.value = runs_env.model_runs[0]
    assert f"{len(drifted)} of {logged['drift'].n_columns} columns changed" in _text(dash.widget)


def test_workbench_serve_requires_its_token_and_keeps_it_off_the_command_line(tmp_path):
    """``workbench serve`` end to end (no page is rendered: no kernel is started)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WORKBENCH_TOKEN="tok-" + "9" * 20,
               WORKBENCH_REPORTS_DIR=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port),
                             "--dashboard", "experiment", "--no-preheat"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        base = f"http://127.0.0.1:{port}/api/kernels"

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        def where(url):  # the login page, or (authenticated) Voilà's own redirect
            try:
                response = urllib.request.build_opener(NoRedirect).open(url)
                return response.status, ""
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers.get("Location", "")

        assert where(base)[1].startswith("/login")
        assert where(base + "?token=wrong")[1].startswith("/login")
        status, location = where(base + f"?token={env['WORKBENCH_TOKEN']}")
        assert not location.startswith("/login"), (status, location)
        # the token is in no process's command line
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert env["WORKBENCH_TOKEN"] not in cmdline.read_text()
            except OSError:
                continue
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/?token=" in out
    assert proc.returncode in (0, 130)


def test_a_broken_run_shows_a_sentence_not_an_exception(runs_env, tmp_path, monkeypatch):
    import shutil

    source = publish.load_run(runs_env.frequentist).record.path
    copy = tmp_path / "ab_test" / "broken" / source.name
    shutil.copytree(source, copy)
    (copy / "tables" / "results.parquet").write_bytes(b"not parquet")
    (copy / "tables" / "segments.parquet").unlink()
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path))
    dash = publish.ExperimentDashboard(published_only=False, query_string="")
    assert publish.PART_FAILED in _text(dash.widget)
    # a run with results but without segments: that section says so, the rest renders
    (copy / "tables" / "results.parquet").write_bytes(
        (source / "tables" / "results.parquet").read_bytes())
    dash = publish.ExperimentDashboard(published_only=False, query_string="")
    text = _text(dash.widget)
    assert publish.PART_FAILED not in text
    assert "This run logged no segment breakdown." in text
    assert runs_env.results[runs_env.frequentist].decision in text
