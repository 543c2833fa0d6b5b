"""Covariates through the metrics YAML, computed in the engine (DuckDB): the statistics equal
numpy's on the same unit rows, and the readout's effect equals statsmodels OLS."""
from __future__ import annotations

import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import workbench as wb
from workbench.errors import MetricDefinitionError, SchemaError
from workbench.metrics.definition import load_metrics


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def units():
    rng = np.random.default_rng(7)
    n = 1200
    v = np.where(rng.random(n) < 0.5, "control", "treatment")
    device = rng.choice(["ios", "android", "web"], n, p=[0.5, 0.3, 0.2])
    pre_rev = rng.gamma(2, 5, n)
    pre_ses = rng.poisson(4, n).astype(float)
    orders = rng.poisson(2, n) + 1.0
    rev = 3 + 0.6 * pre_rev + 0.5 * pre_ses + 2 * (device == "ios") + (v == "treatment") \
        + rng.normal(0, 3, n)
    return pd.DataFrame({"user_id": np.arange(n), "variant": v, "device": device,
                         "pre_revenue": pre_rev, "pre_sessions": pre_ses, "orders": orders,
                         "revenue": rev * orders / 3})


def numpy_stats(df, y, xs, d=None):
    """The schema's covariate sums per variant with numpy."""
    out = {}
    for v, g in df.groupby("variant"):
        x = g[xs].to_numpy(float)
        yy = g[y].to_numpy(float)
        r = {"n": len(g)}
        for j in range(len(xs)):
            r[f"cov_sum__{j}"] = x[:, j].sum()
            r[f"cov_y__{j}"] = (yy * x[:, j]).sum()
            for k in range(j, len(xs)):
                r[f"cov_prod__{j}__{k}"] = (x[:, j] * x[:, k]).sum()
            if d is not None:
                r[f"cov_d__{j}"] = (g[d].to_numpy(float) * x[:, j]).sum()
        out[v] = r
    return out


def _check_stats(stats, metric, expected, names):
    rows = stats[stats["metric"] == metric].set_index("variant")
    for v, exp in expected.items():
        assert rows.loc[v, "covariates"] == ",".join(names)
        for c, val in exp.items():
            assert rows.loc[v, c] == pytest.approx(val, rel=1e-12), (v, c)


def test_per_unit_table_stats_and_ols(units):
    df = units.assign(dev_android=(units["device"] == "android") * 1.0,
                      dev_web=(units["device"] == "web") * 1.0)
    metrics = {"revenue": {"kind": "mean", "column": "revenue",
                           "covariates": ["pre_revenue", "pre_sessions", "device"]},
               "aov": {"kind": "ratio", "numerator": "revenue", "denominator": "orders",
                       "covariates": ["pre_revenue", "device"]},
               "plain": {"kind": "mean", "column": "revenue"}}
    exp = wb.Experiment.from_units(units, "variant", metrics, unit="user_id")
    stats = exp.sufficient_stats()
    # ios is the most frequent level: the reference, no column
    cols = ["pre_revenue", "pre_sessions", "dev_android", "dev_web"]
    _check_stats(stats, "revenue", numpy_stats(df, "revenue", cols),
                 ["pre_revenue", "pre_sessions", "device=android", "device=web"])
    _check_stats(stats, "aov", numpy_stats(df, "revenue", ["pre_revenue", "dev_android",
                                                           "dev_web"], d="orders"),
                 ["pre_revenue", "device=android", "device=web"])
    assert stats.loc[stats["metric"] == "plain", "cov_sum__0"].isna().all()
    res = quiet(exp.analyze, difference="absolute", timeseries=False).results.set_index("metric")
    fit = smf.ols("revenue ~ C(variant) + pre_revenue + pre_sessions + C(device)", units).fit()
    assert res.loc["revenue", "effect"] == pytest.approx(
        fit.params["C(variant)[T.treatment]"], abs=1e-8)
    assert res.loc["revenue", "cuped"] and 0 < res.loc["revenue", "variance_reduction"] < 1
    assert not res.loc["plain", "cuped"]
    # ratio: OLS of the linearised z (each arm's R and mean denominator) on the covariates
    g = units.groupby("variant")
    r = g["revenue"].sum() / g["orders"].sum()
    z = (units["revenue"] - units["variant"].map(r) * units["orders"]) \
        / units["variant"].map(g["orders"].mean())
    fz = smf.ols("z ~ C(variant) + pre_revenue + C(device)", units.assign(z=z)).fit()
    assert res.loc["aov", "effect"] == pytest.approx(
        r["treatment"] - r["control"] + fz.params["C(variant)[T.treatment]"], abs=1e-8)


