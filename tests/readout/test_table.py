"""THE results table (workbench.readout.table) on hand-made results with known numbers.

Oracles: statsmodels' Holm adjustment for the shown p-values, the closed-form posterior
orientation (P(win) = 1 - P(variant > control) when lower is better) and the bar geometry
computed here from the interval ends.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from workbench.readout import table as tb
from workbench.readout.record import BAYESIAN, RESULTS, ReadoutRecord

RAW = [0.00002, 0.0213, 0.2, 0.6]


def _results(p_adjusted=True, **extra):
    adj = multipletests(RAW, method="holm")[1] if p_adjusted else [np.nan] * 4
    frame = pd.DataFrame({
        "metric": ["conversion", "conversion", "revenue", "bounce"],
        "variant": ["a", "b", "a", "a"], "role": ["primary", "primary", "secondary",
                                                  "guardrail"],
        "control_mean": [0.1, 0.1, 26.84, 0.4], "variant_mean": [0.112, 0.101, 27.1, 0.41],
        "effect": [0.12, 0.01, 0.0097, 0.025], "ci_lower": [0.08, -0.03, -0.05, -0.02],
        "ci_upper": [0.16, 0.05, 0.07, 0.07], "p_value": RAW, "p_value_adjusted": adj,
        "higher_is_better": [True, True, True, False],
        "verdict": ["improvement", "no detectable effect", "no detectable effect",
                    "harm on guardrail"],
        "error_message": [""] * 4})
    return frame.assign(**extra)


class _Result:
    """The attributes the builder reads (an AnalysisResult has them too)."""

    def __init__(self, results, method="frequentist", correction="holm", alpha=0.05,
                 difference="relative"):
        self.results, self.method, self.correction = results, method, correction
        self.alpha, self.difference = alpha, difference


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.head, self.caption, self.styles = [], [], "", []
        self._where, self._svg = None, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self._svg += 1
        elif tag == "tr" and self._where != "caption":
            self.rows.append([])
            self.styles.append([])
        elif tag in ("td", "th"):
            self._where = tag
            (self.head if tag == "th" else self.rows[-1]).append("")
            if tag == "td":
                self.styles[-1].append(a.get("style", ""))
        elif tag == "caption":
            self._where = "caption"

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg -= 1
        elif tag in ("td", "th", "caption"):
            self._where = None

    def handle_data(self, data):
        if self._svg:
            return
        if self._where == "caption":
            self.caption += data
        elif self._where == "th":
            self.head[-1] += data
        elif self._where == "td":
            self.rows[-1][-1] += data


def _parse(html_text):
    p = _Cells()
    p.feed(html_text)
    p.rows, p.styles = [r for r in p.rows if r], [s for s in p.styles if s]  # not the header
    return p


def test_the_shown_p_value_is_holms_with_the_raw_one_beside_and_labelled():
    t = tb.results_table(_Result(_results()))
    holm = multipletests(RAW, method="holm")[1]
    assert [r.p_value for r in t.rows] == [
        "< 0.0001" if p < 1e-4 else f"{p:.4f}" for p in holm]
    assert [r.p_value_raw for r in t.rows] == ["< 0.0001", "0.0213", "0.2000", "0.6000"]
    assert t.label == "adjusted, Holm across 4 comparisons"
    assert "p-values and intervals adjusted, Holm across 4 comparisons" in t.caption
    frame = t.frame()
    assert list(frame.columns) == ["metric", "role", "variant", "baseline", "treatment", "lift",
                                   "95 % interval", "p-value", "raw p-value", "verdict"]
    assert frame.iloc[1].tolist() == ["conversion", "primary", "b", "0.1", "0.101", "+1.0 %",
                                      "[-3.0 %, +5.0 %]", f"{holm[1]:.4f}", "0.0213",
                                      "no detectable effect"]
    assert t.to_text().splitlines()[0] == t.caption


def test_without_a_correction_the_raw_p_value_is_shown_as_unadjusted():
    t = tb.results_table(_Result(_results(p_adjusted=False), correction=None))
    assert [r.p_value for r in t.rows] == ["< 0.0001", "0.0213", "0.2000", "0.6000"]
    assert t.label == "unadjusted" and "raw p-value" not in t.columns()
    assert "p-values unadjusted" in t.caption


def test_bayesian_rows_show_chance_to_win_and_risk_in_the_good_direction():
    bayes = _results(p_adjusted=False, p_value=np.nan,
                     chance_to_win=[0.9995, 0.9971, 0.4, 0.2],
                     risk_variant=[1e-5, 0.0012, 0.004, 0.03],
                     risk_control=[0.02, 0.01, 0.001, 0.0025])
    t = tb.results_table(_Result(bayes, method="bayesian", correction=None))
    assert "p-value" not in t.columns() and t.label == ""
    assert [r.chance for r in t.rows] == ["> 99.9 %", "99.7 %", "40.0 %", "80.0 %"]
    # lower is better (bounce): the risk of shipping is E[max(delta, 0)] = risk_control
    assert [r.risk for r in t.rows] == ["< 0.01 %", "0.12 %", "0.40 %", "0.25 %"]
    assert "credible intervals" in t.caption and "chance to win and risk" in t.caption
    assert tb.chance_of({"chance_to_win": 0.2, "higher_is_better": False}) == pytest.approx(0.8)


def test_a_readout_records_bayesian_table_adds_chance_and_risk():
    bayes = _results(p_adjusted=False, chance_to_win=[0.99, 0.6, 0.5, 0.3],
                     risk_variant=[0.001] * 4, risk_control=[0.002] * 4)
    record = ReadoutRecord("e", "frequentist", 0.05, "relative", "control", "ship a", 0.5, True,
                           correction="holm", tables={RESULTS: _results(), BAYESIAN: bayes})
    t = tb.results_table(record)
    assert t.columns()[-3:] == ["chance to win", "risk", "verdict"]
    assert [r.chance for r in t.rows] == ["99.0 %", "60.0 %", "50.0 %", "70.0 %"]
    assert "from the Bayesian readout" in t.caption
    # the record says the same in MLflow (metrics) and run.json (summary)
    metrics = record.metrics()
    assert metrics["conversion.a.p_value"] == pytest.approx(multipletests(RAW, method="holm")[1][0])
    assert metrics["conversion.a.p_value_raw"] == RAW[0]
    assert "conversion.a.p_value_adjusted" not in metrics
    assert metrics["bayes.bounce.a.chance_to_win"] == pytest.approx(0.7)
    assert metrics["bayes.bounce.a.risk"] == 0.002
    assert record.summary_dict()["p_value_label"] == "adjusted, Holm across 4 comparisons"
    assert record.tags()["workbench.p_values"] == "adjusted, Holm across 4 comparisons"


def test_html_has_no_index_no_wrapping_a_caption_and_a_bar_per_row():
    t = tb.results_table(_Result(_results()))
    page = t.to_html()
    parsed = _parse(page)
    assert parsed.head[0] == "metric" and "raw p-value" not in parsed.head  # no index column
    assert parsed.caption == t.caption
    assert parsed.rows[0][parsed.head.index("p-value")].split() == ["<", "0.0001", "raw", "<",
                                                                    "0.0001"]
    assert all("white-space:nowrap" in s for row in parsed.styles for s in row)
    assert "&lt; 0.0001" in page and "< 0.0001" not in page  # escaped
    assert page.count("<svg") == len(t.rows)
    # colour by verdict: improvement green, harm red, others grey
    lift = parsed.head.index("lift")
    assert tb.GOOD in parsed.styles[0][lift] and tb.BAD in parsed.styles[3][lift]
    assert "color" not in parsed.styles[1][lift]


def test_the_bars_are_drawn_to_scale_around_a_zero_line():
    t = tb.results_table(_Result(_results()))
    svgs = re.findall(r"<svg.*?</svg>", t.to_html())
    half = tb.BAR_WIDTH / 2
    scale = 0.16 * 1.1  # the largest end over all rows (lifts share one axis), plus 10 %
    for svg, (lo, hi) in zip(svgs, [(0.08, 0.16), (-0.03, 0.05), (-0.05, 0.07), (-0.02, 0.07)]):
        zero = re.search(r"<line x1='([\d.]+)' y1='1'", svg)
        assert float(zero.group(1)) == half
        rect = re.search(r"<rect x='([\d.]+)' y='[\d.]+' width='([\d.]+)'", svg)
        x, width = float(rect.group(1)), float(rect.group(2))
        assert x == pytest.approx(half + lo / scale * half, abs=0.06)
        assert x + width == pytest.approx(half + hi / scale * half, abs=0.11)
    # absolute differences (units differ per metric): each row on its own axis
    absolute = tb.results_table(_Result(_results(), difference="absolute"))
    svg = re.findall(r"<svg.*?</svg>", absolute.to_html())[2]
    x = float(re.search(r"<rect x='([\d.]+)'", svg).group(1))
    assert x == pytest.approx(half - 0.05 / (0.07 * 1.1) * half, abs=0.06)


def test_a_row_that_could_not_be_computed_keeps_its_place():
    frame = _results()
    frame.loc[2, ["effect", "ci_lower", "ci_upper", "p_value", "p_value_adjusted"]] = np.nan
    frame.loc[2, ["verdict", "error_message"]] = ["not computable", "no units in a"]
    t = tb.results_table(_Result(frame))
    r = t.rows[2]
    assert (r.lift, r.interval, r.p_value, r.verdict) == ("-", "-", "-", "not computable")
    assert t.label == "adjusted, Holm across 3 comparisons"  # the family had 3 p-values
    assert "title='no units in a'" in t.to_html()


def test_other_tables_are_formatted_from_their_contract_columns():
    robust = pd.DataFrame({"choice": ["readout", "cuped"], "setting": ["as analysed", "off"],
                           "decision": ["ship a", "no detectable effect"],
                           "flips": [False, True], "primary_effect": [0.031, 0.012],
                           "baseline": [True, False], "note": ["", "CUPED off"],
                           "primary_metric": ["conversion"] * 2, "variant": ["a"] * 2,
                           "primary_ci_lower": [0.01, -0.004], "primary_ci_upper": [0.05, 0.03],
                           "error_message": ["", ""]})
    head, rows = tb.table_cells("robustness", robust)
    assert head == ["choice", "setting", "decision", "flips", "primary effect (conversion, a)",
                    "interval", "baseline", "note"]
    assert rows[1] == ["cuped", "off", "no detectable effect", "yes", "+1.2 %",
                       "[-0.4 %, +3.0 %]", "no", "CUPED off"]
    page = tb.table_html("robustness", robust)
    assert page.count(f"color:{tb.BAD}") == 1  # the row that flips
    unknown = pd.DataFrame({"x": [1.23456], "y": ["z"]})
    assert tb.table_cells("something", unknown) == (["x", "y"], [["1.235", "z"]])
