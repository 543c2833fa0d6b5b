"""Malformed input raises (naming the row), degenerate input yields rows with error_message;
SRM, power helpers, result object and the CLI."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower

from workbench import messages
from workbench.cli import main as cli_main
from workbench.errors import DegenerateDataWarning, ParameterError, SRMWarning, StatsInputError
from workbench.stats import analyze, duration, mde, power_table, sample_size, schema, srm


def _good():
    return pd.DataFrame({
        "metric": ["conv", "conv", "conv", "rev", "rev", "rev"],
        "variant": ["control", "a", "b"] * 2,
        "kind": ["proportion"] * 3 + ["mean"] * 3,
        "n": [1000.0, 1010, 990, 1000, 1010, 990],
        "sum": [100.0, 120, 95, 5000, 5300, 4900],
        "sum_squares": [100.0, 120, 95, 60000, 65000, 59000]})


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.assign(n=d.n.where(d.index != 4, -3)), "row 4 (metric='rev', variant='a'"),
    (lambda d: d.assign(kind=d.kind.where(d.index != 2, "median")), "unknown metric kind 'median'"),
    (lambda d: d.assign(sum_squares=d.sum_squares.where(d.index != 5, 10.0)),
     "row 5 (metric='rev', variant='b'): sum_squares < sum^2/n"),
    (lambda d: d.assign(sum=d["sum"].where(d.index != 1, 2000.0)), "row 1 (metric='conv', variant='a'): proportion sum"),
    (lambda d: d.drop(columns="sum_squares"), "mean metrics need column 'sum_squares'"),
    (lambda d: d.drop(columns="n"), "lacks required column(s) ['n']"),
    (lambda d: pd.concat([d, d.iloc[[4]]]), "duplicated metric x variant"),
    (lambda d: d.assign(variant=d.variant.replace("control", "ctl")), "control variant 'control' does not occur"),
    (lambda d: d.assign(kind=d.kind.where(d.index != 0, "mean")), "metric 'conv' has rows of different kinds"),
    (lambda d: d.assign(n=d.n.astype(object).where(d.index != 0, "many")), "column 'n' of the statistics table must be numeric"),
])
def test_malformed_input_raises_naming_the_row(mutate, needle):
    with pytest.raises(StatsInputError) as exc:
        analyze(mutate(_good()))
    assert needle in str(exc.value)


def test_impossible_ratio_cross_product_raises():
    df = pd.DataFrame({"metric": "r", "variant": ["control", "a"], "kind": "ratio",
                       "n": [100, 100], "sum": [500.0, 520], "sum_squares": [3000.0, 3100],
                       "den_sum": [200.0, 210], "den_sum_squares": [500.0, 520],
                       "sum_product": [1100.0, 5000]})
    with pytest.raises(StatsInputError, match="row 1 .*sum_product is impossible"):
        analyze(df)
    df.loc[1, "sum_product"] = 1150.0
    assert analyze(df).to_frame().error_message.iloc[0] == ""


def test_nullable_dtypes_from_warehouses_are_accepted():
    df = _good().astype({"metric": "string", "variant": "string", "kind": "string",
                         "n": "Int64", "sum": "Float64", "sum_squares": "Float64"})
    df.loc[5, "sum"] = pd.NA
    with pytest.warns(DegenerateDataWarning):
        res = analyze(df).to_frame()
    ref = analyze(_good()).to_frame()
    assert res.p_value.iloc[:3].to_numpy() == pytest.approx(ref.p_value.iloc[:3].to_numpy(), rel=1e-12)
    assert res.error_message.iloc[3] == messages.MISSING_STATS


def test_ratio_rows_need_their_columns():
    df = _good().assign(kind=lambda d: d.kind.replace("mean", "ratio"))
    with pytest.raises(StatsInputError, match="row 3 .*ratio metrics need column 'den_sum'"):
        analyze(df)


@pytest.mark.parametrize("kwargs,name", [({"method": "magic"}, "method"), ({"alpha": 1.5}, "alpha"),
                                         ({"difference": "ratio"}, "difference"),
                                         ({"correction": "sidak"}, "correction"),
                                         ({"alternative": "both"}, "alternative"),
                                         ({"prior_sd": -1}, "prior_sd")])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ParameterError, match=f"parameter {name}="):
        analyze(_good(), **kwargs)


def test_degenerate_rows_get_messages_and_never_raise():
    rows = [  # metric, variant, kind, n, sum, sum_squares, den_sum
        ("empty_ctrl", "control", "mean", 0, 0, 0, np.nan), ("empty_ctrl", "a", "mean", 10, 5, 9, np.nan),
        ("empty_var", "control", "mean", 10, 5, 9, np.nan), ("empty_var", "a", "mean", 0, 0, 0, np.nan),
        ("const", "control", "mean", 10, 20, 40, np.nan), ("const", "a", "mean", 10, 30, 90, np.nan),
        ("zero_base", "control", "proportion", 50, 0, 0, np.nan), ("zero_base", "a", "proportion", 50, 3, 3, np.nan),
        ("one", "control", "mean", 1, 2, 4, np.nan), ("one", "a", "mean", 10, 5, 9, np.nan),
        ("nan", "control", "mean", 10, np.nan, 9, np.nan), ("nan", "a", "mean", 10, 5, 9, np.nan),
        ("ratio0", "control", "ratio", 10, 0, 0, 0.0), ("ratio0", "a", "ratio", 10, 5, 9, 4.0),
        ("fine", "control", "mean", 10, 5, 9, np.nan), ("fine", "a", "mean", 10, 6, 9, np.nan),
        ("no_ctrl", "a", "mean", 10, 6, 9, np.nan),
    ]
    df = pd.DataFrame(rows, columns=["metric", "variant", "kind", "n", "sum", "sum_squares", "den_sum"])
    df["den_sum_squares"] = np.where(df.kind == "ratio", df.den_sum * 2, np.nan)
    df["sum_product"] = np.where(df.kind == "ratio", df["sum"], np.nan)
    expected = {"empty_ctrl": messages.NO_UNITS_CONTROL, "empty_var": messages.NO_UNITS_VARIANT,
                "const": messages.ZERO_VARIANCE, "zero_base": messages.ZERO_BASELINE,
                "one": messages.TOO_FEW_UNITS, "nan": messages.MISSING_STATS,
                "ratio0": messages.ZERO_DENOMINATOR, "fine": "", "no_ctrl": messages.NO_CONTROL_ROW}
    for method in ("frequentist", "sequential", "bayesian"):
        with pytest.warns(DegenerateDataWarning, match="8 of 9 comparisons"):
            res = analyze(df, method=method).to_frame().set_index("metric")
        for metric, msg in expected.items():
            assert res.loc[metric, "error_message"] == msg, (method, metric)
        bad = res[res.error_message != ""]
        assert bad[["effect", "ci_lower", "ci_upper", "p_value", "chance_to_win"]].isna().all().all()
        assert res.loc["fine", ["ci_lower", "ci_upper"]].notna().all()
    # absolute differences are fine with a zero baseline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)
        ab = analyze(df, difference="absolute").to_frame().set_index("metric")
    assert ab.loc["zero_base", "error_message"] == "" and np.isfinite(ab.loc["zero_base", "p_value"])


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


def test_srm_matches_chisquare_and_flags_mismatch():
    r = srm({"control": 5000, "a": 5100, "b": 4900}, {"control": 1, "a": 1, "b": 1})
    ref = stats.chisquare([5000, 5100, 4900])
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12) and not r.flagged and r.message == ""
    r = srm({"control": 5000, "a": 5600}, {"control": 0.5, "a": 0.5})
    assert r.flagged and r.p_value < 1e-3 and "sample ratio mismatch" in r.message
    r = srm({"control": 2000, "a": 1000}, {"control": 2 / 3, "a": 1 / 3})
    assert r.p_value == pytest.approx(1.0) and not r.flagged
    assert "SRM" in r.summary() and len(r.to_frame()) == 2


def test_srm_empty_planned_variant_never_passes():
    r = srm({"control": 3, "a": 2}, {"control": 1, "a": 1, "b": 1})
    assert r.flagged and r.p_value == 0 and r.message == messages.SRM_EMPTY_VARIANT
    df = _good()
    with pytest.warns(SRMWarning):
        res = analyze(df, planned_weights={"control": 1, "a": 1, "b": 1, "c": 1}).to_frame()
    assert (res.srm_p_value == 0).all()
    res = analyze(df, planned_weights={"control": 1, "a": 1, "b": 1},
                  units={"control": 1000, "a": 1000, "b": 1000}).to_frame()
    assert (res.srm_p_value == 1).all()


@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_power_matches_statsmodels(alternative, ratio):
    solver = NormalIndPower()
    # proportions: effect size with the unpooled variance of the two arms
    p1, rel = 0.1, 0.1
    p2 = p1 * (1 + rel)
    v = p1 * (1 - p1) + p2 * (1 - p2) / ratio
    es = (p2 - p1) / math.sqrt(v / (1 + 1 / ratio))
    ref = solver.solve_power(effect_size=es, alpha=0.05, power=0.8, ratio=ratio,
                             alternative=alternative)
    got = sample_size(p1, rel, alpha=0.05, power=0.8, ratio=ratio, alternative=alternative)
    assert got == pytest.approx(ref, rel=1e-6)
    # MDE for proportions: statsmodels power at the returned effect is the target
    n = 20_000
    d = mde(p1, n, relative=False, ratio=ratio, alternative=alternative)
    p2 = p1 + d
    es = d / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2) / ratio) / (1 + 1 / ratio))
    assert solver.power(es, n, 0.05, ratio=ratio, alternative=alternative) == pytest.approx(0.8, abs=1e-6)
    # means
    sd = 3.0
    # (statsmodels' own effect-size solver stops at power 0.79997; check the power instead)
    d = mde(10.0, n, kind="mean", sd=sd, relative=False, ratio=ratio, alternative=alternative)
    assert solver.power(d / sd, n, 0.05, ratio=ratio, alternative=alternative) == pytest.approx(0.8, abs=1e-9)
    n_ref = solver.solve_power(effect_size=0.5 / sd, alpha=0.05, power=0.8, ratio=ratio,
                               alternative=alternative)
    assert sample_size(10.0, 0.05, kind="mean", sd=sd, ratio=ratio,
                       alternative=alternative) == pytest.approx(n_ref, rel=1e-6)


def test_power_table_for_a_planned_duration():
    tab = power_table(0.1, users_per_day=3000, days=14, arms=3)
    assert list(tab.columns) == ["day", "units_per_arm", "mde"] and len(tab) == 14
    assert tab.units_per_arm.iloc[-1] == 14_000 and tab.mde.is_monotonic_decreasing
    assert tab.mde.iloc[-1] == pytest.approx(mde(0.1, 14_000))
    with pytest.raises(ParameterError):
        sample_size(1.5, 0.1)
    n_ref = NormalIndPower().solve_power(effect_size=0.5 / 3.0, alpha=0.05, power=0.8)
    assert duration(10.0, 0.05, users_per_day=100, kind="mean", sd=3.0, arms=3) == math.ceil(
        n_ref * 3 / 100)


def test_cli_reads_csv_and_parquet_and_writes_csv_json(tmp_path, capsys):
    df = _good()
    src = tmp_path / "stats.csv"
    df.to_csv(src, index=False)
    pq = tmp_path / "stats.parquet"
    df.to_parquet(pq)
    out = tmp_path / "out.json"
    assert cli_main(["analyze", str(src), "--method", "frequentist", "--correction", "holm",
                     "--difference", "absolute", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())
    ref = analyze(df, correction="holm", difference="absolute").to_frame()
    assert [r["p_value_adjusted"] for r in rows] == pytest.approx(ref.p_value_adjusted.tolist())
    assert cli_main(["analyze", str(pq), "--output", str(tmp_path / "o.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 4
    assert cli_main(["analyze", str(pq), "--method", "sequential", "--alternative", "greater",
                     "--sequential-tuning", "20000", "--output", str(tmp_path / "s.csv")]) == 0
    seq = pd.read_csv(tmp_path / "s.csv")
    ref = analyze(df, method="sequential", alternative="greater", sequential_tuning=20000).to_frame()
    assert seq.ci_lower.to_numpy() == pytest.approx(ref.ci_lower.to_numpy())
    assert cli_main(["analyze", str(pq), "--method", "bayesian"]) == 0
    assert "chance_to_win" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    df.assign(n=-1).to_csv(bad, index=False)
    assert cli_main(["analyze", str(bad)]) == 2
    assert "negative n" in capsys.readouterr().err
    assert cli_main(["analyze", str(tmp_path / "missing.csv")]) == 2


def test_planned_weights_must_name_the_variants():
    with pytest.raises(ParameterError, match="planned_weights must map variant names"):
        analyze(_good(), planned_weights=(1 / 3, 1 / 3, 1 / 3))
    with pytest.raises(StatsInputError, match="no planned variant"):
        analyze(_good(), planned_weights={"ctl": 1, "x": 1})
    with pytest.raises(StatsInputError, match="no planned variant"):
        srm({"control": 10, "a": 12}, {"A": 1, "B": 1})
