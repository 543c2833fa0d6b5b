"""Metric YAML validation and engine-side sufficient statistics, checked against pandas/numpy
computations written independently from the raw rows."""
from __future__ import annotations

import datetime as dt

import duckdb
import ibis
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.data.sources import connect, table
from workbench.errors import MetricDefinitionError, SourceError
from workbench.metrics import (
    OTHER,
    PRODUCTS,
    ExperimentWindow,
    MetricCompiler,
    load_metrics,
    summands,
)
from workbench.stats.schema import (
    COVARIATE_INPUT,
    HURDLE_INPUT,
    INPUT_COLUMNS,
    MARGIN_INPUT,
    QUANTILE_INPUT,
)

START, END = dt.date(2026, 1, 10), dt.date(2026, 1, 12)
VARIANTS = ("control", "treatment")


def ts(day, hour=12):
    return dt.datetime(2026, 1, day, hour)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A hand-made warehouse: every edge case of the unit-level semantics, with a known answer."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.duckdb"
    assignments = pd.DataFrame([
        ("e", 1, "control", ts(10, 8)),
        ("e", 2, "control", ts(11, 8)),
        ("e", 3, "treatment", ts(10, 8)),
        ("e", 4, "treatment", ts(12, 8)),      # no events at all
        ("e", 5, "control", ts(10, 8)),        # crossover
        ("e", 5, "treatment", ts(11, 8)),
        ("other", 6, "control", ts(10, 8)),    # another experiment
    ], columns=["experiment_id", "user_id", "variant", "assigned_at"])
    events = pd.DataFrame([
        (1, ts(9), "order", 50.0, 1),          # pre-period (1 day before start)
        (1, ts(10, 7), "order", 70.0, 1),      # in the dates but before exposure: ignored
        (1, ts(10, 9), "session", None, None),
        (1, ts(10, 10), "order", 10.0, 2),
        (1, ts(11, 10), "order", 30.0, 1),
        (1, ts(13, 1), "order", 99.0, 1),      # after end_date: ignored
        (2, ts(11, 9), "session", None, None),
        (2, ts(11, 9, ), "session", None, None),
        (2, ts(12, 9), "order", float("nan"), 1),   # NaN revenue: counted as an order, no revenue
        (3, ts(8), "session", None, None),     # pre-period
        (3, ts(10, 9), "order", 200.0, 3),
        (3, ts(10, 11), "order", 5.0, 1),
        (3, ts(12, 9), "session", None, None),
        (5, ts(10, 9), "order", 1000.0, 1),    # crossover user
        (6, ts(10, 9), "order", 1000.0, 1),    # other experiment
    ], columns=["user_id", "event_time", "event_type", "revenue", "items"])
    users = pd.DataFrame({"user_id": [1, 2, 3, 4, 5, 6],
                          "device": ["mobile", "desktop", "mobile", "tablet", "mobile", "x"]})
    con = duckdb.connect(str(path))
    for name, frame in (("assignments", assignments), ("events", events), ("users", users)):
        con.register("frame", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
        con.unregister("frame")
    con.close()
    return path


def compiler(path, metrics, **kw):
    con = connect(path)
    window = ExperimentWindow("e", START, END, VARIANTS, (0.5, 0.5))
    return MetricCompiler(table(con, "assignments"), table(con, "events"), window,
                          load_metrics(metrics), users=table(con, "users"), **kw)


TINY_METRICS = [
    {"name": "conv", "kind": "proportion", "event_type": "order", "cuped": True,
     "pre_period_days": 3},
    {"name": "orders", "kind": "mean", "event_type": "order", "aggregation": "count"},
    {"name": "revenue", "kind": "mean", "event_type": "order", "aggregation": "sum",
     "column": "revenue", "log_stats": True, "cuped": True, "pre_period_days": 3},
    {"name": "big_orders", "kind": "mean", "event_type": "order", "aggregation": "count",
     "where": [{"column": "revenue", "op": ">=", "value": 30}]},
    {"name": "sessions_day1", "kind": "mean", "event_type": "session", "window_days": 1},
    {"name": "distinct_items", "kind": "mean", "aggregation": "distinct", "column": "items",
     "event_type": ["order", "session"]},
    {"name": "aov", "kind": "ratio", "cuped": True, "pre_period_days": 3,
     "numerator": {"event_type": "order", "aggregation": "sum", "column": "revenue"},
     "denominator": {"event_type": "order"}},
]

# unit values by hand from the table above (user 5 excluded as a crossover)
EXPECTED_UNITS = {
    # user: (variant, conv, orders, revenue, big, sessions_day1, distinct_items, pre_conv,
    #        pre_revenue, pre_orders)
    1: ("control", 1, 2, 40.0, 1, 1, 2, 1, 50.0, 1),
    2: ("control", 1, 1, 0.0, 0, 2, 1, 0, 0.0, 0),
    3: ("treatment", 1, 2, 205.0, 1, 0, 2, 0, 0.0, 0),
    4: ("treatment", 0, 0, 0.0, 0, 0, 0, 0, 0.0, 0),
}


def test_tiny_unit_values_match_hand_computation(tiny):
    units = compiler(tiny, TINY_METRICS).unit_values().execute().set_index("user_id")
    assert sorted(units.index) == [1, 2, 3, 4]
    for uid, (variant, conv, orders, rev, big, s1, dist, pconv, prev, porders) in \
            EXPECTED_UNITS.items():
        row = units.loc[uid]
        assert row["variant"] == variant
        assert row["conv__y"] == conv and row["conv__x"] == pconv
        assert row["orders__y"] == orders
        assert row["revenue__y"] == pytest.approx(rev) and row["revenue__x"] == prev
        assert row["big_orders__y"] == big
        assert row["sessions_day1__y"] == s1
        assert row["distinct_items__y"] == dist
        assert row["aov__y"] == pytest.approx(rev) and row["aov__d"] == orders
        assert row["aov__w"] == porders


def test_tiny_sufficient_stats_are_sums_of_unit_values(tiny):
    stats = compiler(tiny, TINY_METRICS).sufficient_stats().set_index(["metric", "variant"])
    units = pd.DataFrame.from_dict(EXPECTED_UNITS, orient="index", columns=[
        "variant", "conv", "orders", "revenue", "big", "s1", "dist", "pconv", "prev", "porders"])
    for v, g in units.groupby("variant"):
        assert stats.loc[("orders", v), "n"] == len(g)
        assert stats.loc[("orders", v), "sum_squares"] == (g.orders ** 2).sum()
        r = stats.loc[("revenue", v)]
        assert r["sum"] == pytest.approx(g.revenue.sum())
        assert r["pre_sum_product"] == pytest.approx((g.revenue * g.prev).sum())
        pos = g.revenue[g.revenue > 0]
        assert r["positive_n"] == len(pos)
        assert r["log_sum"] == pytest.approx(np.log(pos).sum())
        assert r["log_sum_squares"] == pytest.approx((np.log(pos) ** 2).sum())
        a = stats.loc[("aov", v)]
        assert a["den_sum"] == g.orders.sum()
        assert a["sum_product"] == pytest.approx((g.revenue * g.orders).sum())
        assert a["den_pre_den_sum_product"] == pytest.approx((g.orders * g.porders).sum())
        assert a["sum_pre_den_product"] == pytest.approx((g.revenue * g.porders).sum())
        assert stats.loc[("conv", v), "kind"] == "proportion"
        assert np.isnan(stats.loc[("orders", v), "pre_sum"])  # no CUPED asked


def test_crossovers_can_be_kept_in_their_first_variant(tiny):
    units = compiler(tiny, TINY_METRICS, exclude_crossovers=False).unit_values().execute()
    u5 = units.set_index("user_id").loc[5]
    assert u5["variant"] == "control"
    assert u5["revenue__y"] == 1000.0


def test_fixed_cap_and_segments(tiny):
    metrics = [{"name": "rev", "kind": "mean", "event_type": "order", "aggregation": "sum",
                "column": "revenue", "cap": {"value": 100}}]
    c = compiler(tiny, metrics)
    units = c.unit_values().execute().set_index("user_id")
    assert units.loc[3, "rev__y"] == 100.0 and units.loc[1, "rev__y"] == 40.0
    seg = c.segment_stats(["device"], top_n=1)
    assert set(seg["segment"]) == {"mobile", OTHER}
    assert seg.groupby("variant")["n"].sum().to_dict() == {"control": 2, "treatment": 2}
    with pytest.raises(SourceError, match="nope"):
        c.segment_stats(["nope"])


def test_daily_cumulative_stats_end_at_the_overall(tiny):
    c = compiler(tiny, TINY_METRICS)
    daily = c.daily_stats()
    overall = c.sufficient_stats().set_index(["metric", "variant"])
    assert "distinct_items" not in set(daily["metric"])  # not additive by day
    last = daily[daily["date"] == END].set_index(["metric", "variant"])
    cols = ["n", "sum", "sum_squares", "pre_sum", "pre_sum_product", "den_sum", "sum_product",
            "log_sum", "log_sum_squares", "positive_n"]
    pd.testing.assert_frame_equal(last[cols], overall.loc[last.index, cols], check_dtype=False)
    # by hand on day 1 (Jan 10): control = user 1 with 1 order of 10 (user 2 not yet exposed)
    d1 = daily[daily["date"] == START].set_index(["metric", "variant"])
    assert d1.loc[("orders", "control"), "n"] == 1
    assert d1.loc[("revenue", "control"), "sum"] == 10.0
    assert d1.loc[("revenue", "treatment"), "sum"] == 205.0
    assert d1.loc[("revenue", "control"), "pre_sum_product"] == 10.0 * 50.0
    d2 = daily[daily["date"] == dt.date(2026, 1, 11)].set_index(["metric", "variant"])
    assert d2.loc[("revenue", "control"), "sum_squares"] == 40.0 ** 2  # user 1 now at 40
    assert d2.loc[("orders", "control"), "n"] == 2


def test_unknown_columns_name_the_metric_and_field(tiny):
    bad = [{"name": "x", "kind": "mean", "aggregation": "sum", "column": "price"}]
    with pytest.raises(MetricDefinitionError, match="'x'.*'column'.*price"):
        compiler(tiny, bad).sufficient_stats()
    bad = [{"name": "r", "kind": "ratio", "numerator": {"event_type": "order"},
            "denominator": {"where": [{"column": "coupon", "op": "not_null"}]}}]
    with pytest.raises(MetricDefinitionError, match=r"'r'.*'denominator.where\[0\]'.*coupon"):
        compiler(tiny, bad).sufficient_stats()


def test_statistics_are_read_from_the_stats_schema():
    # written out by hand here: each statistic is the sum of a product of unit values
    assert PRODUCTS == {
        "sum": ("y",), "sum_squares": ("y", "y"),
        "den_sum": ("d",), "den_sum_squares": ("d", "d"), "sum_product": ("y", "d"),
        "pre_sum": ("x",), "pre_sum_squares": ("x", "x"), "pre_sum_product": ("y", "x"),
        "pre_den_sum": ("w",), "pre_den_sum_squares": ("w", "w"),
        "pre_den_sum_product": ("x", "w"), "den_pre_sum_product": ("d", "x"),
        "sum_pre_den_product": ("y", "w"), "den_pre_den_sum_product": ("d", "w"),
    }
    # every input column of the stats engine is either a key, n, the hurdle's, a product, a
    # metric's margin attributes, a quantile's order statistics or the covariate cross products
    # (compiled apart, only for metrics that declare covariates)
    apart = set(MARGIN_INPUT) | set(QUANTILE_INPUT) | set(COVARIATE_INPUT)
    rest = set(INPUT_COLUMNS) - set(PRODUCTS) - set(HURDLE_INPUT) - apart
    assert rest == {"metric", "variant", "kind", "n"}
    stats = set(compiler_stats_columns())
    assert stats == set(INPUT_COLUMNS) - apart  # the tiny metrics use every statistic


def compiler_stats_columns():
    metrics = load_metrics(TINY_METRICS)
    out = set()
    for m in metrics:
        values = {tag: ibis.literal(1.0) for tag, _, _ in m.parts}
        out |= {k.split("|")[1] for k in summands(values, m)}
    return out | {"metric", "variant", "kind", "n"}


def test_segment_sums_match_hand_computation(tiny):
    # users 1 (control) and 3 (treatment) are on mobile, 2 desktop, 4 tablet
    seg = compiler(tiny, TINY_METRICS).segment_stats(["device"], top_n=1)
    seg = seg.set_index(["metric", "variant", "segment"])
    assert seg.loc[("revenue", "control", "mobile"), "sum"] == 40.0
    assert seg.loc[("revenue", "control", OTHER), "sum"] == 0.0
    assert seg.loc[("orders", "treatment", "mobile"), "sum_squares"] == 4.0
    assert seg.loc[("aov", "control", "mobile"), "pre_den_sum_product"] == 50.0 * 1
    assert set(seg.reset_index()["dimension"]) == {"device"}


def test_with_metrics_reuses_the_units(tiny):
    c = compiler(tiny, TINY_METRICS)
    units = c.units()
    sub = c.with_metrics(load_metrics(TINY_METRICS[:1]))
    assert sub.units() is units and [m.name for m in sub.metrics] == ["conv"]
    assert [m.name for m in c.metrics] == [m["name"] for m in TINY_METRICS]
    pd.testing.assert_frame_equal(sub.sufficient_stats(),
                                  c.sufficient_stats().query("metric == 'conv'")
                                  .dropna(axis=1, how="all").reset_index(drop=True))


# -- on the sample warehouse, against pandas ----------------------------------------------------


def _pandas_units(path, truth, pre_days=14):
    """The common brief's metric semantics, written directly in pandas from the raw rows."""
    con = duckdb.connect(str(path), read_only=True)
    a = con.execute("SELECT * FROM assignments WHERE experiment_id = ?",
                    [truth.experiment_id]).df()
    e = con.execute("SELECT * FROM events").df()
    con.close()
    nv = a.groupby("user_id")["variant"].nunique()
    a = a[a.user_id.isin(nv[nv == 1].index)].groupby("user_id").agg(
        variant=("variant", "first"), assigned_at=("assigned_at", "min"))
    start = pd.Timestamp(truth.start_date)
    end = pd.Timestamp(truth.end_date) + pd.Timedelta(days=1)
    e = e.merge(a, left_on="user_id", right_index=True)
    during = e[(e.event_time >= e.assigned_at) & (e.event_time < end)]
    pre = e[(e.event_time >= start - pd.Timedelta(days=pre_days)) & (e.event_time < start)]
    out = pd.DataFrame(index=a.index)
    out["variant"] = a["variant"]
    for tag, frame in (("y", during), ("x", pre)):
        orders = frame[frame.event_type == "order"]
        out[f"orders_{tag}"] = orders.groupby("user_id").size()
        out[f"revenue_{tag}"] = orders.groupby("user_id")["revenue"].sum()
        out[f"sessions_{tag}"] = frame[frame.event_type == "session"].groupby("user_id").size()
    out = out.fillna(0.0)
    return out


def test_sample_stats_match_pandas(small_warehouse, small_truth):
    stats = wb.Experiment.from_source(small_warehouse).sufficient_stats().set_index(
        ["metric", "variant"])
    u = _pandas_units(small_warehouse, small_truth)
    for v, g in u.groupby("variant"):
        conv = (g.orders_y > 0).astype(float)
        s = stats.loc[("conversion", v)]
        assert s["n"] == len(g) and s["sum"] == conv.sum()
        assert s["pre_sum_product"] == (conv * (g.orders_x > 0)).sum()
        s = stats.loc[("revenue_per_user", v)]
        np.testing.assert_allclose(
            s[["sum", "sum_squares", "pre_sum", "pre_sum_product"]].astype(float),
            [g.revenue_y.sum(), (g.revenue_y ** 2).sum(), g.revenue_x.sum(),
             (g.revenue_y * g.revenue_x).sum()], rtol=1e-12)
        s = stats.loc[("sessions_per_user", v)]
        assert s["sum_squares"] == (g.sessions_y ** 2).sum()
        s = stats.loc[("revenue_per_order", v)]
        np.testing.assert_allclose(
            s[["den_sum", "sum_product", "den_pre_sum_product", "pre_den_sum_product"]]
            .astype(float),
            [g.orders_y.sum(), (g.revenue_y * g.orders_y).sum(),
             (g.orders_y * g.revenue_x).sum(), (g.revenue_x * g.orders_x).sum()], rtol=1e-12)


def test_percentile_cap_equals_numpy_quantile(small_warehouse, small_truth):
    exp = wb.Experiment.from_source(small_warehouse)
    caps = exp.compiler.cap_thresholds().set_index(["metric", "column"])["cap"]
    u = _pandas_units(small_warehouse, small_truth)
    # numpy's default quantile is the same linear interpolation as quantile_cont / percentile
    q_y = np.quantile(u.revenue_y.to_numpy(), 0.999)
    q_x = np.quantile(u.revenue_x.to_numpy(), 0.999)
    assert caps[("revenue_per_user_capped", "y")] == pytest.approx(q_y, rel=1e-12)
    assert caps[("revenue_per_user_capped", "x")] == pytest.approx(q_x, rel=1e-12)
    stats = exp.sufficient_stats().set_index(["metric", "variant"])
    for v, g in u.groupby("variant"):
        capped = np.minimum(g.revenue_y, q_y)
        s = stats.loc[("revenue_per_user_capped", v)]
        assert s["sum"] == pytest.approx(capped.sum(), rel=1e-12)
        assert s["pre_sum_product"] == pytest.approx(
            (capped * np.minimum(g.revenue_x, q_x)).sum(), rel=1e-12)


def test_segments_pool_all_but_the_most_frequent_values_like_pandas(small_warehouse, tmp_path):
    """Top values by units (ties by value), the rest and units missing from users pooled: the
    engine's per-value statistics pooled by the compiler equal pandas on the unit table."""
    import shutil

    from workbench.metrics.compiler import _column
    from workbench.readout.experiment import Experiment

    path = tmp_path / "w.duckdb"
    shutil.copy(small_warehouse, path)
    with duckdb.connect(str(path)) as con:  # some units lose their users row: no country
        con.execute("DELETE FROM users WHERE user_id % 50 = 3")
    exp = Experiment.from_source(path)
    c = exp.compiler
    seg = c.segment_stats(["country"], top_n=3)
    units = c.unit_values().execute()
    with duckdb.connect(str(path), read_only=True) as con:
        users = con.execute("SELECT user_id, country FROM users").df()
    j = units.merge(users, on="user_id", how="left")
    counts = j["country"].value_counts()
    ranked = sorted(counts.index, key=lambda v: (-counts[v], v))
    j["segment"] = j["country"].where(j["country"].isin(ranked[:3]), OTHER)
    assert j["country"].isna().any() and len(ranked) > 4  # something to pool
    m = c.metrics[0]
    col = _column(m.name, m.parts[0][0])
    expected = j.groupby(["variant", "segment"])[col].agg(["size", "sum"])
    got = seg[seg.metric == m.name].set_index(["variant", "segment"])
    assert set(got.index) == set(expected.index)
    for key, row in expected.iterrows():
        assert got.loc[key, "n"] == row["size"], key
        assert got.loc[key, "sum"] == pytest.approx(row["sum"], rel=1e-12), key


DAILY_METRICS = [
    {"name": "conv", "kind": "proportion", "event_type": "order", "cuped": True,
     "pre_period_days": 7},
    {"name": "rev", "kind": "mean", "event_type": "order", "aggregation": "sum",
     "column": "revenue", "cap": {"percentile": 0.95}, "log_stats": True, "cuped": True,
     "pre_period_days": 7},
    {"name": "sess3", "kind": "mean", "event_type": "session", "window_days": 3},
    {"name": "aov", "kind": "ratio",
     "numerator": {"event_type": "order", "aggregation": "sum", "column": "revenue"},
     "denominator": {"event_type": "order"}},
]


def test_daily_series_equals_pandas_day_by_day(small_warehouse):
    """Each day's cumulative statistics: the units exposed by its end, their events up to it
    (an attribution window, a binary value, a percentile cap at the final thresholds, a
    capped CUPED covariate, a ratio, the hurdle's logs), computed here from the raw rows."""
    from workbench.readout.experiment import Experiment

    exp = Experiment.from_source(small_warehouse, metrics={"metrics": DAILY_METRICS})
    w = exp.compiler.window
    daily = exp.compiler.daily_stats().set_index(["metric", "date", "variant"])
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        a = con.execute("SELECT user_id, variant, assigned_at FROM assignments WHERE "
                        f"experiment_id = '{w.experiment_id}'").df()
        ev = con.execute("SELECT user_id, event_time, event_type, revenue FROM events").df()
    start, end = pd.Timestamp(w.start_ts), pd.Timestamp(w.end_ts)
    a = a[(a.assigned_at >= start) & (a.assigned_at < end)]
    units = a.groupby("user_id").agg(variant=("variant", "first"), n=("variant", "nunique"),
                                     assigned_at=("assigned_at", "min"))
    units = units[units.n == 1].drop(columns="n")
    e = ev.merge(units, left_on="user_id", right_index=True)
    e["order"] = (e.event_type == "order").astype(float)
    e["rev"] = e.revenue.where((e.event_type == "order") & np.isfinite(e.revenue), 0.0)
    pre = e[(e.event_time >= start - pd.Timedelta(days=7)) & (e.event_time < start)]
    pre = pre.groupby("user_id")[["order", "rev"]].sum().reindex(units.index, fill_value=0)
    during = e[(e.event_time >= e.assigned_at) & (e.event_time < end)].copy()
    during["sess3"] = ((during.event_type == "session")
                       & (during.event_time < during.assigned_at + pd.Timedelta(days=3)))
    during["date"] = during.event_time.dt.date

    def values(upto):
        g = during[during.date <= upto].groupby("user_id")[["order", "rev", "sess3"]].sum()
        return g.reindex(units.index, fill_value=0).astype(float)

    final = values(w.end_date)
    cap_y, cap_x = np.quantile(final.rev, 0.95), np.quantile(pre.rev, 0.95)
    x_rev = np.minimum(pre.rev, cap_x)
    days = sorted(daily.index.get_level_values("date").unique())
    assert days[0] == w.start_date and days[-1] == w.end_date
    for day in (days[0], days[len(days) // 2], days[-1]):
        v = values(day)
        exposed = units.assigned_at.dt.date <= day
        y_rev = np.minimum(v.rev, cap_y)
        conv = (v.order > 0).astype(float)
        for variant in w.variants:
            m = exposed & (units.variant == variant)
            got = {name: daily.loc[(name, day, variant)] for name in ("conv", "rev", "sess3",
                                                                       "aov")}
            assert got["conv"]["n"] == m.sum()
            expect = {
                ("conv", "sum"): conv[m].sum(),
                ("conv", "pre_sum_product"): (conv * (pre.order > 0))[m].sum(),
                ("rev", "sum"): y_rev[m].sum(),
                ("rev", "sum_squares"): (y_rev ** 2)[m].sum(),
                ("rev", "pre_sum"): x_rev[m].sum(),
                ("rev", "pre_sum_product"): (y_rev * x_rev)[m].sum(),
                ("rev", "positive_n"): (y_rev > 0)[m].sum(),
                ("rev", "log_sum_squares"): (np.log(y_rev.where(y_rev > 0, 1.0)) ** 2)[m].sum(),
                ("sess3", "sum_squares"): (v.sess3 ** 2)[m].sum(),
                ("aov", "sum_product"): (v.rev * v.order)[m].sum(),
                ("aov", "den_sum_squares"): (v.order ** 2)[m].sum(),
            }
            for (name, stat), want in expect.items():
                assert got[name][stat] == pytest.approx(want, rel=1e-9, abs=1e-9), \
                    (day, variant, name, stat)


def test_other_caps_reuse_the_unit_table_and_equal_a_new_compiler(small_warehouse):
    """with_metrics(): the same metrics with other caps (robustness' alternatives) or fewer of
    them read the unit table already made; their statistics equal a compiler made anew."""
    from dataclasses import replace

    from workbench.readout.experiment import Experiment

    exp = Experiment.from_source(small_warehouse)
    c = exp.compiler
    c.sufficient_stats()
    assert c._values is not None
    capped = [replace(m, cap_value=None, cap_percentile=0.99) if m.kind == "mean" else m
              for m in c.metrics]
    other = c.with_metrics(capped)
    assert other._values is c._values and other._caps is None
    fresh = replace(Experiment.from_source(small_warehouse).compiler, metrics=capped)
    assert fresh._values is None
    pd.testing.assert_frame_equal(other.sufficient_stats(), fresh.sufficient_stats(),
                                  check_exact=False, rtol=1e-12)
    assert c.with_metrics(c.metrics[:2])._values is c._values
    new = [replace(c.metrics[0], name="other_name")]
    assert c.with_metrics(new)._values is None  # another metric: a unit table of its own
