"""Experiment.from_units: the same readout as the event path on the generator's experiment
(results to 1e-9), CUPED against statsmodels OLS on the same rows, and degenerate or malformed
per-unit input (results with messages, or errors naming the column)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench import messages
from workbench.errors import DataError, MetricDefinitionError, ParameterError, SchemaError
from workbench.readout.result import AnalysisResult

UNIT_METRICS = {
    "conversion": wb.proportion("orders", cuped="pre_orders", role="primary"),
    "orders_per_user": wb.mean("orders", cuped="pre_orders"),
    "revenue_per_user": wb.mean("revenue", cuped="pre_revenue", log_stats=True),
    "revenue_per_user_capped": wb.mean("revenue", cuped="pre_revenue",
                                       cap={"percentile": 0.999}),
    "sessions_per_user": wb.mean("sessions", cuped="pre_sessions", role="guardrail"),
    "revenue_per_order": wb.ratio("revenue", "orders", cuped=("pre_revenue", "pre_orders")),
}


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def _numbers_equal(a: pd.DataFrame, b: pd.DataFrame, keys):
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[keys], b[keys], check_dtype=False)
    for c in a.columns:
        if a[c].dtype.kind == "f":
            np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=c)
        elif c not in ("srm_p_value",):
            assert list(a[c]) == list(b[c]), c


@pytest.fixture(scope="module")
def both(small_warehouse, small_units):
    ev = wb.Experiment.from_source(small_warehouse)
    roles = {m.name: m.role for m in ev.metrics}
    assert {k: m.role for k, m in UNIT_METRICS.items()} == roles  # the sample's roles
    w = ev.window
    un = wb.Experiment.from_units(
        small_units, "variant", UNIT_METRICS, unit="user_id", control=w.control,
        planned_weights=dict(zip(w.variants, w.planned_weights)),
        experiment_id=w.experiment_id)
    kw = dict(segments=["device"], timeseries=False, correction="holm")
    return quiet(ev.analyze, **kw), quiet(un.analyze, **kw), un


def test_same_readout_as_the_event_path(both):
    ev, un, _ = both
    assert isinstance(un, AnalysisResult)
    keys = ["metric", "variant"]
    _numbers_equal(ev.results, un.results, keys)
    _numbers_equal(ev.segments, un.segments, keys + ["dimension", "segment"])
    assert un.decision == ev.decision and un.decisions == ev.decisions
    # The same SRM test, on the same units
    assert un.srm_p_value == pytest.approx(ev.srm_p_value, rel=1e-12)


@pytest.mark.parametrize("method", ["bayesian", "sequential"])
def test_other_methods_agree(both, small_warehouse, method):
    _, _, un = both
    ev = wb.Experiment.from_source(small_warehouse)
    _numbers_equal(quiet(ev.analyze, method=method, timeseries=False).results,
                   quiet(un.analyze, method=method).results, ["metric", "variant"])


def test_summary_and_plots_render(both):
    from workbench.plots.experiment import plot_forest, plot_segments

    _, un, _ = both
    assert "revenue_per_order" in str(un.summary())
    ax = plot_forest(un)
    assert len(ax.figure.axes) and ax.get_yticklabels()
    assert plot_segments(un, "revenue_per_user", "device") is not None


def _cuped_frame(n=4000, seed=3):
    rng = np.random.default_rng(seed)
    variant = rng.choice(["control", "treatment"], n, p=[0.45, 0.55])
    x = rng.gamma(2.0, 5.0, n)
    y = 2.0 + 0.7 * x + rng.normal(0, 4, n) + 1.5 * (variant == "treatment") \
        + 0.1 * x * (variant == "treatment")
    return pd.DataFrame({"variant": variant, "y": y, "x": x})


def test_cuped_equals_ols_regression():
    import statsmodels.formula.api as smf

    df = _cuped_frame()
    exp = wb.Experiment.from_units(df, "variant", {"y": wb.mean("y", cuped="x")},
                                   planned_weights={"control": 0.45, "treatment": 0.55})
    row = quiet(exp.analyze, difference="absolute").results.iloc[0]
    ols = smf.ols("y ~ C(variant, Treatment('control')) + x", data=df).fit(cov_type="HC0")
    name = "C(variant, Treatment('control'))[T.treatment]"
    assert bool(row["cuped"])
    assert row["effect"] == pytest.approx(ols.params[name], rel=1e-9)
    assert row["cuped_theta"] == pytest.approx(ols.params["x"], rel=1e-9)
    assert row["se"] == pytest.approx(ols.bse[name], rel=0.02)
    plain = smf.ols("y ~ C(variant, Treatment('control'))", data=df).fit()
    assert row["se"] < 0.7 * plain.bse[name]  # the covariate explains most of the variance


# -- degenerate and malformed input -----------------------------------------------------------
def _small(n=200, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": np.arange(n), "variant": rng.choice(["A", "B"], n),
                         "revenue": rng.gamma(2.0, 3.0, n), "device": rng.choice(["m", "d"], n)})


def _exp(df, **kw):
    return wb.Experiment.from_units(df, "variant", {"revenue": wb.mean("revenue")}, **kw)


def test_defaults_are_stated():
    exp = _exp(_small())
    assert exp.window.control == "A" and exp.window.planned_weights == (0.5, 0.5)
    report = exp.validate().to_frame()
    notes = " ".join(report.loc[report.check == "experiment", "message"])
    assert "control: 'A' (the first variant sorted" in notes
    assert "planned split: equal over A, B" in notes
    assert "time series: skipped" in notes


def test_a_planned_variant_without_rows():
    res = quiet(_exp(_small(), planned_weights={"A": 1, "B": 1, "C": 1}).analyze)
    row = res.results.set_index("variant").loc["C"]
    assert row["error_message"] == messages.NO_UNITS_VARIANT
    assert res.validation.srm and res.srm_p_value == 0.0
    assert "do not trust" in res.decision.lower() or "srm" in res.decision.lower()


def test_one_unit():
    df = _small().iloc[:1]
    exp = _exp(df, planned_weights={"A": 1, "B": 1})
    res = quiet(exp.analyze)
    assert res.validation.status("experiment") == "error"
    assert (res.results["error_message"] != "").all()


def test_duplicated_units_nan_inf_and_null_variants_are_reported():
    df = _small()
    df.loc[[1, 2], "user_id"] = 0
    df.loc[[3, 4, 5], "revenue"] = np.nan
    df.loc[6, "revenue"] = np.inf
    df.loc[[7, 8], "variant"] = None
    report = _exp(df, unit="user_id").validate()
    assert report.count("duplicates", column="user_id") == 2
    # pandas' NaN reaches the engine as NULL: reported either way, counted as 0
    assert report.count("nan", column="revenue") + report.count("nulls", column="revenue") == 3
    assert report.count("inf", column="revenue") == 1
    assert report.count("nulls", column="variant") == 2
    assert not report.ok
    res = quiet(_exp(df, unit="user_id").analyze)
    assert np.isfinite(res.results["effect"]).all()  # NaN/inf count as 0, NULL variants out
    assert res.stats["n"].sum() == len(df) - 2
    kept = df[df.variant.notna()].replace(np.inf, np.nan).fillna({"revenue": 0.0})
    means = kept.groupby("variant").revenue.mean()
    assert res.results["control_mean"].iloc[0] == pytest.approx(means["A"], rel=1e-12)


def test_srm_against_planned_weights_is_scipys():
    from scipy.stats import chisquare

    df = _small(1000)
    report = _exp(df, planned_weights={"A": 0.4, "B": 0.6}).validate()
    counts = df.variant.value_counts().reindex(["A", "B"]).to_numpy()
    expected = counts.sum() * np.array([0.4, 0.6])
    assert report.srm_p_value == pytest.approx(chisquare(counts, expected).pvalue, rel=1e-9)


@pytest.mark.parametrize("change, column", [
    (lambda d: d.drop(columns="revenue"), "revenue"),
    (lambda d: d.assign(revenue=d.revenue.astype(str)), "revenue"),
])
def test_missing_or_non_numeric_metric_column_is_named(change, column):
    with pytest.raises(SchemaError, match=f"column '{column}'.*metric 'revenue'"):
        _exp(change(_small()))


def test_missing_variant_unit_date_or_segment_column_is_named():
    for kw, col in (({"unit": "uid"}, "uid"), ({"date": "when"}, "when")):
        with pytest.raises(SchemaError, match=f"column '{col}'"):
            _exp(_small(), **kw)
    with pytest.raises(SchemaError, match="column 'arm'"):
        wb.Experiment.from_units(_small(), "arm", {"revenue": wb.mean("revenue")})
    with pytest.raises(SchemaError, match="segment column 'tier'"):
        quiet(_exp(_small()).analyze, segments=["tier"])


def test_bad_parameters():
    with pytest.raises(ParameterError, match="control variant 'control'"):
        _exp(_small(), control="control")
    with pytest.raises(ParameterError, match="planned_weights"):
        _exp(_small(), planned_weights={"A": -1, "B": 2})
    with pytest.raises(DataError, match="column 'variant' has no non-NULL value"):
        _exp(_small().assign(variant=None))
    with pytest.raises(MetricDefinitionError, match="from_units needs metrics"):
        wb.Experiment.from_units(_small(), "variant")
    with pytest.raises(wb.WorkbenchError, match="unsupported per-unit table of type list"):
        wb.Experiment.from_units([1, 2], "variant", {"r": wb.mean("r")})


def test_a_dataframe_given_to_from_source_points_to_from_units():
    with pytest.raises(wb.WorkbenchError, match="from_units") as info:
        wb.Experiment.from_source(_small())
    assert "revenue" not in str(info.value)  # the frame is not printed
