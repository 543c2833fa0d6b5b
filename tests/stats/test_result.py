"""StatsResult: the tidy table's columns, grouping pass-through and its summary() contract."""
from __future__ import annotations

import re

import pandas as pd
import pytest
from scipy import stats

from workbench.stats import analyze, schema
from workbench.summary import Summary


def _good():
    return pd.DataFrame({
        "metric": ["conv", "conv", "conv", "rev", "rev", "rev"],
        "variant": ["control", "a", "b"] * 2,
        "kind": ["proportion"] * 3 + ["mean"] * 3,
        "n": [1000.0, 1010, 990, 1000, 1010, 990],
        "sum": [100.0, 120, 95, 5000, 5300, 4900],
        "sum_squares": [100.0, 120, 95, 60000, 65000, 59000]})


def test_output_columns_and_grouping_pass_through():
    df = pd.concat([_good().assign(dimension="device", segment=s) for s in ("mobile", "desktop")])
    res = analyze(df, correction="holm", planned_weights={"control": 1, "a": 1, "b": 1})
    out = res.to_frame()
    assert list(out.columns[:len(schema.OUTPUT_COLUMNS)]) == list(schema.OUTPUT_COLUMNS)
    assert list(out.columns[len(schema.OUTPUT_COLUMNS):][:2]) == ["dimension", "segment"]
    assert len(out) == 8 and set(out.segment) == {"mobile", "desktop"}
    # each segment is its own correction family: same data, same adjusted p-values
    mob, desk = out[out.segment == "mobile"], out[out.segment == "desktop"]
    assert mob.p_value_adjusted.to_numpy() == pytest.approx(desk.p_value_adjusted.to_numpy())
    assert "relative effects" in res.summary() and "<table" in res._repr_html_()
    counts = [1000, 1010, 990]
    assert out.srm_p_value.iloc[0] == pytest.approx(stats.chisquare(counts).pvalue, rel=1e-10)


def test_summary_is_one_type_and_shows_the_table():
    df = pd.concat([_good().assign(dimension="device", segment=s) for s in ("mobile", "desktop")])
    res = analyze(df, correction="holm", planned_weights={"control": 1, "a": 1, "b": 1})
    s, t = res.summary(), res.to_frame()
    assert isinstance(s, Summary) and str(res) == str(s) and s._repr_html_() == res._repr_html_()
    lines = str(s).splitlines()
    assert lines[0] == ("frequentist analysis vs 'control': relative effects, alpha=0.05, "
                        "two-sided, correction=holm; 8 comparisons")
    assert lines[1].split() == ["dimension", "segment", "metric", "variant", "control",
                                "variant_mean", "effect", "95%", "interval", "p_value",
                                "p_adjusted", "srm_p", "note"]
    assert len(lines) == 2 + len(t)
    # the rows shown are the table's numbers: effects as %, p-values to 4 significant digits
    for line, row in zip(lines[2:], t.itertuples()):
        assert f"{row.effect:+.2%}" in line and f"{row.p_value_adjusted:.4g}" in line
        assert line.split()[:4] == [row.dimension, row.segment, row.metric, row.variant]
    html = s._repr_html_()
    assert html.count("<tr") == len(t) + 1 and html.startswith("<div><p><b>frequentist analysis")
    headers = re.findall(r"<th>(.*?)</th>", html)
    assert headers[:4] == ["dimension", "segment", "metric", "variant"] and "p_adjusted" in headers
    absolute = analyze(_good(), difference="absolute", method="bayesian").summary()
    assert "chance_to_win" in absolute and "p_value" not in absolute

