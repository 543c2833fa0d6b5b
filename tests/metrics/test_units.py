"""Per-unit tables: the sufficient statistics of a per-user table computed with pandas from the
generator's raw rows equal the event-log path's (1e-9), whatever the engine holding the table
(a pandas frame through ibis.memtable, a DuckDB table, a Parquet file, Spark); caps, segments and
the per-day series; the YAML declarations of column metrics."""
from __future__ import annotations

import warnings

import ibis
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import MetricDefinitionError
from workbench.metrics import load_metrics

# The sample's event metrics, declared on the columns of the per-unit table.
UNIT_METRICS = {
    "conversion": wb.proportion("orders", cuped="pre_orders", role="primary"),
    "orders_per_user": wb.mean("orders", cuped="pre_orders"),
    "revenue_per_user": wb.mean("revenue", cuped="pre_revenue", log_stats=True),
    "revenue_per_user_capped": wb.mean("revenue", cuped="pre_revenue",
                                       cap={"percentile": 0.999}),
    "sessions_per_user": wb.mean("sessions", cuped="pre_sessions", role="guardrail"),
    "revenue_per_order": wb.ratio("revenue", "orders", cuped=("pre_revenue", "pre_orders")),
}


def assert_same(a: pd.DataFrame, b: pd.DataFrame, keys, rtol=1e-9):
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a[keys], b[keys], check_dtype=False)
    num = [c for c in a.columns if c not in keys and a[c].dtype.kind in "fiu"]
    x, y = a[num].to_numpy(float), b[num].to_numpy(float)
    assert (np.isnan(x) == np.isnan(y)).all()
    ok = ~np.isnan(x)
    np.testing.assert_allclose(x[ok], y[ok], rtol=rtol, atol=1e-9)


@pytest.fixture(scope="module")
def events_exp(small_warehouse):
    return wb.Experiment.from_source(small_warehouse)


def from_units(data, events_exp, **kw):
    w = events_exp.window
    return wb.Experiment.from_units(
        data, "variant", UNIT_METRICS, unit="user_id", control=w.control,
        planned_weights=dict(zip(w.variants, w.planned_weights)),
        experiment_id="checkout_redesign", **kw)


@pytest.fixture(scope="module")
def tables(small_units, tmp_path_factory):
    """The same per-unit rows in a pandas frame, a DuckDB table and a Parquet file."""
    path = tmp_path_factory.mktemp("units") / "units.parquet"
    small_units.to_parquet(path)
    con = ibis.duckdb.connect()
    con.con.register("frame", small_units)
    con.con.execute("create table units as select * from frame")
    return {"pandas": small_units, "duckdb": con.table("units"),
            "parquet": str(path), "pyarrow": pytest.importorskip("pyarrow").table(small_units)}


@pytest.mark.parametrize("engine", ["pandas", "duckdb", "parquet", "pyarrow"])
def test_statistics_equal_the_event_path(engine, tables, events_exp):
    exp = from_units(tables[engine], events_exp)
    assert_same(exp.sufficient_stats(), events_exp.sufficient_stats(), ["metric", "variant"])


def test_caps_and_segments_equal_the_event_path(tables, events_exp):
    exp = from_units(tables["pandas"], events_exp)
    pd.testing.assert_frame_equal(exp.compiler.cap_thresholds(),
                                  events_exp.compiler.cap_thresholds(), rtol=1e-9)
    assert_same(exp.sufficient_stats(segments=["device", "country"], top_n=3),
                events_exp.sufficient_stats(segments=["device", "country"], top_n=3),
                ["metric", "variant", "dimension", "segment"])


def test_statistics_by_hand(small_units, events_exp):
    """n, sums and cross products of the ratio metric, straight from the pandas rows."""
    stats = from_units(small_units, events_exp).sufficient_stats().set_index(
        ["metric", "variant"])
    for v, g in small_units.groupby("variant"):
        row = stats.loc[("revenue_per_order", v)]
        assert row["n"] == len(g)
        assert row["sum"] == pytest.approx(g.revenue.sum(), rel=1e-12)
        assert row["sum_product"] == pytest.approx((g.revenue * g.orders).sum(), rel=1e-12)
        assert row["den_pre_den_sum_product"] == pytest.approx(
            (g.orders * g.pre_orders).sum(), rel=1e-12)
        conv = stats.loc[("conversion", v)]
        assert conv["sum"] == (g.orders > 0).sum()


