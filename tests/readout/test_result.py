"""AnalysisResult on hand-made rows: the decision table's wording, the Summary type, HTML."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.data.quality import REPORT_COLUMNS, QualityReport
from workbench.readout.decision import VERDICT_IMPROVED, VERDICT_NONE, VERDICT_SRM
from workbench.readout.result import AnalysisResult
from workbench.summary import Summary


def _report(srm_status="ok", p=0.5):
    checks = pd.DataFrame([["srm", "assignments", "variant", srm_status, 0, np.nan, p, ""]],
                          columns=REPORT_COLUMNS)
    return QualityReport(checks=checks, source="x", experiment_ids=("x",),
                         srm_p_values={"x": p})


def _result(method="frequentist", report=None, **kw):
    results = pd.DataFrame({
        "metric": ["conversion", "latency"], "role": ["primary", "guardrail"],
        "variant": ["b", "b"], "control_mean": [0.1, 200.0], "variant_mean": [0.11, np.nan],
        "effect": [0.1, np.nan], "ci_lower": [0.02, np.nan], "ci_upper": [0.18, np.nan],
        "p_value": [0.00001, np.nan], "p_value_adjusted": [0.03, np.nan],
        "chance_to_win": [0.99, 0.1], "higher_is_better": [True, False],
        "verdict": [VERDICT_IMPROVED, VERDICT_NONE]})
    if method == "bayesian":
        results["p_value"] = results["p_value_adjusted"] = np.nan
    return AnalysisResult(experiment_id="x", method=method, alpha=0.05, difference="relative",
                          control="a", results=results, segments=pd.DataFrame(),
                          heterogeneity=pd.DataFrame(), timeseries=pd.DataFrame(),
                          validation=report or _report(), stats=pd.DataFrame(),
                          decisions={"b": "ship"}, decision="ship b", **kw)


def test_summary_frame_words():
    # the results table (workbench.readout.table, issue 14): numbers by workbench.format
    s = _result(correction="holm").summary_frame()
    assert list(s.columns) == ["metric", "role", "variant", "baseline", "treatment", "lift",
                               "95 % interval", "p-value", "raw p-value", "chance to win",
                               "risk", "verdict"]
    row = s.iloc[0]
    assert (row.baseline, row.treatment, row.lift) == ("0.1", "0.11", "+10.0 %")
    assert row["95 % interval"] == "[+2.0 %, +18.0 %]"
    assert row["p-value"] == "0.0300"  # the adjusted p-value when there is one
    assert row["raw p-value"] == "< 0.0001"  # the raw one beside it
    assert s.iloc[1]["p-value"] == "-" and s.iloc[1].lift == "-"


def test_bayesian_evidence_is_the_chance_to_win_in_the_good_direction():
    s = _result("bayesian").summary_frame()
    assert list(s["chance to win"]) == ["99.0 %", "90.0 %"]  # lower is better
    assert "p-value" not in s


def test_summary_is_a_summary_with_html():
    r = _result()
    text = r.summary()
    assert isinstance(text, Summary)
    assert str(text).splitlines()[0] == "x: ship b" and str(r) == str(text)
    html = text._repr_html_()
    assert html.count("<tr") == 3  # header + 2 rows
    assert "color:#1a7f37" in html  # the improvement in green
    assert r.to_frame() is not r.results and r.to_frame().equals(r.results)


def test_trust_follows_the_srm_check():
    ok = _result()
    assert ok.trustworthy and ok.srm_p_value == 0.5
    bad = _result(report=_report("error", 1e-9))
    assert not bad.trustworthy and bad.srm_p_value == pytest.approx(1e-9)
    assert "sample ratio mismatch" in bad._repr_html_()
    assert VERDICT_SRM not in ok._repr_html_()
