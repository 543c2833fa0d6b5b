"""The Experiment facade: truth recovery on the generated sample, fault detection, CUPED,
segment corrections and heterogeneity (checked against statsmodels), verdicts, statistics
computed once, CLI."""
from __future__ import annotations

import subprocess
import sys
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import DataQualityWarning, ParameterError, SourceError, SRMWarning
from workbench.readout.decision import VERDICT_HARM, VERDICT_IMPROVED, VERDICT_SRM
from workbench.readout.experiment import Experiment
from workbench.readout.result import AnalysisResult
from workbench.summary import Summary

MAIN = ["conversion", "orders_per_user", "revenue_per_user", "sessions_per_user",
        "revenue_per_order"]


@pytest.fixture(scope="module")
def readout(small_warehouse):
    exp = Experiment.from_source(small_warehouse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exp, exp.analyze(segments=["device", "country"], alpha=0.05)


def _with_truth(frame, truth, keys=("metric", "variant")):
    eff = truth.effects
    if "dimension" not in keys:
        eff = eff[eff.dimension == "(all)"]
    return frame.merge(eff, on=list(keys))


def test_import_is_lazy():
    code = ("import sys, workbench as wb; assert 'ibis' not in sys.modules; "
            "assert wb.Experiment.__name__ == 'Experiment'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_intervals_cover_the_true_effects(readout, small_truth):
    exp, result = readout
    m = _with_truth(result.results[result.results.metric.isin(MAIN)], small_truth)
    assert len(m) == 10
    covered = (m.ci_lower <= m.relative_lift) & (m.relative_lift <= m.ci_upper)
    # 10 checks at 95%: a miss or two would be chance; the seed is fixed, so this is exact
    assert covered.sum() >= 9, m[["metric", "variant", "ci_lower", "relative_lift", "ci_upper"]]
    wide = exp.analyze(alpha=0.01, timeseries=False).results
    m99 = _with_truth(wide[wide.metric.isin(MAIN)], small_truth)
    assert ((m99.ci_lower <= m99.relative_lift) & (m99.relative_lift <= m99.ci_upper)).all()
    # and the segments (device x 5 metrics x 2 variants), at 99% after correction
    seg = result.segments[(result.segments.dimension == "device")
                          & result.segments.metric.isin(MAIN)]
    s = _with_truth(seg, small_truth, ("metric", "variant", "dimension", "segment"))
    assert len(s) == 30
    assert ((s.ci_lower <= s.relative_lift) & (s.relative_lift <= s.ci_upper)).mean() >= 0.9


def test_clean_sample_passes_validation(readout):
    _, result = readout
    v = result.validation
    assert v.ok and not v.srm and v.crossover_units == 0 and result.trustworthy
    assert result.results["verdict"].ne(VERDICT_SRM).all()
    assert int(v.variant_counts["units"].sum()) == 20_000
    assert set(v.to_frame()["status"]) == {"ok"}


def test_faults_are_flagged_and_counted(faulty_warehouse, faulty_truth):
    exp = Experiment.from_source(faulty_warehouse)
    v = exp.validate()
    assert v.srm and v.srm_p_value < 1e-6
    assert v.status("srm") == "error"
    assert v.crossover_units == faulty_truth.faults["crossover_users"]
    assert v.status("crossovers") == "error"  # 2 % >= 1 %
    assert v.count("nan", "events", "revenue") == faulty_truth.faults["missing_revenue"]
    # the SRM p-value is the chi-square of the analysed units against 1/3 each (scipy)
    from scipy import stats as st

    units = v.variant_counts["units"].to_numpy()
    assert v.srm_p_value == pytest.approx(st.chisquare(units).pvalue, rel=1e-9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = exp.analyze(timeseries=False)
    kinds = [w.category for w in caught]
    assert kinds.count(SRMWarning) == 1  # the SRM is tested once, and said once
    assert kinds.count(DataQualityWarning) == 1
    assert (result.results["verdict"] == VERDICT_SRM).all()
    assert result.decision.startswith(VERDICT_SRM)
    assert set(result.decisions.values()) == {VERDICT_SRM}
    assert (result.summary_frame()["verdict"] == VERDICT_SRM).all()
    assert not result.trustworthy
    # crossover users are excluded from every metric
    n = result.stats.groupby("variant")["n"].first()
    assert n.sum() == faulty_truth.n_users - faulty_truth.faults["srm_dropped_users"] \
        - faulty_truth.faults["crossover_users"]


def test_cuped_narrows_the_intervals(small_warehouse):
    exp = Experiment.from_source(small_warehouse)
    with_cuped = exp.analyze(timeseries=False).results.set_index(["metric", "variant"])
    without = exp.analyze(timeseries=False, cuped=False).results.set_index(["metric", "variant"])
    w1 = with_cuped.ci_upper - with_cuped.ci_lower
    w0 = without.ci_upper - without.ci_lower
    assert (w1 < w0).all()
    assert (w1 / w0).loc[["sessions_per_user"]].max() < 0.9  # the pre-period predicts visits


def test_segment_correction_and_heterogeneity_against_statsmodels(readout):
    from scipy import stats as st
    from statsmodels.stats.meta_analysis import combine_effects
    from statsmodels.stats.multitest import multipletests

    _, result = readout
    seg = result.segments
    assert set(seg.dimension) == {"device", "country"}
    assert "(other)" not in set(seg[seg.dimension == "device"].segment)  # 3 values <= top 5 + 1
    assert len(set(seg[seg.dimension == "country"].segment)) == 6
    z = st.norm.ppf(0.975)
    het = result.heterogeneity.set_index(["metric", "variant", "dimension"])
    for (metric, variant, dim), g in seg.groupby(["metric", "variant", "dimension"]):
        expected = multipletests(g.p_value, method="holm")[1]
        np.testing.assert_allclose(g.p_value_adjusted, expected, rtol=1e-10)
        assert (g.ci_lower <= g.ci_lower_unadjusted + 1e-15).all()
        se = (g.ci_upper_unadjusted - g.ci_lower_unadjusted) / (2 * z)
        res = combine_effects(g.effect.to_numpy(), se.to_numpy() ** 2)
        h = het.loc[(metric, variant, dim)]
        assert h["q_statistic"] == pytest.approx(res.q, rel=1e-9)
        assert h["p_value"] == pytest.approx(st.chi2.sf(res.q, len(g) - 1), rel=1e-9)


def test_timeseries_ends_at_the_overall_result(readout):
    _, result = readout
    ts = result.timeseries
    last = ts[ts.date == ts.date.max()].set_index(["metric", "variant"])
    overall = result.results.set_index(["metric", "variant"])
    uncapped = [m for m in MAIN if m in last.index.get_level_values(0)]
    np.testing.assert_allclose(last.loc[uncapped, "effect"], overall.loc[uncapped, "effect"],
                               rtol=1e-9)
    assert ts.date.nunique() == 14
    n = ts[ts.metric == "conversion"].groupby("date")["n_variant"].sum()
    assert n.is_monotonic_increasing


def test_summary_html_and_frame(readout):
    _, result = readout
    assert isinstance(result, AnalysisResult)
    text = result.summary()
    assert isinstance(text, Summary) and str(text).startswith(
        f"{result.experiment_id}: {result.decision}")
    assert "<table" in text._repr_html_() and "verdict" in text._repr_html_()
    s = result.summary_frame()
    assert list(s.columns[:3]) == ["metric", "role", "variant"]
    assert {"lift", "95 % interval", "p-value", "verdict"} <= set(s.columns)
    html = result._repr_html_()
    assert "conversion" in html and result.decision.split(":")[0] in html
    assert "verdict" in result.to_frame() and "srm_p_value" in result.to_frame()
    assert "conversion" in str(result)
    assert "Validation" in result.validation._repr_html_()


def _strong_warehouse(path, harm: bool):
    """Synthetic experiment with a large effect: treatment doubles orders; optionally halves
    sessions (a guardrail)."""
    # control: 1-3 sessions per user; treatment the same, or a single one when harmed
    keep = "(variant = 'control' OR k = 0)" if harm else "TRUE"
    con = duckdb.connect(str(path))
    con.execute("""
        CREATE TABLE assignments AS SELECT 'x' AS experiment_id, range AS user_id,
          CASE WHEN range % 2 = 0 THEN 'control' ELSE 'treatment' END AS variant,
          TIMESTAMP '2026-03-01 00:00:00' + to_seconds(range % 86400) AS assigned_at
        FROM range(4000)""")
    con.execute(f"""
        CREATE TABLE events AS
        SELECT a.user_id, a.assigned_at + INTERVAL 1 HOUR AS event_time,
               'order' AS event_type, 10.0 AS revenue, 1 AS items
        FROM assignments a WHERE hash(a.user_id) % 10 < CASE WHEN variant='control' THEN 2 ELSE 4 END
        UNION ALL
        SELECT a.user_id, a.assigned_at + INTERVAL 2 HOUR, 'session', NULL, NULL
        FROM assignments a, range(3) r(k)
        WHERE k <= hash(a.user_id + 7) % 3 AND {keep}""")
    con.close()


@pytest.mark.parametrize("harm", [False, True])
def test_verdicts_on_a_strong_effect(tmp_path, harm):
    path = tmp_path / "strong.duckdb"
    _strong_warehouse(path, harm)
    metrics = {"metrics": [
        {"name": "conversion", "kind": "proportion", "event_type": "order", "role": "primary"},
        {"name": "sessions", "kind": "mean", "event_type": "session", "role": "guardrail"}]}
    exp = Experiment.from_source(path, "x", metrics, start_date="2026-03-01",
                                 end_date="2026-03-02")
    assert exp.window.variants == ("control", "treatment")
    r = exp.analyze(timeseries=False)
    v = r.results.set_index("metric")["verdict"]
    assert v["conversion"] == VERDICT_IMPROVED
    if harm:
        assert v["sessions"] == VERDICT_HARM
        assert r.decisions["treatment"].startswith("do not ship")
    else:
        assert r.decision == "ship treatment"
    bayes = exp.analyze(method="bayesian", timeseries=False)
    assert bayes.results.set_index("metric").loc["conversion", "chance_to_win"] > 0.99
    assert bayes.summary_frame().set_index("metric").loc["conversion", "chance to win"] in (
        "> 99.9 %", *(f"{x / 10:.1f} %" for x in range(990, 1000)))


def test_bad_input_raises(small_warehouse, tmp_path):
    exp = Experiment.from_source(small_warehouse)
    with pytest.raises(ParameterError, match="method"):
        exp.analyze(method="magic")
    with pytest.raises(SourceError, match="no rows"):
        Experiment.from_source(small_warehouse, "nope")
    with pytest.raises(SourceError, match="'missing_table'.*assignments"):
        Experiment.from_source(small_warehouse, experiments="missing_table")
    with pytest.raises(ParameterError, match="control"):
        Experiment.from_source(small_warehouse, control="nobody")
    with pytest.raises(SourceError, match="'clicks'"):
        Experiment.from_source(small_warehouse, events="clicks")


def test_files_as_tables(small_warehouse, tmp_path):
    con = duckdb.connect(str(small_warehouse), read_only=True)
    for t in ("assignments", "events"):
        con.execute(f"COPY {t} TO '{tmp_path / t}.parquet' (FORMAT parquet)")
    con.close()
    exp = Experiment.from_source(":memory:", assignments=tmp_path / "assignments.parquet",
                                 events=tmp_path / "events.parquet")
    ref = Experiment.from_source(small_warehouse).sufficient_stats()
    pd.testing.assert_frame_equal(exp.sufficient_stats(), ref)


def test_cli_readout_writes_results(small_warehouse, tmp_path, capsys):
    from workbench.cli import main

    out = tmp_path / "res.parquet"
    code = main(["readout", "--source", str(small_warehouse), "--experiment",
                 "checkout_redesign", "--segments", "device", "--output", str(out)])
    assert code == 0
    frame = pd.read_parquet(out)
    assert {"metric", "variant", "effect", "verdict"} <= set(frame.columns)
    assert len(pd.read_parquet(tmp_path / "res_segments.parquet")) > len(frame)
    assert "conversion" in capsys.readouterr().out
    assert main(["readout", "--source", str(tmp_path / "none.duckdb"),
                 "--experiment", "x"]) == 2
    assert wb.Experiment is Experiment


def test_statistics_are_computed_once(small_warehouse, monkeypatch):
    """Every later validate / sufficient_stats / analyze reuses the engine's answers."""
    exp = Experiment.from_source(small_warehouse)
    calls = []
    for name in ("sufficient_stats", "segment_stats", "daily_stats"):
        real = getattr(exp.compiler, name)

        def spy(*args, _real=real, _name=name, **kw):
            calls.append(_name)
            return _real(*args, **kw)

        monkeypatch.setattr(exp.compiler, name, spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(segments=["device", "country"])
        bayes = exp.analyze("bayesian", segments=["device"], timeseries=False)
    assert sorted(calls) == ["daily_stats", "segment_stats", "segment_stats",
                             "sufficient_stats"]
    assert bayes.validation is result.validation
    pd.testing.assert_frame_equal(exp.sufficient_stats(), result.stats)
    pd.testing.assert_frame_equal(exp.sufficient_stats(segments=["device", "country"]),
                                  result.segment_stats)
    device = result.segment_stats[result.segment_stats.dimension == "device"]
    pd.testing.assert_frame_equal(exp.sufficient_stats(segments="device"),
                                  device.reset_index(drop=True))
    assert len(calls) == 4
    # the overall SRM p-value is the report's, on every overall row
    assert (result.results["srm_p_value"] == result.validation.srm_p_value).all()
