"""Event logs in a schema that is not ours (mapped columns, aware timestamps, no users or
experiments table), per-unit files through the CLI, the sections a template runs, and the
README's first snippets. Numbers are checked against pandas on the raw rows."""
from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

import workbench as wb
from workbench.cli import main
from workbench.data.sample import OTHER_COLUMNS, OTHER_METRICS
from workbench.errors import MetricDefinitionError, ParameterError, SchemaError
from workbench.readout.sections import open_experiment, plan_sections


def _means(per: pd.DataFrame, variant: str = "variant") -> pd.DataFrame:
    return per.groupby(variant)[["purchased", "spend", "visits"]].mean()


def _check_lifts(results: pd.DataFrame, per: pd.DataFrame, variant: str = "variant"):
    means = _means(per, variant)
    counts = per[variant].value_counts()
    rows = results.set_index("metric")
    for metric in ("purchased", "spend", "visits"):
        row = rows.loc[metric]
        assert row["variant"] == "B" and row["n_variant"] == counts["B"]
        assert row["n_control"] == counts["A"]
        assert row["control_mean"] == pytest.approx(means.loc["A", metric], rel=1e-9)
        assert row["effect"] == pytest.approx(
            means.loc["B", metric] / means.loc["A", metric] - 1, rel=1e-9)


def test_mapped_columns_and_aware_timestamps_match_pandas(other_experiment):
    exp = wb.Experiment.from_source(other_experiment["path"], "pricing", OTHER_METRICS)
    assert exp.window.variants == ("A", "B") and exp.window.control == "A"
    per = other_experiment["per_unit"]
    starts = other_experiment["frames"]["assignments"]["exposed_at"].dt.tz_convert("UTC")
    assert exp.window.start_date == starts.min().date()  # UTC, not Berlin, dates
    assert exp.window.end_date == starts.max().date()
    result = exp.analyze(timeseries=False)
    _check_lifts(result.results, per)
    notes = " | ".join(exp.notes)
    for sentence in ("events.ts is time-zone aware; converted to UTC",
                     "the span of the assignments (no 'experiments' table",
                     "planned split: equal over A, B (no 'experiments' table",
                     "control: 'A' (no variant named 'control'",
                     "every assignments row is 'pricing'"):
        assert sentence in notes
    # the same mapping given in the call, the metrics without `columns:`
    again = wb.Experiment.from_source(other_experiment["path"], "pricing",
                                      {"metrics": OTHER_METRICS["metrics"]},
                                      columns=OTHER_COLUMNS)
    pd.testing.assert_frame_equal(again.sufficient_stats(), exp.sufficient_stats())


def test_aware_timestamps_shift_the_window_as_utc(tmp_path):
    """An event at 00:30 in Berlin on the day after the end is 22:30 UTC of the end date (in
    the window); one at 02:30 the day after the end is out of it."""
    path = tmp_path / "tz.duckdb"
    zone = "Europe/Berlin"
    ts = lambda s: pd.Timestamp(s, tz=zone)  # noqa: E731
    a = pd.DataFrame({"uid": [1, 2, 3, 4], "variant": ["A", "B", "A", "B"],
                      "exposed": [ts("2026-06-01 12:00")] * 4})
    e = pd.DataFrame({"uid": [1, 2, 3], "when": [ts("2026-06-02 01:30"), ts("2026-06-02 02:30"),
                                                 ts("2026-06-01 13:00")],
                      "type": ["buy", "buy", "buy"]})
    with duckdb.connect(str(path)) as con:
        con.register("a", a)
        con.register("e", e)
        con.execute("CREATE TABLE assignments AS SELECT * FROM a")
        con.execute("CREATE TABLE events AS SELECT * FROM e")
    metrics = {"metrics": [{"name": "bought", "kind": "mean", "event_type": "buy"}]}
    exp = wb.Experiment.from_source(path, "x", metrics, columns={
        "user_id": "uid", "assigned_at": "exposed", "event_time": "when", "event_type": "type"})
    stats = exp.sufficient_stats().set_index("variant")
    # window: 2026-06-01 (UTC); 01:30 Berlin = 23:30 UTC on June 1 counts, 02:30 = 00:30 does not
    assert stats.loc["A", "sum"] == 2 and stats.loc["B", "sum"] == 0


