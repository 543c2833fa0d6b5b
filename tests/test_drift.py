"""Drift verdicts: checked against Evidently 0.7's own DataDriftPreset and against scipy."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from workbench.drift import (
    CHI_SQUARE,
    JENSEN_SHANNON,
    KS,
    WASSERSTEIN,
    Z_TEST,
    DriftResult,
    drift_table,
    evidently_report,
    snapshot_verdicts,
)
from workbench.errors import DataError
from workbench.summary import Summary


def html_rows(html: str) -> list[list[str]]:
    """The cells of each row of the HTML tables (header rows included)."""
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


def _frames(n: int, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(n, shift, cats):
        return pd.DataFrame({
            "shifted": rng.normal(shift, 1, n),
            "stable": rng.normal(0, 1, n),
            "skewed": rng.exponential(1 + shift, n),
            "rounded": np.round(rng.normal(0, 1, n), 1),          # many ties
            "few_values": rng.integers(0, 4, n).astype(float),    # numeric, <= 5 values
            "small_int": rng.integers(0, 7, n),                   # int <= 10 values: categorical
            "big_int": rng.integers(0, 100, n),                   # int > 10 values: numeric
            "plan": rng.choice(cats, n),
            "flag": rng.random(n) < 0.3 + shift / 3,
            "slight": rng.normal(0.05 * shift, 1, n),
        })

    ref = make(n, 0.0, ["basic", "plus", "pro"])
    cur = make(n, 0.3, ["basic", "plus", "pro", "enterprise"])
    cur.loc[cur.index[:7], "shifted"] = np.nan          # NaN dropped as Evidently does
    # inf WITH a NaN in the column: Evidently's DriftedColumnsCount only drops inf from columns
    # that also hold NaN (its ValueDrift always does); drift_table follows ValueDrift.
    cur.loc[cur.index[7:9], "skewed"] = np.inf
    cur.loc[cur.index[9], "skewed"] = np.nan
    return ref, cur


def _compare_with_evidently(ref, cur):
    ours = drift_table(ref, cur)
    report = evidently_report(ref, cur)
    theirs = report.verdicts().set_index("column")
    table = ours.table.set_index("column")
    assert set(theirs.index) == set(table.index)
    for column, row in theirs.iterrows():
        assert table.loc[column, "method"] == row["method"], column
        assert table.loc[column, "threshold"] == row["threshold"], column
        assert table.loc[column, "statistic"] == pytest.approx(row["statistic"], rel=1e-9, abs=1e-12), column
        assert bool(table.loc[column, "drifted"]) == row["drifted"], column
    counted = next(m for m in report.snapshot.dict()["metrics"]
                   if m["config"]["type"].endswith("DriftedColumnsCount"))
    assert ours.n_drifted == counted["value"]["count"]
    assert ours.share_drifted == pytest.approx(counted["value"]["share"])
    return ours, table


def test_verdicts_equal_evidentlys_on_large_data():
    ref, cur = _frames(3000)
    ours, table = _compare_with_evidently(ref, cur)
    assert table.loc["shifted", "method"] == WASSERSTEIN
    assert table.loc["few_values", "method"] == JENSEN_SHANNON
    assert table.loc["small_int", "method"] == JENSEN_SHANNON
    assert table.loc["plan", "method"] == JENSEN_SHANNON
    assert bool(table.loc["shifted", "drifted"]) and not bool(table.loc["stable", "drifted"])
    assert "'enterprise'" in table.loc["plan", "message"]
    assert table.loc["plan", "status"] == "warning"


def test_verdicts_equal_evidentlys_on_small_data():
    ref, cur = _frames(700, seed=5)
    _, table = _compare_with_evidently(ref, cur)
    assert table.loc["shifted", "method"] == KS
    assert table.loc["few_values", "method"] == CHI_SQUARE
    assert table.loc["plan", "method"] == CHI_SQUARE
    assert table.loc["flag", "method"] == Z_TEST


def test_statistics_match_scipy():
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": np.round(rng.normal(0, 2, 4000), 1), "c": rng.choice(list("abcd"), 4000)})
    cur = pd.DataFrame({"x": np.round(rng.normal(0.2, 2, 2500), 1),
                        "c": rng.choice(list("abcde"), 2500, p=[.3, .3, .2, .1, .1])})
    t = drift_table(ref, cur).table.set_index("column")
    x_ref, x_cur = ref["x"].to_numpy(), cur["x"].to_numpy()
    w = stats.wasserstein_distance(x_ref, x_cur) / np.std(x_ref)
    assert t.loc["x", "wasserstein_norm"] == pytest.approx(w, rel=1e-12)
    ks = stats.ks_2samp(x_ref, x_cur)
    assert t.loc["x", "ks_statistic"] == pytest.approx(ks.statistic, rel=1e-12)
    assert t.loc["x", "ks_pvalue"] == pytest.approx(ks.pvalue, rel=1e-9)
    keys = sorted(set(ref["c"]) | set(cur["c"]))
    p = ref["c"].value_counts().reindex(keys, fill_value=0).to_numpy() / len(ref)
    q = cur["c"].value_counts().reindex(keys, fill_value=0).to_numpy() / len(cur)
    assert t.loc["c", "jensenshannon"] == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    # PSI by hand: empty cells filled with 1e-4 (Evidently's rule when every share > 1e-4).
    pf = np.where(p == 0, 1e-4, p)
    assert t.loc["c", "psi"] == pytest.approx(np.sum((pf - q) * np.log(pf / q)), rel=1e-12)


def test_large_sample_ks_pvalue_matches_scipy():
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 30_000)})
    cur = pd.DataFrame({"x": rng.normal(0.01, 1, 20_000)})
    t = drift_table(ref, cur).table.iloc[0]
    ks = stats.ks_2samp(ref["x"], cur["x"])
    assert t["ks_statistic"] == pytest.approx(ks.statistic, rel=1e-12)
    assert t["ks_pvalue"] == pytest.approx(ks.pvalue, rel=1e-6)


def test_bad_columns_get_a_status_not_a_crash(tmp_path):
    rng = np.random.default_rng(4)
    n = 1500
    ref = pd.DataFrame({
        "ok": rng.normal(size=n),
        "all_nan": np.full(n, np.nan),
        "mixed": pd.Series(["a", 1, 2.5, "b"] * (n // 4) + ["a"] * (n % 4), dtype=object),
        "constant": np.ones(n),
        "text": [f"comment {i}" for i in range(n)],
        "when": pd.date_range("2026-01-01", periods=n, freq="h"),
        "only_ref": rng.normal(size=n),
        "none_obj": pd.Series([None] * n, dtype=object),
    })
    cur = ref.drop(columns=["only_ref"]).copy()
    cur["ok"] = rng.normal(size=n)
    cur["all_nan"] = rng.normal(size=n)
    result = drift_table(ref, cur)
    t = result.table.set_index("column")
    assert t.loc["ok", "status"] == "ok"
    assert t.loc["all_nan", "status"] == "error" and "missing" in t.loc["all_nan", "message"]
    assert t.loc["mixed", "status"] == "warning" and "int" in t.loc["mixed", "message"]
    assert not bool(t.loc["mixed", "drifted"])           # identical data
    assert t.loc["constant", "status"] == "warning" and "constant" in t.loc["constant", "message"]
    assert not bool(t.loc["constant", "drifted"])
    assert t.loc["text", "status"] == "skipped"
    assert t.loc["when", "status"] == "skipped"
    assert t.loc["only_ref", "status"] == "error" and "current" in t.loc["only_ref", "message"]
    assert t.loc["none_obj", "status"] == "error"
    assert result.n_columns == 3 and t["drifted"].isna().sum() == 5
    report = evidently_report(ref, cur, path=tmp_path)   # Evidently does not crash either
    assert set(report.columns) == {"ok", "mixed", "constant"}
    theirs = snapshot_verdicts(report.snapshot).set_index("column")["drifted"]
    assert {c: bool(t.loc[c, "drifted"]) for c in theirs.index} == theirs.to_dict()


def test_empty_frames():
    ref = pd.DataFrame({"x": pd.Series([], dtype=float)})
    cur = pd.DataFrame({"x": [1.0, 2.0]})
    result = drift_table(ref, cur)
    assert result.table.loc[0, "status"] == "error"
    assert result.n_columns == 0 and not result.dataset_drift
    assert "not assessed" in result.summary()


def test_report_samples_large_data_and_saves_files(tmp_path):
    ref, cur = _frames(3000)
    report = evidently_report(ref, cur, max_rows=2000, seed=1, path=tmp_path)
    assert report.sampled and report.n_reference == 2000 and report.n_current == 2000
    assert "sample" in report.note and "full data" in report.note
    assert report.html_path.stat().st_size > 1000
    saved = json.loads(report.json_path.read_text())
    assert "ValueDrift" in json.dumps(saved)


def test_bad_input_raises():
    df = pd.DataFrame({"x": [1.0]})
    with pytest.raises(DataError, match="reference"):
        drift_table([1, 2], df)
    with pytest.raises(DataError, match="nope"):
        drift_table(df, df, columns=["nope"])
    with pytest.raises(DataError, match="drift_share"):
        drift_table(df, df, drift_share=0)


def test_result_object_renders_and_plots():
    import matplotlib

    matplotlib.use("Agg")
    ref, cur = _frames(1200)
    result = drift_table(ref, cur, columns=["shifted", "stable", "plan"])
    assert isinstance(result, DriftResult)
    assert list(result.to_frame()["column"]) == ["shifted", "stable", "plan"]
    summary = result.summary()
    assert isinstance(summary, Summary) and "Dataset drift" in summary
    # one HTML row per column with its verdict, as in the table
    header, *rows = html_rows(result._repr_html_())
    shown = {r[0]: r[header.index("drifted")] for r in rows}
    assert shown == {c: "yes" if d else "no"
                     for c, d in zip(result.table["column"], result.table["drifted"])}
    assert shown["shifted"] == "yes"
    assert result.verdicts()["shifted"] is True
    ax = result.plot()
    assert len(ax.patches) == 3


def test_model_dataset_verdicts_equal_evidentlys():
    from workbench.data.sample import model_dataset

    df = model_dataset(seed=3, n_reference=1500, n_current=1500).drop(columns=["user_id"])
    ref = df[df["period"] == "reference"].drop(columns=["period"])
    cur = df[df["period"] == "current"].drop(columns=["period"])
    ours, table = _compare_with_evidently(ref, cur)
    assert "'video_ads'" in table.loc["channel", "message"]      # the generator's unseen channel
    assert bool(table.loc["device", "drifted"]) or bool(table.loc["sessions_30d", "drifted"])


@pytest.mark.browser
def test_embedded_report_is_shown_at_its_full_height(tmp_path, browser):
    """In a real browser, a static page (as report.html): the frame grows to its content,
    including content drawn after load (Evidently's React app), never the default 150 px."""
    from workbench.drift import embed_html

    document = ("<!DOCTYPE html><html><body><div style='height: 2500px'>tall</div>"
                "<script>setTimeout(function () { var d = document.createElement('div');"
                " d.style.height = '1000px'; document.body.appendChild(d); }, 300);</script>"
                "</body></html>")
    page_file = tmp_path / "page.html"
    page_file.write_text(f"<html><body><h1>Report</h1>{embed_html(document, 'x', 600)}"
                         "</body></html>")
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    try:
        page = context.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_timeout(1500)
        height = page.evaluate("document.querySelector('iframe')"
                               ".getBoundingClientRect().height")
    finally:
        context.close()
    assert height >= 3500  # 2,500 px at load and 1,000 px drawn later, not 600 nor 150
