"""The dashboards (ipywidgets) on real runs: what they show equals what the readout computed.

The numbers expected here are formatted by the tests from the readout's own in-memory tables
(never from what the dashboard or the run folder holds), so a dashboard that re-derived,
reformatted or mixed up a number would fail.
"""
from __future__ import annotations

import html
from html.parser import HTMLParser

import numpy as np
import pytest

from workbench.dashboards import text, widgets
from workbench.dashboards.widgets import ExperimentDashboard, ModelDashboard


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


class _Tables(HTMLParser):
    """The cells of every <table> in some HTML: [[header], [row]...] per table."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._svg = [], None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":  # the drawn interval (its <title> is a tooltip, not cell text)
            self._svg += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg -= 1
        elif tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and not self._svg:
            self._cell += data


def _tables(widget) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(_text(widget))
    return parser.tables


def _pct(x: float, digits: int = 1, signed: bool = True) -> str:
    text = f"{x * 100:+.{digits}f}" if signed else f"{x * 100:.{digits}f}"
    return f"{text.replace('-', '+') if float(text) == 0 else text} %"  # -0.0 reads as +0.0


def _reduction(x: float) -> str:
    """A variance reduction as shown: a percentage, '-' where no adjustment was made."""
    return "-" if x != x else f"{abs(x * 100):.1f} %" if round(x * 100, 1) == 0 \
        else f"{x * 100:.1f} %"


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _chance(c: float) -> str:
    return "> 99.9 %" if c > 0.999 else "< 0.1 %" if c < 0.001 else f"{c * 100:.1f} %"


def _results_table(widget) -> list[list[str]]:
    (table,) = [t for t in _tables(widget) if t[0][:2] == ["metric", "role"]]
    return table


def _holm_label(result) -> str:
    n = int(np.isfinite(result.results["p_value"].to_numpy(float)).sum())
    return f"adjusted, Holm across {n} comparisons"


def test_experiment_dashboard_shows_the_newest_published_decision(runs_env):
    dash = ExperimentDashboard(query_string="")
    result = runs_env.results[runs_env.latest]
    assert dash.run.run_id == runs_env.latest
    shown = _text(dash.widget)
    assert widgets.esc(result.decision) in shown
    # each variant's decision and the readout's reasons for it
    assert result.reasons and set(result.reasons) == set(result.decisions)
    for variant, decision in result.decisions.items():
        assert html.escape(f"Decision for {variant}: {decision}", quote=True) in shown
        for reason in result.reasons[variant]:
            assert html.escape(reason, quote=True) in shown
    # the correction is labelled (the number of comparisons counted here, from the results)
    assert result.correction == "holm"
    assert _holm_label(result) in shown
    assert "traffic split matches the plan" in shown
    assert html.escape(f"p = {result.srm_p_value:.4f}") in shown
    checks = result.validation.to_frame()
    assert (checks["status"] == "ok").all()
    assert f"All {len(checks)} data-quality checks passed" in shown
    # unpublished runs are not offered
    assert runs_env.unpublished not in [v for _, v in dash.run_select.options]
    assert len(_images(dash.widget)) == 3  # forest, cumulative lift, segments


def test_the_results_table_shows_the_readouts_numbers(runs_env):
    """Every cell of the results table, against the readout's frames row by row."""
    dash = ExperimentDashboard(query_string="")
    result = runs_env.results[runs_env.latest]
    bayes = runs_env.bayes.results.set_index(["metric", "variant"])
    head, *rows = _results_table(dash.widget)
    assert head == ["metric", "role", "variant", "baseline", "treatment", "lift",
                    "95 % interval", "p-value", "chance to win", "risk", "variance reduction",
                    "verdict"]
    expected = []
    for r in result.results.to_dict("records"):
        b = bayes.loc[(r["metric"], r["variant"])]
        hib = bool(r["higher_is_better"])
        chance = b["chance_to_win"] if hib else 1 - b["chance_to_win"]
        risk = b["risk_variant"] if hib else b["risk_control"]
        expected.append([r["metric"], r["role"], r["variant"], f"{r['control_mean']:.4g}",
                         f"{r['variant_mean']:.4g}", _pct(r["effect"]),
                         f"[{_pct(r['ci_lower'])}, {_pct(r['ci_upper'])}]",
                         f"{_p(r['p_value_adjusted'])} raw {_p(r['p_value'])}", _chance(chance),
                         _pct(risk, 2, signed=False),
                         _reduction(r["variance_reduction"]), r["verdict"]])
    assert rows == expected
    # the Bayesian chances are the posterior's, not the frequentist p-values in disguise
    assert 0 < bayes["chance_to_win"].min() and bayes["chance_to_win"].max() < 1
    # the p-values shown are Holm's (statsmodels), not the raw ones
    from statsmodels.stats.multitest import multipletests

    holm = multipletests(result.results["p_value"], method="holm")[1]
    assert [row[7].split(" raw ")[0] for row in rows] == [_p(p) for p in holm]