def _warehouse(path, **overrides):
    a = pd.DataFrame({"customer_id": np.arange(6), "variant": ["A", "B"] * 3,
                      "exposed_at": pd.Timestamp("2026-06-01 10:00")})
    e = pd.DataFrame({"customer_id": np.arange(6), "ts": pd.Timestamp("2026-06-01 11:00"),
                      "kind": "purchase", "amount": np.arange(6, dtype=float)})
    for col, values in overrides.items():
        frame = a if col in a.columns and col != "customer_id" else e
        frame[col] = values
        if col == "customer_id":
            a[col] = values
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE assignments AS SELECT * FROM a")
        con.execute("CREATE TABLE events AS SELECT * FROM e")
    return path


@pytest.mark.parametrize("override, metric, column", [
    ({"amount": [str(i) for i in range(6)]}, None, "events.amount"),          # revenue as text
    ({"customer_id": [f"c{i}" for i in range(6)]}, None, "customer_id (mapped to user_id)"),
    ({"ts": ["2026-06-01 11:00"] * 6}, None, "events.ts (mapped to event_time)"),
    ({}, {"name": "big", "kind": "mean", "event_type": "purchase",
          "where": [{"column": "amount", "op": ">", "value": "10"}]}, "events.amount"),
    ({}, {"name": "kinds", "kind": "mean", "where": [{"column": "kind", "op": "==",
                                                     "value": 3}]}, "events.kind"),
])
def test_a_wrong_column_type_names_the_column(tmp_path, override, metric, column):
    path = _warehouse(tmp_path / "w.duckdb", **override)
    metrics = {"columns": OTHER_COLUMNS, "metrics": [metric or {
        "name": "spend", "kind": "mean", "event_type": "purchase", "aggregation": "sum",
        "column": "amount"}]}
    with pytest.raises(SchemaError) as info:
        wb.Experiment.from_source(path, "x", metrics)
    message = str(info.value)
    assert column in message and len(message.splitlines()) == 1
    assert "SELECT" not in message


def test_bad_mappings_name_the_key_or_column(tmp_path):
    path = _warehouse(tmp_path / "w.duckdb")
    metrics = {"metrics": OTHER_METRICS["metrics"][:1]}
    with pytest.raises(MetricDefinitionError, match="'customer' is not a documented column"):
        wb.Experiment.from_source(path, "x", metrics, columns={"customer": "customer_id"})
    with pytest.raises(SchemaError, match="'stamp' \\(for event_time\\) is in no table"):
        wb.Experiment.from_source(path, "x", metrics, columns={**OTHER_COLUMNS,
                                                               "event_time": "stamp"})
    with pytest.raises(SchemaError, match="column assignments.user_id is missing"):
        wb.Experiment.from_source(path, "x", metrics)  # not mapped: named, not an Ibis error


def test_sections_say_why_they_are_skipped(other_experiment, small_warehouse):
    exp = wb.Experiment.from_source(other_experiment["path"], "pricing", OTHER_METRICS)
    s = plan_sections(exp, segments=["device"], dimension="device", pymc_draws=100)
    assert s.segments == () and s.hurdle_metric is None and s.hierarchical_metric is None
    assert s.timeseries
    notes = " | ".join(s.notes)
    assert "segments: skipped (no 'users' table" in notes
    assert "PyMC revenue hurdle model: skipped (no mean metric has log_stats: true" in notes
    assert "PyMC hierarchical model: skipped (no segment dimension" in notes
    assert "PyMC models: skipped (pymc_draws = 0)" in plan_sections(exp, pymc_draws=0).notes
    sample = wb.Experiment.from_source(small_warehouse)
    s = plan_sections(sample, segments=["device", "nope"], dimension="nope", pymc_draws=100)
    assert s.segments == ("device",) and s.dimension == "device"
    assert (s.hurdle_metric, s.hierarchical_metric) == ("revenue_per_user", "conversion")
    assert any("'nope' skipped (not column(s) of table 'users')" in n for n in s.notes)
    s = plan_sections(sample, segments=["device"], metric="sessions_per_user", pymc_draws=100)
    assert s.hurdle_metric is None and s.hierarchical_metric == "sessions_per_user"
    assert any("'sessions_per_user' is a mean metric without log_stats" in n for n in s.notes)
    with pytest.raises(ParameterError, match="'nothing' is not one of"):
        plan_sections(sample, metric="nothing")


