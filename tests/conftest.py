"""Shared fixtures: small generated warehouses with known truth (session-scoped, cheap)."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from workbench.data.sample import generate  # noqa: E402

SMALL_USERS = 20_000
SMALL_SEED = 7


@pytest.fixture(scope="session")
def _small(tmp_path_factory):
    path = tmp_path_factory.mktemp("warehouse") / "small.duckdb"
    truth = generate(path, seed=SMALL_SEED, n_users=SMALL_USERS, progress=False)
    return path, truth


@pytest.fixture(scope="session")
def small_warehouse(_small):
    """Path to a clean DuckDB sample (20,000 users, seed 7). Open it read-only."""
    return _small[0]


@pytest.fixture(scope="session")
def small_truth(_small):
    """The :class:`~workbench.data.sample.SampleTruth` of ``small_warehouse``."""
    return _small[1]


@pytest.fixture(scope="session")
def _faulty(tmp_path_factory):
    path = tmp_path_factory.mktemp("warehouse_faulty") / "faulty.duckdb"
    truth = generate(path, seed=SMALL_SEED, n_users=SMALL_USERS, srm=True, crossover=0.02,
                     missing=0.01, progress=False)
    return path, truth


@pytest.fixture(scope="session")
def faulty_warehouse(_faulty):
    """Path to a faulty sample: SRM (10 % of treatment_b lost), 2 % crossover, 1 % NaN revenue."""
    return _faulty[0]


@pytest.fixture(scope="session")
def faulty_truth(_faulty):
    """The :class:`~workbench.data.sample.SampleTruth` of ``faulty_warehouse`` (``.faults``)."""
    return _faulty[1]


def _per_unit_sample(path):
    """The sample experiment as a per-unit table, computed with pandas from the raw rows
    (independent of the metrics compiler): one row per assigned user (crossovers dropped), the
    outcomes over ``[assigned_at, end_date + 1 day)``, pre-period values over the 14 days before
    the start, the ``users`` attributes."""
    import duckdb
    import numpy as np
    import pandas as pd

    con = duckdb.connect(str(path), read_only=True)
    plan = con.execute("select * from experiments where experiment_id = 'checkout_redesign'").df()
    a = con.execute("select * from assignments where experiment_id = 'checkout_redesign'").df()
    ev = con.execute("select * from events").df()
    users = con.execute("select * from users").df()
    con.close()
    start = pd.Timestamp(plan.start_date.min())
    end = pd.Timestamp(plan.end_date.max()) + pd.Timedelta(days=1)
    per = a.sort_values("assigned_at").groupby("user_id").agg(
        variant=("variant", "first"), n_var=("variant", "nunique"), assigned_at=("assigned_at", "min"))
    per = per[per.n_var == 1].drop(columns="n_var").reset_index()
    ev = ev.merge(per[["user_id", "assigned_at"]], on="user_id")
    during = (ev.event_time >= ev.assigned_at) & (ev.event_time < end)
    pre = (ev.event_time >= start - pd.Timedelta(days=14)) & (ev.event_time < start)
    rev = ev.revenue.where(np.isfinite(ev.revenue), 0.0).fillna(0.0)
    cols = {}
    for prefix, when in (("", during), ("pre_", pre)):
        order = when & (ev.event_type == "order")
        cols[f"{prefix}orders"] = order.groupby(ev.user_id).sum()
        cols[f"{prefix}revenue"] = (rev * order).groupby(ev.user_id).sum()
        cols[f"{prefix}sessions"] = (when & (ev.event_type == "session")).groupby(ev.user_id).sum()
    values = pd.DataFrame(cols).reindex(per.user_id).fillna(0.0).reset_index(drop=True)
    out = pd.concat([per, values], axis=1).merge(users, on="user_id", how="left")
    out["day"] = out.assigned_at.dt.normalize()
    return out


@pytest.fixture(scope="session")
def small_units(small_warehouse):
    """``small_warehouse``'s experiment as a per-unit pandas frame (see ``_per_unit_sample``)."""
    return _per_unit_sample(small_warehouse)


