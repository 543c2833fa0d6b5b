"""One set of numbers: the same results row read from all six surfaces.

A small Holm-corrected readout of the ``small_warehouse`` sample is logged through the tracking
API (a temporary run folder and SQLite MLflow store), then one row's p-value, interval and
correction label are read from (1) the notebook repr, (2) the report HTML (the report's own
renderer, ``runner.export_html`` = nbconvert, on a notebook whose output is the result, as the
ab_test template displays it; running the whole template would take a minute), (3) the
dashboard (``ReadoutRecord.from_logged`` on the logged run, rendered by the dashboard's
functions), (4) the MLflow run's metrics and tags, (5) ``workbench readout``'s output and
(6) run.json. All must agree, and with an independent oracle: statsmodels' Holm adjustment of
the raw p-values, formatted here.
"""
from __future__ import annotations

import json
import re
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest

METRIC, VARIANT, EXPERIMENT = "conversion", "treatment_a", "checkout_redesign"


class _Row(HTMLParser):
    """The cells (by class) of the ``METRIC x VARIANT`` row of the results table, and the
    table's caption; svg tooltips are not cell text."""

    def __init__(self):
        super().__init__()
        self.cells, self.caption = {}, ""
        self._row = self._in_caption = False
        self._cls, self._svg = None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self._row = a.get("data-metric") == METRIC and a.get("data-variant") == VARIANT
        elif tag == "td" and self._row:
            self._cls = a.get("class") or ""
            self.cells[self._cls] = ""
        elif tag == "svg":
            self._svg += 1
        elif tag == "caption" and not self.caption:
            self._in_caption = True

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg -= 1
        elif tag == "td":
            self._cls = None
        elif tag == "caption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.caption += data
        elif self._cls is not None and not self._svg:
            self.cells[self._cls] += data


def _from_html(page: str) -> tuple[str, str, str, str]:
    """(shown p, raw p, interval, caption) of the row in some HTML."""
    parser = _Row()
    parser.feed(page)
    p = " ".join(parser.cells["wb-p"].split())
    shown, raw = p.split(" raw ")
    return shown, raw, " ".join(parser.cells["wb-interval"].split()), parser.caption


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _pct(x: float) -> str:
    text = f"{x * 100:+.1f}"
    return f"{'+0.0' if float(text) == 0 else text} %"


@pytest.fixture(scope="module")
def logged(small_warehouse, tmp_path_factory):
    import workbench as wb
    from workbench import tracking
    from workbench.readout.record import ReadoutRecord

    base = tmp_path_factory.mktemp("surfaces")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    exp = wb.Experiment.from_source(str(small_warehouse), EXPERIMENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(correction="holm")
    with tracking.start_run("ab_test", EXPERIMENT, experiment=EXPERIMENT,
                            parameters={"experiment_id": EXPERIMENT},
                            reports_dir=base / "reports", tracking_uri=uri) as run:
        tracking.log_record(ReadoutRecord.from_result(result))
    return result, run, uri, base


def test_one_row_reads_the_same_on_all_six_surfaces(logged, small_warehouse, tmp_path,
                                                    capsys, monkeypatch):
    import nbformat
    from mlflow.tracking import MlflowClient
    from statsmodels.stats.multitest import multipletests

    from workbench import cli
    from workbench.dashboards import catalogue, text
    from workbench.dashboards.widgets import ExperimentDashboard
    from workbench.readout.record import ReadoutRecord
    from workbench.runner import export_html

    result, run, uri, base = logged
    r = result.results
    # the oracle: Holm across the 12 comparisons (statsmodels), formatted here
    holm = multipletests(r["p_value"], method="holm")[1]
    i = int(np.flatnonzero((r["metric"] == METRIC) & (r["variant"] == VARIANT))[0])
    row = r.iloc[i]
    expected_p, expected_raw = _p(holm[i]), _p(row["p_value"])
    expected_interval = f"[{_pct(row['ci_lower'])}, {_pct(row['ci_upper'])}]"
    label = f"adjusted, Holm across {len(r)} comparisons"
    assert expected_p != expected_raw  # the correction changed it: the test can tell

    seen = {}
    # (1) the notebook repr
    seen["notebook"] = _from_html(result._repr_html_())
    # (2) the report: nbconvert (runner.export_html) on the displayed result
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("result")
    cell.outputs = [nbformat.v4.new_output("execute_result", data={
        "text/html": result._repr_html_(), "text/plain": str(result)}, execution_count=1)]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "report.ipynb")
    export_html(tmp_path / "report.ipynb", tmp_path / "report.html")
    seen["report"] = _from_html((tmp_path / "report.html").read_text())
    # (3) the dashboard, from the logged run
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(base / "reports"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = catalogue.load_run(run.mlflow_run_id,
                                runs=catalogue.list_runs(published_only=False))
    record = ReadoutRecord.from_logged(loaded.summary, loaded.tables)
    seen["dashboard"] = _from_html(ExperimentDashboard._results_html(record))
    sentence = text.metric_sentence(record.results.iloc[i].to_dict(), record)
    assert f"{expected_interval}, p = {expected_p} ({label}; raw {expected_raw})" in sentence
    # (4) MLflow
    mrun = MlflowClient(uri).get_run(run.mlflow_run_id)
    key = f"{METRIC}.{VARIANT}"
    m = mrun.data.metrics
    seen["mlflow"] = (_p(m[f"{key}.p_value"]), _p(m[f"{key}.p_value_raw"]),
                      f"[{_pct(m[f'{key}.ci_lower'])}, {_pct(m[f'{key}.ci_upper'])}]",
                      mrun.data.tags["workbench.p_values"])
    # (5) the CLI
    code = cli.main(["readout", "--source", str(small_warehouse), "--experiment", EXPERIMENT,
                     "--correction", "holm"])
    out = capsys.readouterr().out
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if re.match(rf"\s*{METRIC}\s+\S+\s+{VARIANT}\s", ln)]
    cli_interval = re.search(r"\[[^]]+\]", line).group(0)
    after = line[line.index(cli_interval) + len(cli_interval):].split()
    (caption,) = [ln for ln in out.splitlines() if "intervals;" in ln]
    seen["cli"] = (after[0], after[1], cli_interval, caption)
    # (6) run.json
    data = json.loads((run.run_dir / "run.json").read_text())
    mj = data["metrics"]
    seen["run.json"] = (_p(mj[f"{key}.p_value"]), _p(mj[f"{key}.p_value_raw"]),
                        f"[{_pct(mj[f'{key}.ci_lower'])}, {_pct(mj[f'{key}.ci_upper'])}]",
                        data["summary"]["p_value_label"])

    assert set(seen) == {"notebook", "report", "dashboard", "mlflow", "cli", "run.json"}
    for surface, (p, raw, interval, caption) in seen.items():
        assert (p, raw, interval) == (expected_p, expected_raw, expected_interval), surface
        assert label in caption, (surface, caption)
    # the numbers logged are the readout's own (not rounded on the way)
    assert m[f"{key}.p_value"] == pytest.approx(holm[i], rel=1e-12)
    assert mj[f"{key}.ci_lower"] == pytest.approx(row["ci_lower"], rel=1e-12)