def test_daily_series_is_cumulative_by_date(small_units, events_exp):
    exp = from_units(small_units, events_exp, date="day")
    daily = exp.sufficient_stats(by_day=True)
    got = daily[daily.metric == "revenue_per_user"].set_index(["date", "variant"])
    days = sorted(small_units.day.dt.date.unique())
    assert sorted(set(got.index.get_level_values(0))) == days
    for day in (days[0], days[len(days) // 2], days[-1]):
        upto = small_units[small_units.day.dt.date <= day]
        for v, g in upto.groupby("variant"):
            assert got.loc[(day, v), "n"] == len(g)
            assert got.loc[(day, v), "pre_sum_product"] == pytest.approx(
                (g.revenue * g.pre_revenue).sum(), rel=1e-12)


def test_no_date_means_no_time_series(small_units, events_exp):
    exp = from_units(small_units, events_exp)
    assert exp.sufficient_stats(by_day=True).empty
    assert any("time series: skipped" in n for n in exp.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert exp.analyze(segments=[]).timeseries.empty


def test_yaml_declares_the_same_metrics(tmp_path):
    path = tmp_path / "metrics.yml"
    path.write_text("""
defaults: {cuped: true, pre_period_days: 14, role: secondary}
metrics:
  - {name: revenue, kind: mean, column: revenue, pre_column: pre_revenue, cap: {value: 500}}
  - {name: converted, kind: proportion, column: converted, role: primary}
  - name: aov
    kind: ratio
    numerator: revenue
    denominator: orders
    pre_numerator: pre_revenue
    pre_denominator: pre_orders
    higher_is_better: true
  - {name: orders_per_user, kind: mean, event_type: order, aggregation: count}
""")
    revenue, converted, aov, events_metric = load_metrics(path)
    assert revenue == wb.mean("revenue", cuped="pre_revenue", cap=500)
    assert converted == wb.proportion("converted", role="primary")
    assert aov == wb.ratio("revenue", "orders", cuped=("pre_revenue", "pre_orders"),
                           name="aov")
    assert aov.unit_columns == {"y": "revenue", "d": "orders", "x": "pre_revenue",
                                "w": "pre_orders"}
    assert events_metric.table == "events" and events_metric.cuped  # defaults still apply
    assert events_metric.unit_columns == {}


@pytest.mark.parametrize("spec, field", [
    ({"kind": "ratio", "numerator": "r", "denominator": "o", "pre_numerator": "p"},
     "pre_denominator"),
    ({"kind": "mean", "column": "r", "pre_column": "p", "window_days": 3}, "window_days"),
    ({"kind": "mean", "column": 3, "pre_column": "p"}, "column"),
    ({"kind": "proportion", "column": "c", "cap": {"value": 1}}, "cap"),
])
def test_bad_column_metrics_name_the_field(spec, field):
    with pytest.raises(MetricDefinitionError, match=f"field '{field}'"):
        load_metrics([{"name": "m", **spec}])


def test_event_metrics_are_refused_on_a_per_unit_table(small_units):
    with pytest.raises(MetricDefinitionError, match="'conversion'.*per-unit table"):
        wb.Experiment.from_units(small_units, "variant", load_metrics(None))


@pytest.mark.spark
def test_statistics_equal_on_spark(small_units, events_exp):
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("workbench-tests")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.driver.memory", "1g")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .getOrCreate())  # tests/data/test_spark.py's session when it already runs
    frame = spark.createDataFrame(small_units.drop(columns=["signup_date"]))
    exp = from_units(frame, events_exp)
    assert_same(exp.sufficient_stats(), events_exp.sufficient_stats(), ["metric", "variant"])
    assert_same(exp.sufficient_stats(segments=["device"]),
                events_exp.sufficient_stats(segments=["device"]),
                ["metric", "variant", "dimension", "segment"])
