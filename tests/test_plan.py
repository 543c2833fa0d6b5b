"""Planning on historical data (workbench/plan.py, stats/power.py `design`): sizes against
statsmodels' power classes, measured moments against pandas on the raw rows, the planned n
against a seeded simulation, the per-unit path, and bad input naming its parameter."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import NormalIndPower, TTestIndPower, tt_ind_solve_power

import workbench as wb
from workbench.errors import ParameterError
from workbench.stats import sequential
from workbench.stats.power import design, power_curve

START, END = "2026-09-28", "2026-10-04"  # the sample's pre-period (the experiment starts 10-05)
METRICS = [
    {"name": "conversion", "kind": "proportion", "event_type": "order", "aggregation": "any",
     "cuped": True, "pre_period_days": 14},
    {"name": "revenue_per_user", "kind": "mean", "event_type": "order", "aggregation": "sum",
     "column": "revenue"},  # no declared covariate: the 7 days before the window
    {"name": "revenue_per_order", "kind": "ratio", "cuped": True, "pre_period_days": 14,
     "numerator": {"event_type": "order", "aggregation": "sum", "column": "revenue"},
     "denominator": {"event_type": "order", "aggregation": "count"}},
]


# -- sizes against statsmodels ----------------------------------------------------------------
@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.3, 0.7), (1 / 3, 1 / 3)])
@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
def test_design_matches_normal_ind_power(shares, alternative):
    var, base, mde = np.array([0.21, 6400.0]), np.array([0.3, 24.0]), np.array([0.05, 0.1])
    d = design(var, base, mde, shares, units_per_day=1000.0, days=14, alpha=0.05, power=0.8,
               alternative=alternative)
    ratio = shares[1] / shares[0]
    for i in range(2):
        es = mde[i] * base[i] / np.sqrt(var[i])
        nobs1 = NormalIndPower().solve_power(es, nobs1=None, alpha=0.05, power=0.8,
                                             ratio=ratio, alternative=alternative)
        assert d["n_fixed"][i] * shares[0] == pytest.approx(nobs1, rel=1e-6)
        assert d["days_fixed"][i] == np.ceil(d["n_fixed"][i] / 1000.0)
        # MDE after 14 days: statsmodels gives it exactly the planned power at that sample
        es14 = d["mde_fixed"][i] * base[i] / np.sqrt(var[i])
        assert NormalIndPower().power(es14, nobs1=14000 * shares[0], alpha=0.05, ratio=ratio,
                                      alternative=alternative) == pytest.approx(0.8, abs=1e-9)


def test_design_close_to_t_test_power():
    d = design(4.0, 2.0, 0.05, (0.5, 0.5), 1000.0, 14)
    n_t = TTestIndPower().solve_power(0.05 * 2 / 2.0, alpha=0.05, power=0.8, ratio=1.0)
    assert d["n_fixed"][0] / 2 == pytest.approx(n_t, rel=1e-3)
    assert tt_ind_solve_power(0.05, alpha=0.05, power=0.8) == pytest.approx(n_t, rel=1e-9)


def test_sequential_size_gives_power_by_simulation():
    """At the planned sequential N the readout's confidence sequence (stats/sequential.py)
    excludes 0 in ~80 % of seeded normal draws of the estimate."""
    d = design(4.0, 2.0, 0.05, (0.5, 0.5), 500.0, 28)
    n, se1 = float(d["n_sequential"][0]), float(d["se1"][0])
    assert n > d["n_fixed"][0]  # always-valid inference costs units
    se = se1 / np.sqrt(n)
    est = np.random.default_rng(3).normal(0.05, se, 20000)
    rho2 = sequential.rho_squared(0.05, sequential.DEFAULT_TUNING)
    rejected = np.abs(est) > sequential.halfwidth(se, n, 0.05, rho2)
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)
    assert power_curve(se1, 0.05, n, method="sequential") == pytest.approx(0.8, abs=1e-6)
    # and the sequential MDE at 28 days is the effect with 80 % power there
    n28 = 500.0 * 28
    assert power_curve(se1, d["mde_sequential"][0], n28, method="sequential") == \
        pytest.approx(0.8, abs=1e-6)


# -- moments measured in the engine vs pandas on the raw rows ---------------------------------
def _pandas_moments(path):
    con = duckdb.connect(str(path), read_only=True)
    ev = con.execute("select * from events").df()
    con.close()
    s, e = pd.Timestamp(START), pd.Timestamp(END) + pd.Timedelta(days=1)
    inw = ev[(ev.event_time >= s) & (ev.event_time < e)]
    first = inw.groupby("user_id").event_time.min().rename("t0")
    ev = ev.merge(first, left_on="user_id", right_index=True)
    order = ev.event_type == "order"
    during = (ev.event_time >= ev.t0) & (ev.event_time < e)
    pre14 = (ev.event_time >= s - pd.Timedelta(days=14)) & (ev.event_time < s)
    pre7 = (ev.event_time >= s - pd.Timedelta(days=7)) & (ev.event_time < s)
    rev = ev.revenue.fillna(0.0)
    g = lambda mask, v=None: (mask if v is None else v * mask).groupby(ev.user_id).sum()  # noqa: E731
    u = pd.DataFrame({"y_orders": g(during & order), "y_rev": g(during & order, rev),
                      "x_orders": g(pre14 & order), "x_rev": g(pre14 & order, rev),
                      "x7_rev": g(pre7 & order, rev)}).reindex(first.index).fillna(0.0)
    conv, xconv = (u.y_orders > 0).astype(float), (u.x_orders > 0).astype(float)
    r, rx = u.y_rev.sum() / u.y_orders.sum(), u.x_rev.sum() / u.x_orders.sum()
    z = (u.y_rev - r * u.y_orders) / u.y_orders.mean()
    zx = u.x_rev - rx * u.x_orders
    return {"n": len(u), "conversion": (conv.mean(), conv.mean() * (1 - conv.mean()),
                                        np.corrcoef(conv, xconv)[0, 1]),
            "revenue_per_user": (u.y_rev.mean(), u.y_rev.var(ddof=1),
                                 np.corrcoef(u.y_rev, u.x7_rev)[0, 1]),
            "revenue_per_order": (r, z.var(ddof=1), np.corrcoef(z, zx)[0, 1])}


@pytest.fixture(scope="module")
def sample_plan(small_warehouse):
    return wb.plan(small_warehouse, METRICS, start_date=START, end_date=END, mde=0.05,
                   experiment_id="checkout_redesign")


def test_measured_moments_match_pandas(sample_plan, small_warehouse):
    want = _pandas_moments(small_warehouse)
    m = sample_plan.moments.set_index("metric")
    assert (m["n_units"] == want["n"]).all()
    assert m["units_per_day"].iloc[0] == pytest.approx(want["n"] / 7)
    for name in ("conversion", "revenue_per_user", "revenue_per_order"):
        mean, var, rho = want[name]
        assert m.loc[name, "baseline"] == pytest.approx(mean, rel=1e-9), name
        assert m.loc[name, "variance"] == pytest.approx(var, rel=1e-6), name
        assert m.loc[name, "rho"] == pytest.approx(rho, rel=1e-3, abs=1e-6), name
        assert m.loc[name, "variance_cuped"] == pytest.approx(var * (1 - rho**2), rel=1e-3)
    assert (m["error_message"] == "").all()


def test_plan_table_uses_measured_moments(sample_plan):
    t = sample_plan.to_frame()
    assert list(t.columns[:3]) == ["metric", "kind", "cuped"]
    assert len(t) == 2 * len(METRICS)
    for _, r in t.iterrows():
        var = r["variance"]
        es = 0.05 * r["baseline"] / np.sqrt(var)
        nobs1 = NormalIndPower().solve_power(es, alpha=0.05, power=0.8, ratio=1.0)
        assert r["n_fixed"] == pytest.approx(2 * nobs1, rel=1e-6)
    a = t.set_index(["metric", "cuped"])
    for name in ("conversion", "revenue_per_user"):  # CUPED shrinks the plan by 1 - rho^2
        rho = sample_plan.moments.set_index("metric").loc[name, "rho"]
        assert a.loc[(name, True), "n_fixed"] / a.loc[(name, False), "n_fixed"] == \
            pytest.approx(1 - rho**2, rel=1e-9)
    assert sample_plan.planned_mde() == {m["name"]: 0.05 for m in METRICS}
    text = str(sample_plan.summary())
    assert "conversion" in text and "checkout_redesign" in text
    assert "<table" in sample_plan._repr_html_()


def test_figure_power_curve(sample_plan):
    from workbench.plots.plan import power_curve_frame

    fig = sample_plan.figure(days=30)
    assert len(fig.axes[0].lines) == 2 * len(METRICS) + 1  # + the target line
    curve = power_curve_frame(sample_plan, days=30)
    t = sample_plan.table.set_index(["metric", "cuped"])
    for (m, cup), g in curve.groupby(["metric", "cuped"]):
        assert g["power"].is_monotonic_increasing
        day = int(t.loc[(m, cup), "days_fixed"])
        if day <= 30:  # the plan's duration is the first day at >= 80 %
            assert g.set_index("day").loc[day, "power"] >= 0.8
            if day > 1:
                assert g.set_index("day").loc[day - 1, "power"] < 0.8


# -- simulation: the planned n gives the planned power ----------------------------------------
def _units_population(path):
    """Per-unit sessions in the window and the 7 days before it (pandas on the raw rows)."""
    con = duckdb.connect(str(path), read_only=True)
    ev = con.execute("select user_id, event_time, event_type from events "
                     "where event_type = 'session'").df()
    con.close()
    s = pd.Timestamp(START)
    y = ev[(ev.event_time >= s) & (ev.event_time < s + pd.Timedelta(days=7))]
    x = ev[(ev.event_time >= s - pd.Timedelta(days=7)) & (ev.event_time < s)]
    out = pd.DataFrame({"sessions": y.groupby("user_id").size()})
    out["pre_sessions"] = x.groupby("user_id").size().reindex(out.index).fillna(0.0)
    out["day"] = pd.Timestamp(START)
    return out.reset_index()


@pytest.mark.slow
def test_planned_n_gives_planned_power_by_simulation(small_warehouse):
    """Seeded: experiments of the planned size drawn from the historical units, with the MDE
    added to the treatment, reject in ~80 % of replicates; with CUPED at the smaller CUPED n
    (the measured rho) too."""
    pop = _units_population(small_warehouse)
    p = wb.plan(pop, {"sessions": wb.mean("sessions", cuped="pre_sessions")}, mde=0.05,
                users_per_day=1000.0)
    t = p.table.set_index("cuped")
    rng = np.random.default_rng(11)
    y_all, x_all = pop["sessions"].to_numpy(float), pop["pre_sessions"].to_numpy(float)
    delta = 0.05 * y_all.mean()
    z = 1.959963984540054
    for use in (False, True):
        n = int(round(t.loc[use, "n_fixed"]))
        half = n // 2
        reps, hits = 1000, 0
        for _ in range(reps):
            idx = rng.integers(0, len(y_all), n)
            y, x = y_all[idx].copy(), x_all[idx]
            y[half:] += delta
            if use:  # CUPED with the pooled slope, as the readout
                theta = np.cov(y[:half], x[:half])[0, 1] + np.cov(y[half:], x[half:])[0, 1]
                theta /= x[:half].var(ddof=1) + x[half:].var(ddof=1)
                y = y - theta * (x - x.mean())
            a, b = y[:half], y[half:]
            se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
            hits += abs(b.mean() - a.mean()) / se > z
        assert hits / reps == pytest.approx(0.8, abs=0.04), use
    assert t.loc[True, "n_fixed"] < 0.8 * t.loc[False, "n_fixed"]  # the gain is measured


# -- per-unit path ----------------------------------------------------------------------------
def test_per_unit_path_matches_pandas(small_units):
    df = small_units.drop(columns=["variant"])
    metrics = {"revenue": wb.mean("revenue", cuped="pre_revenue"),
               "converted": wb.proportion("orders", cuped="pre_orders"),
               "aov": wb.ratio("revenue", "orders", cuped=("pre_revenue", "pre_orders"))}
    p = wb.plan(df, metrics, date="day", mde={"revenue": 0.1, "converted": 0.05, "aov": 0.1})
    m = p.moments.set_index("metric")
    days = (df.day.max() - df.day.min()).days + 1
    assert m.loc["revenue", "units_per_day"] == pytest.approx(len(df) / days)
    assert m.loc["revenue", "baseline"] == pytest.approx(df.revenue.mean(), rel=1e-9)
    assert m.loc["revenue", "variance"] == pytest.approx(df.revenue.var(), rel=1e-9)
    assert m.loc["revenue", "rho"] == pytest.approx(
        np.corrcoef(df.revenue, df.pre_revenue)[0, 1], rel=1e-6)
    c = (df.orders > 0).astype(float)
    assert m.loc["converted", "rho"] == pytest.approx(
        np.corrcoef(c, (df.pre_orders > 0).astype(float))[0, 1], rel=1e-3)
    assert p.planned_mde() == {"revenue": 0.1, "converted": 0.05, "aov": 0.1}
    # a window on the date column keeps only those units
    day0 = df.day.min()
    q = wb.plan(df, metrics, date="day", start_date=day0, end_date=day0, mde=0.1)
    assert q.moments["n_units"].iloc[0] == int((df.day == day0).sum())


def test_degenerate_metric_gives_message_not_crash():
    df = pd.DataFrame({"y": [1.0] * 50, "z": np.arange(50.0)})
    p = wb.plan(df, {"flat": wb.mean("y"), "ok": wb.mean("z")}, users_per_day=10.0, mde=0.1)
    t = p.table.set_index("metric")
    assert "no variance" in t.loc["flat", "error_message"].iloc[0]
    assert t.loc["flat", "n_fixed"].isna().all()
    assert np.isfinite(t.loc["ok", "n_fixed"]).all()


# -- bad input names the parameter ------------------------------------------------------------
@pytest.mark.parametrize("kwargs, name", [
    ({"weights": [1.0]}, "weights"), ({"weights": [0.5, 0.0]}, "weights"),
    ({"mde": 0.0}, "mde"), ({"mde": {"nope": 0.1}}, "mde"), ({"mde": "big"}, "mde"),
    ({"alpha": 1.5}, "alpha"), ({"power": 0.0}, "power"), ({"traffic": 0}, "traffic"),
    ({"users_per_day": -3}, "users_per_day"), ({"start_date": "soon"}, "start_date"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    df = pd.DataFrame({"z": np.arange(50.0)})
    base = {"users_per_day": 10.0, "mde": 0.1} | kwargs
    with pytest.raises(ParameterError, match=name):
        wb.plan(df, {"z": wb.mean("z")}, **base)


def test_event_log_needs_the_window(small_warehouse):
    with pytest.raises(ParameterError, match="start_date"):
        wb.plan(small_warehouse, METRICS, mde=0.05)


# -- Spark equals DuckDB ----------------------------------------------------------------------
@pytest.mark.spark
def test_spark_measures_the_same_moments(spark, small_warehouse, sample_plan, tmp_path):
    src = duckdb.connect(str(small_warehouse), read_only=True)
    src.execute(f"COPY events TO '{tmp_path / 'events.parquet'}' (FORMAT parquet)")
    src.close()
    spark.read.parquet(str(tmp_path / "events.parquet")).createOrReplaceTempView("events")
    on_spark = wb.plan(spark, METRICS, start_date=START, end_date=END, mde=0.05,
                       experiment_id="checkout_redesign")
    a = sample_plan.moments.set_index("metric")
    b = on_spark.moments.set_index("metric").loc[a.index]
    assert (a["n_units"] == b["n_units"]).all()
    for c in ("units_per_day", "baseline", "variance", "rho", "variance_cuped"):
        np.testing.assert_allclose(b[c].to_numpy(float), a[c].to_numpy(float), rtol=1e-9,
                                   err_msg=c)
    np.testing.assert_allclose(on_spark.table["n_fixed"], sample_plan.table["n_fixed"],
                               rtol=1e-9)


def test_readout_links_to_the_plan(small_warehouse, sample_plan):
    """`analyze(plan=)` takes the plan's MDEs: the same power table as `planned_mde=`."""
    exp = wb.Experiment.from_source(small_warehouse)
    linked = exp.analyze(plan=sample_plan, timeseries=False).power
    given = exp.analyze(planned_mde={"conversion": 0.05, "revenue_per_user": 0.05,
                                     "revenue_per_order": 0.05}, timeseries=False).power
    planned = ["planned_n", "planned_days"]  # a Plan object: its sizes (no run to link)
    pd.testing.assert_frame_equal(linked.drop(columns=planned), given.drop(columns=planned))
    assert linked["planned_days"].notna().all() and given["planned_days"].isna().all()
    assert set(linked["metric"]) == {"conversion", "revenue_per_user", "revenue_per_order"}
    with pytest.raises(ParameterError, match="plan"):
        exp.analyze(plan=3.5, timeseries=False)