def test_the_robustness_and_arms_tables_are_shown(runs_env):
    dash = ExperimentDashboard(query_string="")
    result = runs_env.results[runs_env.latest]
    shown = _text(dash.widget)
    assert "Robustness of the decision" in shown and "Arm versus arm" in shown
    (robust,) = [t for t in _tables(dash.widget) if t[0][:2] == ["choice", "setting"]]
    frame = result.robustness
    assert robust[0][4].startswith("primary effect")
    assert [r[:3] for r in robust[1:]] == frame[["choice", "setting", "decision"]].astype(
        str).to_numpy().tolist()
    flips = ["yes" if f else "no" for f in frame["flips"]]
    assert [r[robust[0].index("flips")] for r in robust[1:]] == flips
    from workbench.readout.robustness import summary

    assert html.escape(summary(frame), quote=True) in shown
    (arms,) = [t for t in _tables(dash.widget) if t[0][:3] == ["metric", "variant", "versus"]]
    assert len(arms) - 1 == len(result.arms)


def test_the_power_table_is_rendered_from_its_contract_columns():
    """A hand-made ``power`` table (columns per the WAVE3 contract): titled, formatted."""
    import pandas as pd

    from workbench.readout.record import ReadoutRecord

    power = pd.DataFrame([{"metric": "conversion", "variant": "b", "mde": 0.02, "power": 0.432,
                           "target_power": 0.8, "n_so_far": 12000, "n_needed": 30500,
                           "days_elapsed": 7, "days_needed": 18.0, "days_left": 11.0,
                           "extra": 1.5}])
    record = ReadoutRecord("e", "frequentist", 0.05, "relative", "control", "ship b", 0.5,
                           True, tables={"power": power})
    assert text.section_tables(record)[0][:2] == ("power", "Power so far")
    parser = _Tables()
    parser.feed(ExperimentDashboard._section_html(record, "power", power))
    (table,) = parser.tables
    assert table == [["metric", "variant", "mde", "power", "target power", "n so far",
                      "n needed", "days elapsed", "days needed", "days left"],
                     ["conversion", "b", "+2.0 %", "43.2 %", "80.0 %", "12,000", "30,500",
                      "7 days", "18 days", "11 days"]]


def test_srm_run_is_flagged_in_plain_words(runs_env):
    dash = ExperimentDashboard(query_string=f"run={runs_env.faulty}")
    result = runs_env.results[runs_env.faulty]
    assert dash.run.run_id == runs_env.faulty
    shown = _text(dash.widget)
    assert "traffic split differs from the plan" in shown
    assert "do not trust" in shown
    assert not result.trustworthy
    # the checks the readout flagged, counted independently from the readout's own frame
    checks = result.validation.to_frame()
    status = checks["status"]
    n_fail = int((status == "error").sum())
    n_warn = int((status == "warning").sum())
    assert n_fail >= 1  # the SRM check at least
    parts = [f"{n_fail} failed"] + ([f"{n_warn} need"] if n_warn else [])
    assert f"Of {len(checks)} data-quality checks, {' and '.join(parts)}" in shown
    for name in checks.loc[status != "ok", "check"]:
        assert widgets.esc(name) in shown
    # every verdict shown is the readout's own (no wording of the dashboard's)
    head, *rows = _results_table(dash.widget)
    assert [r[head.index("verdict")] for r in rows] == result.results["verdict"].tolist()
    assert text.NO_VERDICT not in shown
    assert all(" raw " not in r[head.index("p-value")] for r in rows)  # not corrected
    assert "p-values unadjusted" in shown


