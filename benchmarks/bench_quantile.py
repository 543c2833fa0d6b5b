"""Quantile readout benchmark: 1M users, quantile metrics computed in DuckDB through Ibis.

Contenders (warm, interleaved in one process after a warm-up of each, medians of ``--repeat``):

- ``workbench``: ``Experiment.from_source(...).sufficient_stats()`` with two unit-level quantile
  metrics (p90 of revenue per user, median of sessions per user): a count of units per variant,
  then one query holding the sums and the multi-quantiles (q and q -/+ 1.96 sigma per variant).
- ``workbench_analyze``: the full ``analyze(timeseries=False)`` (validation + stats engine).
- ``duckdb_sql``: the floor, one hand-written DuckDB query for the same per-user values and
  ``quantile_cont`` at the same probabilities (given to it as constants, a head start).
- ``event_level``: workbench's event-level p90 of the order value (three passes), and
  ``event_level_sql`` the same three passes hand-written in DuckDB.
- ``bootstrap``: what a resampling readout would cost: numpy on the unit values already in
  memory, one resample of every arm for both metrics timed and scaled to 1,000 resamples.

    .venv/bin/python benchmarks/bench_quantile.py [--users 1000000] [--repeat 5]

Data: ``workbench.data.sample.generate`` (seed 1) in ``$WORKBENCH_BENCH_DIR`` (default
``/tmp/workbench_bench``), the file ``bench_readout.py`` uses.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

UNIT_METRICS = {"metrics": [
    {"name": "revenue_p90", "kind": "quantile", "quantile": 0.9, "event_type": "order",
     "aggregation": "sum", "column": "revenue", "role": "primary"},
    {"name": "sessions_median", "kind": "quantile", "quantile": 0.5, "event_type": "session",
     "aggregation": "count"},
]}
EVENT_METRICS = {"metrics": [
    {"name": "order_value_p90", "kind": "quantile", "quantile": 0.9, "level": "event",
     "event_type": "order", "column": "revenue", "role": "primary"},
]}

UNITS_SQL = """
WITH a AS (
  SELECT user_id, arg_min(variant, assigned_at) AS variant, min(assigned_at) AS assigned_at
  FROM assignments WHERE experiment_id = 'checkout_redesign'
  GROUP BY user_id HAVING min(variant) = max(variant)
)"""

SQL = UNITS_SQL + """, u AS (
  SELECT e.user_id,
    sum(e.revenue) FILTER (WHERE e.event_type = 'order') AS r,
    count(*) FILTER (WHERE e.event_type = 'session') AS s
  FROM events e JOIN a USING (user_id)
  WHERE e.event_time >= a.assigned_at AND e.event_time < TIMESTAMP '{end}'
  GROUP BY e.user_id
), v AS (
  SELECT a.variant, coalesce(r, 0)::DOUBLE AS r, coalesce(s, 0)::DOUBLE AS s
  FROM a LEFT JOIN u USING (user_id)
)
SELECT variant, count(*) AS n, quantile_cont(r, {pr}) AS qr, quantile_cont(s, {ps}) AS qs
FROM v GROUP BY variant ORDER BY variant
"""

EVENTS_SQL = UNITS_SQL + """, ev AS (
  SELECT e.user_id, a.variant, e.revenue AS x FROM events e JOIN a USING (user_id)
  WHERE e.event_type = 'order' AND e.event_time >= a.assigned_at
    AND e.event_time < TIMESTAMP '{end}' AND e.revenue IS NOT NULL AND NOT isnan(e.revenue)
)"""


def _end(path):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    end = con.execute("SELECT max(end_date) FROM experiments").fetchone()[0]
    con.close()
    return f"{end + dt.timedelta(days=1)} 00:00:00"


def _plan(path):
    """The probabilities workbench asks for (the floor gets them for free)."""
    from workbench.metrics import quantile
    from workbench.readout.experiment import Experiment

    plan = quantile.unit_plan(Experiment.from_source(path, metrics=UNIT_METRICS).compiler)
    return plan["union"]["revenue_p90"], plan["union"]["sessions_median"]


def run_workbench(path):
    from workbench.readout.experiment import Experiment

    return Experiment.from_source(path, metrics=UNIT_METRICS).sufficient_stats()


def run_workbench_full(path):
    from workbench.readout.experiment import Experiment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Experiment.from_source(path, metrics=UNIT_METRICS).analyze(
            timeseries=False).results


def run_sql(path, probs):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    out = con.execute(SQL.format(end=_end(path), pr=list(probs[0]), ps=list(probs[1]))).df()
    con.close()
    return out


def run_event_level(path):
    from workbench.readout.experiment import Experiment

    return Experiment.from_source(path, metrics=EVENT_METRICS).sufficient_stats()


def run_event_level_sql(path):
    """The same three passes by hand: Q per variant; per-user counts below Q -> the clustered
    CDF standard error; the quantiles at q -/+ 1.96 sigma."""
    import duckdb

    from workbench.stats import quantile as sq

    con = duckdb.connect(str(path), read_only=True)
    end = _end(path)
    con.execute("CREATE TEMP TABLE n AS " + UNITS_SQL.format() +
                " SELECT variant, count(*) AS n FROM a GROUP BY variant")
    q = dict(con.execute(EVENTS_SQL.format(end=end) +
                         " SELECT variant, quantile_cont(x, 0.9) FROM ev GROUP BY variant")
             .fetchall())
    cases = " ".join(f"WHEN '{v}' THEN {c!r}" for v, c in q.items())
    sums = con.execute(EVENTS_SQL.format(end=end) + f""", pu AS (
        SELECT user_id, variant, sum((x <= CASE variant {cases} END)::DOUBLE) AS y,
          count(*)::DOUBLE AS d FROM ev GROUP BY user_id, variant)
        SELECT pu.variant, any_value(n.n), sum(y), sum(y*y), sum(d), sum(d*d), sum(y*d)
        FROM pu JOIN n USING (variant) GROUP BY pu.variant""").fetchall()
    probs = {}
    for v, n, *s in sums:
        lo, hi = sq.probabilities(0.9, sq.cluster_cdf_se(n, *s))
        probs[v] = [float(lo), float(hi)]
    union = sorted({p for lst in probs.values() for p in lst})
    out = con.execute(EVENTS_SQL.format(end=end) +
                      f" SELECT variant, quantile_cont(x, {union}) FROM ev GROUP BY variant").df()
    con.close()
    return q, out


def _unit_values(path):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    sql = SQL.split("SELECT variant, count(*)")[0] + " SELECT * FROM v"
    df = con.execute(sql.format(end=_end(path))).df()
    con.close()
    return df


def run_bootstrap_one(values, rng):
    """One bootstrap resample of every arm, both metrics (numpy, values in memory)."""
    for arm in values:
        for x, q in ((arm["r"], 0.9), (arm["s"], 0.5)):
            np.quantile(x[rng.integers(0, x.size, x.size)], q)


def check(path, probs):
    wb = run_workbench(path).set_index(["metric", "variant"])
    sql = run_sql(path, probs).set_index("variant")
    for v in sql.index:
        for metric, col, i in (("revenue_p90", "qr", 0), ("sessions_median", "qs", 1)):
            got = dict(zip(probs[i], sql.loc[v, col]))
            row = wb.loc[(metric, v)]
            assert row["n"] == sql.loc[v, "n"]
            assert abs(row["quantile"] - got[row["quantile_level"]]) <= 1e-9 * abs(
                row["quantile"]) + 1e-12
    ev = run_event_level(path).set_index("variant")
    q, _ = run_event_level_sql(path)
    for v, c in q.items():
        assert abs(ev.loc[v, "quantile"] - c) <= 1e-9 * abs(c)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    bench_dir = Path(os.environ.get("WORKBENCH_BENCH_DIR", "/tmp/workbench_bench"))
    path = bench_dir / f"readout_{args.users}.duckdb"
    if not path.exists():
        from workbench.data.sample import generate

        generate(path, seed=1, n_users=args.users, progress=True)
    probs = _plan(path)
    check(path, probs)
    contenders = {
        "workbench": lambda: run_workbench(path),
        "workbench_analyze": lambda: run_workbench_full(path),
        "duckdb_sql": lambda: run_sql(path, probs),
        "event_level": lambda: run_event_level(path),
        "event_level_sql": lambda: run_event_level_sql(path),
    }
    for fn in contenders.values():  # imports, connections, DuckDB's caches
        fn()
    times = {k: [] for k in contenders}
    for _ in range(args.repeat):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    df = _unit_values(path)
    values = [{"r": g["r"].to_numpy(), "s": g["s"].to_numpy()} for _, g in df.groupby("variant")]
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        run_bootstrap_one(values, rng)
        boot.append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(df):,} units; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"warm, interleaved, medians of {args.repeat}:")
    for name, t in times.items():
        print(f"  {name:18s} median {med[name]:6.2f} s  (runs {', '.join(f'{x:.2f}' for x in t)})")
    ratio = [w / s for w, s in zip(times["workbench"], times["duckdb_sql"])]
    print(f"workbench / hand-written DuckDB quantile query: "
          f"{med['workbench'] / med['duckdb_sql']:.2f}x (per round: "
          f"{', '.join(f'{r:.2f}' for r in ratio)})")
    ratio = [w / s for w, s in zip(times["event_level"], times["event_level_sql"])]
    print(f"event level, workbench / hand-written 3 DuckDB queries: "
          f"{med['event_level'] / med['event_level_sql']:.2f}x (per round: "
          f"{', '.join(f'{r:.2f}' for r in ratio)})")
    one = statistics.median(boot)
    print(f"bootstrap (numpy, values in memory): {one:.3f} s per resample -> "
          f"{1000 * one:.0f} s for 1,000 resamples = {1000 * one / med['workbench']:.0f}x the "
          "workbench statistics")


if __name__ == "__main__":
    main()