def test_cli_readout_on_the_foreign_log_and_on_a_per_unit_file(other_experiment, tmp_path,
                                                               capsys):
    per = other_experiment["per_unit"]
    out = tmp_path / "log.csv"
    assert main(["readout", "--source", str(other_experiment["path"]), "--experiment", "pricing",
                 "--metrics", str(other_experiment["metrics"]), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: control: 'A'" in printed and "note: timestamps: events.ts" in printed
    _check_lifts(pd.read_csv(out), per)
    out = tmp_path / "units.csv"
    args = ["readout", "--units", str(other_experiment["units_csv"]), "--metrics",
            str(other_experiment["units_metrics"]), "--variant-column", "arm"]
    assert main(args + ["--correction", "holm", "--output", str(out)]) == 0
    frame = pd.read_csv(out)
    _check_lifts(frame, per.rename(columns={"variant": "arm"}), "arm")
    # --correction: Holm over the three p-values, by hand
    p = frame["p_value"].to_numpy()
    order = np.argsort(p)
    holm = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    expected = np.empty_like(p)
    expected[order] = holm
    np.testing.assert_allclose(frame["p_value_adjusted"], expected, rtol=1e-12)
    # --difference absolute --alpha 0.1: the difference of the raw means, a 90 % interval
    assert main(args + ["--difference", "absolute", "--alpha", "0.1", "--output",
                        str(out)]) == 0
    frame = pd.read_csv(out).set_index("metric")
    means = _means(per)
    assert frame.loc["spend", "effect"] == pytest.approx(
        means.loc["B", "spend"] - means.loc["A", "spend"], rel=1e-9)
    b, a = (per.loc[per.variant == v, "spend"] for v in ("B", "A"))
    se = np.sqrt(b.var() / len(b) + a.var() / len(a))
    assert frame.loc["spend", "ci_upper"] - frame.loc["spend", "effect"] == pytest.approx(
        1.6449 * se, rel=2e-3)  # Welch t with ~3,000 df is within 0.1 % of z
    assert main(["readout", "--units", str(other_experiment["units_csv"])]) == 2  # no metrics
    assert "--units needs --metrics" in capsys.readouterr().err


def test_open_experiment_detects_per_unit_files(other_experiment):
    exp = open_experiment(str(other_experiment["units_csv"]), "pricing",
                          str(other_experiment["units_metrics"]), variant="arm",
                          unit="customer_id")
    assert exp.units_table is not None and exp.window.control == "A"
    s = plan_sections(exp, segments=["device"], pymc_draws=0)
    assert not s.timeseries and s.segments == ()
    assert any("'device' skipped (not column(s) of the per-unit table)" in n for n in s.notes)
    assert any("time series: skipped" in n for n in s.notes)
    with pytest.raises(ParameterError, match="incremental.*per-unit table"):
        open_experiment(str(other_experiment["units_csv"]), "pricing",
                        str(other_experiment["units_metrics"]), variant="arm",
                        unit="customer_id", incremental=str(other_experiment["units_csv"]))


def test_readme_snippets_work_from_notebooks(small_warehouse, tmp_path, monkeypatch):
    """`wb.plots` exists on a fresh import; a relative path is found from the project root."""
    code = "import workbench as wb; print(wb.plots.plot_forest.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "plot_forest"
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "data" / "warehouse.duckdb").write_bytes(small_warehouse.read_bytes())
    (root / "m.yml").write_text(yaml.safe_dump({"metrics": [
        {"name": "conversion", "kind": "proportion", "event_type": "order"}]}))
    monkeypatch.setenv("WORKBENCH_ROOT", str(root))
    monkeypatch.chdir(root / "notebooks")
    exp = wb.Experiment.from_source("data/warehouse.duckdb", "checkout_redesign", "m.yml")
    assert [m.name for m in exp.metrics] == ["conversion"]