def test_widget_changes_update_the_view(runs_env):
    dash = ExperimentDashboard(query_string="")
    before = _images(dash.metric_area)
    dash.metric_select.value = "revenue_per_user"
    assert "Cumulative lift over time: revenue_per_user" in _text(dash.metric_area)
    assert _images(dash.metric_area) != before
    dash.experiment_select.value = runs_env.faulty_experiment
    assert dash.run.run_id == runs_env.faulty
    assert "differs from the plan" in _text(dash.widget)
    dash.experiment_select.value = runs_env.experiment
    dash.run_select.value = runs_env.frequentist
    assert dash.run.run_id == runs_env.frequentist
    assert "This run has no Bayesian readout" in _text(dash.widget)
    # without a Bayesian table the results table has no chance column
    assert _results_table(dash.widget)[0] == [
        "metric", "role", "variant", "baseline", "treatment", "lift", "95 % interval",
        "p-value", "variance reduction", "verdict"]


def test_a_run_without_a_readout_record_says_so(runs_env):
    dash = ExperimentDashboard(query_string=f"run={runs_env.legacy}")
    assert dash.run.run_id == runs_env.legacy
    shown = _text(dash.body)
    assert widgets.esc(text.NO_RECORD) in shown
    assert text.PART_FAILED not in shown
    # one sentence, nothing re-derived from its tables
    assert runs_env.results[runs_env.legacy].decision not in shown
    assert _images(dash.widget) == []


def test_missing_or_unpublished_run_gives_a_friendly_message(runs_env):
    for requested in ("does-not-exist", runs_env.unpublished):
        dash = ExperimentDashboard(query_string=f"run={requested}")
        assert f"Run “{requested}” was not found among the published runs" in dash.notice.value
        assert dash.run.run_id == runs_env.latest  # the latest is shown instead
    # a viewer's query string is escaped, never rendered as HTML
    dash = ExperimentDashboard(query_string="run=<script>alert(1)</script>")
    assert "<script>" not in dash.notice.value and "&lt;script&gt;" in dash.notice.value