def _other_per_unit(frames):
    """The second experiment (``generate_other``) per unit, computed with pandas from the raw
    rows: timestamps converted to UTC, the window the span of the exposures' UTC dates, events
    in ``[exposed_at, end_date + 1 day)``."""
    import pandas as pd

    a = frames["assignments"].copy()
    e = frames["events"].copy()
    a["t0"] = a["exposed_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    e["t"] = e["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    end = a["t0"].max().normalize() + pd.Timedelta(days=1)
    e = e.merge(a[["customer_id", "t0"]], on="customer_id")
    e = e[(e["t"] >= e["t0"]) & (e["t"] < end)]
    per = a.set_index("customer_id")[["variant"]].copy()
    buy = e[e["kind"] == "purchase"].groupby("customer_id")
    per["purchased"] = (buy.size().reindex(per.index, fill_value=0) > 0).astype(float)
    per["spend"] = buy["amount"].sum().reindex(per.index, fill_value=0.0)
    per["visits"] = e[e["kind"] == "visit"].groupby("customer_id").size().reindex(
        per.index, fill_value=0).astype(float)
    return per.reset_index()


@pytest.fixture(scope="session")
def other_experiment(tmp_path_factory):
    """A second experiment in another schema (``workbench.data.sample.generate_other``: variants
    A/B, no users/experiments tables, no pre-period, columns ``customer_id``/``ts``/``kind``,
    aware timestamps): ``path`` (DuckDB), ``metrics`` (YAML with ``columns:``), ``units_csv``
    and ``units_metrics`` (the same experiment per unit, variant column ``arm``), ``per_unit``
    (pandas truth) and ``frames`` (the raw rows)."""
    import yaml

    from workbench.data.sample import OTHER_METRICS, generate_other

    root = tmp_path_factory.mktemp("other")
    frames = generate_other(root / "other.duckdb", seed=3, n_users=3000)
    (root / "metrics.yml").write_text(yaml.safe_dump(OTHER_METRICS))
    per = _other_per_unit(frames)
    per.rename(columns={"variant": "arm"}).to_csv(root / "units.csv", index=False)
    (root / "units.yml").write_text(yaml.safe_dump({"metrics": [
        {"name": "purchased", "kind": "proportion", "column": "purchased", "role": "primary"},
        {"name": "spend", "kind": "mean", "column": "spend"},
        {"name": "visits", "kind": "mean", "column": "visits", "role": "guardrail"}]}))
    return {"path": root / "other.duckdb", "metrics": root / "metrics.yml",
            "units_csv": root / "units.csv", "units_metrics": root / "units.yml",
            "per_unit": per, "frames": frames}


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the whole run (Playwright allows one sync session per
    process, so every browser test shares this one)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from pathlib import Path

    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian chromium missing: run `make browser-deps`")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession per test run (Spark starts once: ~10 s). Tests marked `spark`."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("workbench-tests")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.default.parallelism", "2")
               .config("spark.driver.memory", "1g")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# The ramp scenario (workbench.data.sample.generate_ramp) counted by hand: per phase x variant
# the units and converters (first exposure in the phase, an order from the exposure to the end).
_RAMP_COUNTS = """
with u as (select user_id, min(variant) as variant, min(assigned_at) as t0 from assignments
           where experiment_id = 'ramp_rollout' group by 1),
p as (select *, case when t0 < timestamp '2026-03-09' then 'phase_1'
                     when t0 < timestamp '2026-03-16' then 'phase_2' else 'phase_3' end as phase
      from u),
o as (select distinct e.user_id from events e join u on e.user_id = u.user_id
      where e.event_type = 'order' and e.event_time >= u.t0
        and e.event_time < timestamp '2026-03-23')
select phase, variant, count(*) as n, sum(case when o.user_id is null then 0 else 1 end) as conv
from p left join o on p.user_id = o.user_id group by all order by phase, variant
"""


class RampByHand:
    """Hand computations of the ramp scenario, independent of the readout (tests of phases)."""

    @staticmethod
    def counts(path):
        """``phase, variant, n, conv`` from SQL on the DuckDB file ``path``."""
        import duckdb

        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute(_RAMP_COUNTS).df()
        finally:
            con.close()

    @staticmethod
    def stratified_conversion(counts):
        """The stratified relative lift of conversion and its delta-method s.e. (weights: the
        phases' shares of the units), and the units of both arms."""
        import numpy as np

        h = counts.assign(p=counts["conv"] / counts["n"])
        w = h.groupby("phase")["n"].sum() / h["n"].sum()
        c = h[h["variant"] == "control"].set_index("phase")
        t = h[h["variant"] == "treatment"].set_index("phase")
        C, T = (w * c["p"]).sum(), (w * t["p"]).sum()
        var_c = (w**2 * c["p"] * (1 - c["p"]) / c["n"]).sum()
        var_t = (w**2 * t["p"] * (1 - t["p"]) / t["n"]).sum()
        return T / C - 1, np.sqrt(var_t / C**2 + T**2 * var_c / C**4), float(h["n"].sum())


@pytest.fixture(scope="session")
def ramp_by_hand():
    return RampByHand


@pytest.fixture(scope="session")
def template_runs(small_warehouse, tmp_path_factory):
    """Every template and the quickstart run once on the small sample, 2 at a time, each in its
    own process, one SQLite file; explain after model_experiment, so that it explains the
    comparison's winner. Shared by tests/test_templates.py and tests/test_reports.py (what
    they check differs; the runs are the same). Yields ``({template: result}, uri, root)``;
    the environment is set only while the runs are made."""
    from pathlib import Path

    from workbench import runner, tracking

    root = tmp_path_factory.mktemp("templates")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    src = str(small_warehouse)
    small = {"source": src, "sample_rows": 3000}

    def job(template, **parameters):
        return {"template": template, "name": None, "cell_timeout": None,
                "parameters": parameters}

    quickstart = str(Path(__file__).resolve().parents[1] / "notebooks" / "1.0-wb-quickstart.ipynb")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("WORKBENCH_REPORTS_DIR", str(root / "reports"))
    mp.delenv(tracking.ENV_RUN_DIR, raising=False)
    try:
        first = runner.run_jobs([
            job("model_experiment", **small, cv=2),
            job("ab_test", source=src, pymc_draws=0, segments=["device"], planned_mde=0.05),
            job("drift_report", source=src, max_rows=2000),
            job(quickstart, source=src)], parallel=2, progress=False)
        second = runner.run_jobs([job("explain", **small, max_samples=200)], progress=False)
    finally:
        mp.undo()
    return {r["template"]: r for r in first + second}, uri, root