def _warehouse(path, units):
    """An event log whose per-user pre-period counts/sums are the unit table's."""
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-03-10")
    ev = []
    for u in units.itertuples():
        at = start + pd.Timedelta(hours=u.user_id % 24)
        for k in range(int(u.pre_sessions)):
            ev.append((u.user_id, start - pd.Timedelta(days=1 + k % 10), "session", None))
        ev.append((u.user_id, start - pd.Timedelta(days=2), "order", float(round(u.pre_revenue, 2))))
        for k in range(1 + u.user_id % 3):
            ev.append((u.user_id, at + pd.Timedelta(hours=1 + k), "session", None))
        ev.append((u.user_id, at + pd.Timedelta(hours=2), "order", float(round(u.revenue, 2))))
    events = pd.DataFrame(ev, columns=["user_id", "event_time", "event_type", "revenue"])
    events["items"] = 1
    assign = pd.DataFrame({"experiment_id": "x", "user_id": units["user_id"],
                           "variant": units["variant"],
                           "assigned_at": start + pd.to_timedelta(units["user_id"] % 24, "h")})
    users = units[["user_id", "device"]]
    con = duckdb.connect(str(path))
    for name, frame in (("events", events), ("assignments", assign), ("users", users)):
        con.register("f", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM f")
        con.unregister("f")
    con.close()
    return rng


def test_event_log_covariates_and_attributes(tmp_path, units):
    units = units.head(400).copy()
    path = tmp_path / "w.duckdb"
    _warehouse(path, units)
    metrics = {"metrics": [
        {"name": "revenue", "kind": "mean", "event_type": "order", "aggregation": "sum",
         "column": "revenue", "covariates": ["revenue", "sessions"], "attributes": ["device"]},
        {"name": "sessions", "kind": "mean", "event_type": "session"},
        {"name": "rps", "kind": "ratio", "numerator": {"event_type": "order",
         "aggregation": "sum", "column": "revenue"}, "denominator": {"event_type": "session"},
         "covariates": ["rps"]}]}
    exp = wb.Experiment.from_source(path, "x", metrics, start_date="2026-03-10",
                                    end_date="2026-03-12")
    stats = exp.sufficient_stats()
    u = units.assign(rev=units["revenue"].round(2), pre_rev=units["pre_revenue"].round(2),
                     ses=1 + units["user_id"] % 3,
                     dev_android=(units["device"] == "android") * 1.0,
                     dev_web=(units["device"] == "web") * 1.0)
    _check_stats(stats, "revenue",
                 numpy_stats(u, "rev", ["pre_rev", "pre_sessions", "dev_android", "dev_web"]),
                 ["revenue", "sessions", "device=android", "device=web"])
    _check_stats(stats, "rps", numpy_stats(u, "rev", ["pre_rev", "pre_sessions"], d="ses"),
                 ["rps_numerator", "rps_denominator"])
    res = quiet(exp.analyze, difference="absolute", timeseries=False).results.set_index("metric")
    fit = smf.ols("rev ~ C(variant) + pre_rev + pre_sessions + C(device)", u).fit()
    assert res.loc["revenue", "effect"] == pytest.approx(
        fit.params["C(variant)[T.treatment]"], abs=1e-8)
    assert res.loc["revenue", "covariates"] == "revenue, sessions, device=android, device=web"


def test_bad_covariates_raise(units):
    with pytest.raises(MetricDefinitionError, match="nope"):
        load_metrics([{"name": "a", "kind": "mean", "event_type": "order",
                       "covariates": ["nope"]}])
    with pytest.raises(MetricDefinitionError, match="covariates"):
        load_metrics([{"name": "a", "kind": "mean", "event_type": "order", "covariates": 3}])
    exp = wb.Experiment.from_units(units, "variant", {
        "r": {"kind": "mean", "column": "revenue", "covariates": ["missing_col"]}})
    with pytest.raises(SchemaError, match="missing_col"):
        exp.sufficient_stats()