def test_no_runs_at_all_is_a_friendly_message(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    for dash in (ExperimentDashboard(query_string="run=x"), ModelDashboard(query_string="")):
        assert "No published" in _text(dash.widget)
        assert dash.body.children == ()


def test_model_dashboard_scores_shap_and_drift(runs_env):
    dash = ModelDashboard(query_string="")
    logged = runs_env.results[runs_env.model]
    assert dash.run.run_id == runs_env.model
    shown = _text(dash.widget)
    # scores and SHAP come from the task's other runs (one template each), said so
    assert "gradient_boosting" in shown
    assert f"{logged['scores']['roc_auc_mean'].iloc[0]:.4g}" in shown
    assert shown.count("from run ") == 2
    drifted = [c for c, d in logged["drift"].verdicts().items() if d]
    assert drifted, "the sample's current period drifts"
    assert f"{len(drifted)} of {logged['drift'].n_columns} columns changed" in shown
    overall = ("The data has drifted overall" if logged["drift"].dataset_drift
               else "Some columns drifted")
    assert overall in shown  # the drift report's own verdict
    for column in drifted:
        assert column in shown
    assert len(_images(dash.widget)) == 1  # SHAP importance drawn from the logged table
    # the scores table cell by cell, against the frame that was logged
    (scores,) = [t for t in _tables(dash.widget) if t[0][0] == "model"]
    frame = logged["scores"]
    assert scores[0] == list(frame.columns)
    assert scores[1] == ["gradient_boosting", f"{frame['roc_auc_mean'].iloc[0]:.4g}",
                         f"{frame['roc_auc_sd'].iloc[0]:.4g}"]
    # choosing the scores run shows the same task's drift, from the drift run
    dash.run_select.value = runs_env.model_runs[0]
    assert f"{len(drifted)} of {logged['drift'].n_columns} columns changed" in _text(dash.widget)


def test_a_broken_run_shows_a_sentence_not_an_exception(runs_env, tmp_path, monkeypatch):
    import shutil

    from workbench.dashboards import catalogue
    from workbench.readout.record import RESULTS, SEGMENTS

    results, segments = f"{RESULTS}.parquet", f"{SEGMENTS}.parquet"
    source = catalogue.load_run(runs_env.frequentist).record.path
    copy = tmp_path / "ab_test" / "broken" / source.name
    shutil.copytree(source, copy)
    (copy / "tables" / results).write_bytes(b"not parquet")
    (copy / "tables" / segments).unlink()
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path))
    dash = ExperimentDashboard(published_only=False, query_string="")
    assert text.PART_FAILED in _text(dash.widget)
    # a run with results but without segments: that section says so, the rest renders
    (copy / "tables" / results).write_bytes((source / "tables" / results).read_bytes())
    dash = ExperimentDashboard(published_only=False, query_string="")
    shown = _text(dash.widget)
    assert text.PART_FAILED not in shown
    assert "This run logged no segment breakdown." in shown
    assert runs_env.results[runs_env.frequentist].decision in shown


@pytest.mark.parametrize("query, expected", [
    ("run=abc&metric=conversion", {"run": "abc", "metric": "conversion"}),
    ("run=" + "x" * 500, {"run": "x" * 200}),
    ("", {}),
])
def test_query_parameters_are_cut_and_first_wins(query, expected):
    assert widgets.query_parameters(query) == expected
    assert widgets.query_parameters("run=first&run=second") == {"run": "first"}


