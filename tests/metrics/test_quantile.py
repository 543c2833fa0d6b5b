"""Quantile metrics in the engine: the order statistics DuckDB computes through Ibis equal
numpy's on the same unit values (per-unit tables, event logs, event-level quantiles with the
clustered CDF standard error), read by hand-written SQL; the YAML declarations; end to end."""
from __future__ import annotations

import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.errors import MetricDefinitionError
from workbench.metrics import load_metrics
from workbench.stats import quantile as sq

COLS = ["quantile", "quantile_lower", "quantile_upper"]


def _check(row, expected):
    assert row["n"] == expected["n"]
    assert row["quantile_level"] == expected["quantile_level"]
    np.testing.assert_allclose(row[COLS].to_numpy(float),
                               [expected[c] for c in COLS], rtol=1e-9)


def test_per_unit_table_quantiles_equal_numpy():
    rng = np.random.default_rng(1)
    n = 6000
    df = pd.DataFrame({"variant": rng.choice(["control", "treatment"], n),
                       "latency": rng.lognormal(3, 1, n), "orders": rng.poisson(1, n)})
    exp = wb.Experiment.from_units(df, "variant", {
        "p90_latency": wb.quantile("latency", 0.9),
        "median_latency": {"kind": "quantile", "column": "latency", "quantile": 0.5},
        "orders": wb.mean("orders")})
    st = exp.sufficient_stats().set_index(["metric", "variant"])
    for metric, q in (("p90_latency", 0.9), ("median_latency", 0.5)):
        for v, grp in df.groupby("variant"):
            _check(st.loc[(metric, v)], sq.unit_stats(grp["latency"].to_numpy(), q))
    assert np.isnan(st.loc[("orders", "control"), "quantile"])
    res = exp.analyze(difference="absolute", timeseries=False).results.set_index("metric")
    assert (res["error_message"] == "").all()
    assert res.loc["p90_latency", "kind"] == "quantile"


def _events_sql(path):
    con = duckdb.connect(str(path), read_only=True)
    start, end = con.execute("SELECT min(start_date), max(end_date) FROM experiments").fetchone()
    units = con.execute("""
        SELECT user_id, arg_min(variant, assigned_at) AS variant, min(assigned_at) AS assigned_at
        FROM assignments WHERE experiment_id = 'checkout_redesign'
        GROUP BY user_id HAVING min(variant) = max(variant)""").df()
    con.register("u", units)
    end_ts = f"{end + pd.Timedelta(days=1)} 00:00:00"
    events = con.execute(f"""
        SELECT e.user_id, u.variant, e.revenue FROM events e JOIN u USING (user_id)
        WHERE e.event_type = 'order' AND e.event_time >= u.assigned_at
          AND e.event_time < TIMESTAMP '{end_ts}' AND e.revenue IS NOT NULL
          AND NOT isnan(e.revenue)""").df()
    con.close()
    return units, events


def test_event_log_quantiles_equal_numpy(small_warehouse):
    metrics = [
        {"name": "rev_p90", "kind": "quantile", "quantile": 0.9, "event_type": "order",
         "aggregation": "sum", "column": "revenue"},
        {"name": "order_value_p90", "kind": "quantile", "quantile": 0.9, "level": "event",
         "event_type": "order", "column": "revenue"},
        {"name": "order_value_median", "kind": "quantile", "quantile": 0.5, "level": "event",
         "event_type": "order", "column": "revenue"},
    ]
    exp = wb.Experiment.from_source(small_warehouse, metrics={"defaults": {"cuped": True},
                                                              "metrics": metrics})
    st = exp.sufficient_stats().set_index(["metric", "variant"])
    units, events = _events_sql(small_warehouse)
    per_user = events.groupby("user_id")["revenue"].sum()
    units["rev"] = units["user_id"].map(per_user).fillna(0.0)
    for v, grp in units.groupby("variant"):
        _check(st.loc[("rev_p90", v)], sq.unit_stats(grp["rev"].to_numpy(), 0.9))
        ev = events[events["variant"] == v]
        for metric, q in (("order_value_p90", 0.9), ("order_value_median", 0.5)):
            expected = sq.cluster_stats(ev["revenue"].to_numpy(), ev["user_id"].to_numpy(), q,
                                        n_units=len(grp))
            _check(st.loc[(metric, v)], expected)
    # the clustered interval is wider than one treating orders as independent
    ev = events[events["variant"] == "control"]
    naive = sq.unit_stats(ev["revenue"].to_numpy(), 0.9)
    row = st.loc[("order_value_p90", "control")]
    assert row["quantile_upper"] - row["quantile_lower"] >= \
        naive["quantile_upper"] - naive["quantile_lower"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = exp.analyze(segments=["device"])
    assert (res.results["error_message"] == "").all()
    assert res.segments.empty and res.timeseries.empty  # quantiles do not add up: left out


def test_yaml_declarations():
    m = load_metrics([{"name": "p90", "kind": "quantile", "quantile": 0.9, "level": "event",
                       "event_type": "page_load", "column": "latency"}])[0]
    assert (m.kind, m.quantile, m.level, m.parts) == ("quantile", 0.9, "event", ())
    m = load_metrics({"defaults": {"cuped": True}, "metrics": [
        {"name": "ttfo_median", "kind": "quantile", "quantile": 0.5, "event_type": "order",
         "aggregation": "sum", "column": "revenue"}]})[0]
    assert m.level == "unit" and not m.cuped  # the defaults' CUPED is not for quantiles
    assert wb.quantile("latency", 0.9).name == "latency_p90"
    bad = [
        ({"kind": "quantile", "event_type": "order"}, "quantile"),
        ({"kind": "quantile", "quantile": 1.0, "column": "x"}, "quantile"),
        ({"kind": "quantile", "quantile": 0.5, "level": "session", "column": "x",
          "event_type": "e"}, "level"),
        ({"kind": "quantile", "quantile": 0.5, "level": "event", "column": "x",
          "aggregation": "sum"}, "aggregation"),
        ({"kind": "quantile", "quantile": 0.5, "event_type": "o", "cuped": True}, "cuped"),
        ({"kind": "quantile", "quantile": 0.5, "event_type": "o", "cap": {"value": 3}}, "cap"),
        ({"kind": "mean", "quantile": 0.5, "event_type": "o"}, "quantile"),
        ({"kind": "quantile", "quantile": 0.5, "column": "x", "pre_column": "y"}, "pre_column"),
    ]
    for spec, fld in bad:
        with pytest.raises(MetricDefinitionError, match=f"field '{fld}'"):
            load_metrics([{"name": "m", **spec}])
