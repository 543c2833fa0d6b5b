"""Input checks: malformed statistics raise naming the row or parameter; degenerate rows get an
``error_message`` and never raise; planned weights must name the variants (the SRM's input)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from workbench import messages
from workbench.errors import DegenerateDataWarning, ParameterError, SRMWarning, StatsInputError
from workbench.stats import analyze, srm


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


def test_planned_weights_must_name_the_variants():
    with pytest.raises(ParameterError, match="planned_weights must map variant names"):
        analyze(_good(), planned_weights=(1 / 3, 1 / 3, 1 / 3))
    with pytest.raises(StatsInputError, match="no planned variant"):
        analyze(_good(), planned_weights={"ctl": 1, "x": 1})
    with pytest.raises(StatsInputError, match="no planned variant"):
        srm({"control": 10, "a": 12}, {"A": 1, "B": 1})


# SRM through analyze(): planned weights and units (the SRM itself: tests/stats/test_srm.py)
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