# -- a staged rollout linked to its plan: phases, planned sizes and the plan run itself ---------
@pytest.fixture(scope="module")
def ramp_runs(tmp_path_factory):
    """A plan run (as the ``plan`` template logs it, not published) and a published readout of
    the ramp scenario linked to it by tag (``plan="auto"``), in their own reports folder."""
    import datetime as dt
    import warnings

    import workbench as wb
    from workbench import tracking
    from workbench.dashboards import catalogue
    from workbench.data.sample import RAMP_EXPERIMENT, RAMP_METRICS, RAMP_START, generate_ramp
    from workbench.readout.record import ReadoutRecord
    from workbench.tracking.plans import TABLE, TAG

    root = tmp_path_factory.mktemp("ramp_dashboard")
    mp = pytest.MonkeyPatch()
    mp.setenv("WORKBENCH_REPORTS_DIR", str(root / "reports"))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.delenv(catalogue.ALL_RUNS_ENV, raising=False)
    mp.delenv("QUERY_STRING", raising=False)
    mp.delenv(tracking.ENV_RUN_DIR, raising=False)
    start = RAMP_START - dt.timedelta(days=21)
    generate_ramp(root / "history.duckdb", seed=5, n_per_phase=3000, weights=(0, 0, 0),
                  start=start)
    plan = wb.plan(root / "history.duckdb", RAMP_METRICS, start_date=start,
                   end_date=RAMP_START - dt.timedelta(days=1), mde=0.1,
                   experiment_id=RAMP_EXPERIMENT)
    with tracking.start_run("plan", RAMP_EXPERIMENT) as plan_run:
        tracking.set_tags({TAG: RAMP_EXPERIMENT})
        tracking.log_summary(plan.headline())
        tracking.log_table(plan.to_frame(), TABLE)
    generate_ramp(root / "ramp.duckdb", seed=5, n_per_phase=3000)
    exp = wb.Experiment.from_source(root / "ramp.duckdb", RAMP_EXPERIMENT, RAMP_METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(plan="auto", timeseries=False)
    with tracking.start_run("ab_test", RAMP_EXPERIMENT) as run:
        tracking.log_record(ReadoutRecord.from_result(result))
    catalogue.publish(run.mlflow_run_id)
    yield {"plan": plan, "plan_run": plan_run.mlflow_run_id, "result": result,
           "run": run.mlflow_run_id}
    mp.undo()


def test_a_ramp_readout_shows_its_phases_power_against_plan_and_the_plan(ramp_runs):
    plan, result = ramp_runs["plan"], ramp_runs["result"]
    dash = ExperimentDashboard(query_string="")
    assert dash.run.run_id == ramp_runs["run"]
    shown = _text(dash.widget)
    assert "Phases (staged rollout)" in shown and "Power so far" in shown
    # the phases table: one row per metric x phase, stratified and pooled rows included
    (phases,) = [t for t in _tables(dash.widget) if t[0][:3] == ["metric", "variant", "phase"]]
    frame = result.phases
    assert [r[2] for r in phases[1:]] == frame["phase"].tolist()
    strat = frame[(frame["metric"] == "conversion") & (frame["phase"] == "(stratified)")].iloc[0]
    row = next(r for r in phases[1:] if r[0] == "conversion" and r[2] == "(stratified)")
    assert row[phases[0].index("effect")] == _pct(strat["effect"])
    # the power table's planned sizes are the plan's (fixed horizon, no CUPED: rho is 0 here)
    (power,) = [t for t in _tables(dash.widget) if "planned n" in t[0]]
    planned = plan.table[(plan.table["metric"] == "conversion") & ~plan.table["cuped"]].iloc[0]
    conv = next(r for r in power[1:] if r[0] == "conversion")
    assert conv[power[0].index("planned n")] == f"{round(planned['n_fixed']):,}"
    assert conv[power[0].index("planned days")] == f"{planned['days_fixed']:.0f} days"
    # the plan sentence of the notes, and the linked plan run (unpublished, but linked)
    days = f"{planned['days_fixed']:.0f} days"
    assert f"conversion: planned {days} for a 10.0 % MDE" in shown
    assert "Planned in run " in shown and ramp_runs["plan_run"][:8] in shown
    assert f"needs {round(planned['n_fixed']):,} units" not in shown  # said once: power table
    assert ramp_runs["plan_run"] not in [v for _, v in dash.run_select.options]


def test_plan_runs_are_listed_with_their_planned_days_and_shown(ramp_runs):
    plan = ramp_runs["plan"]
    planned = plan.table[(plan.table["metric"] == "conversion") & ~plan.table["cuped"]].iloc[0]
    days = f"{planned['days_fixed']:.0f} days"
    dash = ExperimentDashboard(published_only=False, query_string="")
    assert dash.run.run_id == ramp_runs["run"]  # the readout first, though the plan is older
    labels = dict((v, k) for k, v in dash.run_select.options)
    assert f"plan: {days} planned" in labels[ramp_runs["plan_run"]]
    dash.run_select.value = ramp_runs["plan_run"]
    shown = _text(dash.widget)
    assert (f"Plan for ramp_rollout: conversion needs {round(planned['n_fixed']):,} units "
            f"({days}) to detect a 10.0 % effect") in shown
    (table,) = [t for t in _tables(dash.widget) if t[0][:2] == ["metric", "CUPED"]]
    assert len(table) - 1 == len(plan.table)
    first = table[1]
    assert first[:2] == [planned["metric"], "no"]
    assert first[5:7] == [f"{round(planned['n_fixed']):,}", days]
    assert text.PART_FAILED not in shown


def _static_count(html_text: str, needle: str) -> int:
    return html_text.count(widgets.esc(needle))


def test_the_served_page_shows_the_decision_once_as_plain_html_first(runs_env):
    """experiment_page's mode: the decision of the run shown first is in ``static_html`` (what
    the ``workbench`` template writes into the page), not a second time in the widget."""
    result = runs_env.results[runs_env.latest]
    dash = ExperimentDashboard(query_string="", static=True)
    assert dash.static_run == runs_env.latest
    static = dash.static_html
    assert f"id='{widgets.STATIC_LEAD_ID}'" in static
    assert _static_count(static, result.decision) == 1
    for variant, decision in result.decisions.items():
        assert html.escape(f"Decision for {variant}: {decision}", quote=True) in static
        for reason in result.reasons[variant]:
            assert html.escape(reason, quote=True) in static
    assert "<script" not in static  # plain HTML: readable without any JavaScript
    shown = _text(dash.widget)  # the widget is built on first use
    assert widgets.esc(result.decision) not in shown  # not twice on the page
    assert "traffic split matches the plan" in shown  # the rest of the view is there
    assert f".{widgets.PENDING_CLASS}{{display:none}}" in dash.notice.value
    assert f"#{widgets.STATIC_LEAD_ID}{{display:none}}" not in shown
    # another run: its decision in the widget, with the style hiding the static one
    dash.experiment_select.value = runs_env.faulty_experiment
    faulty = runs_env.results[runs_env.faulty]
    shown = _text(dash.widget)
    assert widgets.esc(faulty.decision) in shown
    assert f"#{widgets.STATIC_LEAD_ID}{{display:none}}" in shown
    # and back: the first run's decision comes from the widget now (the static one stays hidden)
    dash.experiment_select.value = runs_env.experiment
    shown = _text(dash.widget)
    assert shown.count(widgets.esc(result.decision)) == 1
    assert f"#{widgets.STATIC_LEAD_ID}{{display:none}}" in shown


def test_the_served_page_puts_the_notice_in_the_static_part(runs_env):
    dash = ExperimentDashboard(query_string="run=<b>nope</b>", static=True)
    assert "Run “&lt;b&gt;nope&lt;/b&gt;” was not found among the published runs" \
        in dash.static_html
    assert "<b>nope" not in dash.static_html
    assert dash.static_run == runs_env.latest  # the latest is shown instead
    assert "was not found" not in _text(dash.widget)  # said once, in the static part
    assert _static_count(dash.static_html, runs_env.results[runs_env.latest].decision) == 1


def test_experiment_page_displays_the_static_part_with_its_marker(runs_env, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda *objs, **kwargs: shown.append((objs, kwargs)))
    dash = widgets.experiment_page(query_string="")
    [(objs, kwargs)] = shown
    assert objs == ({"text/html": dash.static_html},)
    assert kwargs == {"raw": True, "metadata": {"workbench": {"static": True}}}


def test_the_kernels_of_one_server_share_the_figures_they_drew(runs_env, tmp_path, monkeypatch):
    """A kernel reads the PNGs an earlier kernel of the same server drew (FIGURES_ENV) instead of
    drawing them again."""
    from workbench.dashboards import server

    monkeypatch.setenv(server.FIGURES_ENV, str(tmp_path))
    monkeypatch.setattr(widgets, "_PNGS", {})  # a fresh kernel
    drawn = [bytes(v) for v in _images(ExperimentDashboard(query_string="").widget)]
    files = sorted(tmp_path.iterdir())
    assert len(drawn) == 3 and [f.suffix for f in files] == [".png"] * 3  # no temporary left
    assert sorted(drawn) == sorted(f.read_bytes() for f in files)
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in drawn)
    monkeypatch.setattr(widgets, "_PNGS", {})  # another kernel: drawing would fail here
    monkeypatch.setattr(widgets, "_figure_png", lambda fig: pytest.fail("drawn again"))
    assert [bytes(v) for v in _images(ExperimentDashboard(query_string="").widget)] == drawn
