"""Readout benchmark: 1M users / ~10M events / 3 variants / 5 metrics with CUPED.

Compares the sufficient statistics computed by ``workbench`` (metric YAML -> Ibis -> DuckDB)
with (a) hand-written DuckDB SQL for the same statistics, the floor, and (b) the pandas code a
data scientist would write (load the tables, group by user, group by variant). Each contender
runs once cold in its own process (peak RSS is per process), then all run warm, interleaved,
in one process (medians of 3; interleaving spreads the load of a shared machine evenly).

    .venv/bin/python benchmarks/bench_readout.py [--users 1000000] [--repeat 3]

The data is generated once with ``workbench.data.sample.generate`` into
``$WORKBENCH_BENCH_DIR`` (default ``/tmp/workbench_bench``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

METRICS = {"defaults": {"cuped": True, "pre_period_days": 14}, "metrics": [
    {"name": "conversion", "kind": "proportion", "event_type": "order", "role": "primary"},
    {"name": "orders_per_user", "kind": "mean", "event_type": "order"},
    {"name": "revenue_per_user", "kind": "mean", "event_type": "order", "aggregation": "sum",
     "column": "revenue"},
    {"name": "sessions_per_user", "kind": "mean", "event_type": "session",
     "role": "guardrail"},
    {"name": "revenue_per_order", "kind": "ratio",
     "numerator": {"event_type": "order", "aggregation": "sum", "column": "revenue"},
     "denominator": {"event_type": "order"}},
]}

SQL = """
WITH a AS (
  SELECT user_id, arg_min(variant, assigned_at) AS variant, min(assigned_at) AS assigned_at
  FROM assignments WHERE experiment_id = 'checkout_redesign'
  GROUP BY user_id HAVING min(variant) = max(variant)
), u AS (
  SELECT e.user_id,
    count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.assigned_at) AS o,
    sum(e.revenue) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.assigned_at) AS r,
    count(*) FILTER (WHERE e.event_type = 'session' AND e.event_time >= a.assigned_at) AS s,
    count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time < TIMESTAMP '{start}') AS po,
    sum(e.revenue) FILTER (WHERE e.event_type = 'order' AND e.event_time < TIMESTAMP '{start}') AS pr,
    count(*) FILTER (WHERE e.event_type = 'session' AND e.event_time < TIMESTAMP '{start}') AS ps
  FROM events e JOIN a USING (user_id)
  WHERE e.event_time >= TIMESTAMP '{pre}' AND e.event_time < TIMESTAMP '{end}'
  GROUP BY e.user_id
), v AS (
  SELECT a.variant, coalesce(o, 0)::DOUBLE AS o, coalesce(r, 0) AS r, coalesce(s, 0)::DOUBLE AS s,
    coalesce(po, 0)::DOUBLE AS po, coalesce(pr, 0) AS pr, coalesce(ps, 0)::DOUBLE AS ps,
    (coalesce(o, 0) > 0)::DOUBLE AS c, (coalesce(po, 0) > 0)::DOUBLE AS pc
  FROM a LEFT JOIN u USING (user_id)
)
SELECT variant, count(*) AS n,
  sum(c), sum(pc), sum(c * pc),
  sum(o), sum(o * o), sum(po), sum(po * po), sum(o * po),
  sum(r), sum(r * r), sum(pr), sum(pr * pr), sum(r * pr),
  sum(s), sum(s * s) AS ss, sum(ps), sum(ps * ps), sum(s * ps),
  sum(r * o), sum(o * pr), sum(pr * po), sum(r * po) AS r_po
FROM v GROUP BY variant ORDER BY variant
"""


def _dates(path):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    start, end = con.execute("SELECT min(start_date), max(end_date) FROM experiments").fetchone()
    con.close()
    import datetime as dt

    return {"start": f"{start} 00:00:00", "end": f"{end + dt.timedelta(days=1)} 00:00:00",
            "pre": f"{start - dt.timedelta(days=14)} 00:00:00"}


def run_workbench(path):
    from workbench.readout.experiment import Experiment

    exp = Experiment.from_source(path, metrics=METRICS)
    return exp.sufficient_stats()


def run_workbench_full(path):
    import warnings

    from workbench.readout.experiment import Experiment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = Experiment.from_source(path, metrics=METRICS)
        return exp.analyze(timeseries=False).results


def run_sql(path):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    out = con.execute(SQL.format(**_dates(path))).df()
    con.close()
    return out


def run_pandas(path):
    import duckdb
    import pandas as pd

    d = _dates(path)
    con = duckdb.connect(str(path), read_only=True)
    a = con.execute("SELECT * FROM assignments WHERE experiment_id = 'checkout_redesign'").df()
    e = con.execute("SELECT * FROM events").df()
    con.close()
    nv = a.groupby("user_id")["variant"].nunique()
    a = a[a.user_id.isin(nv.index[nv == 1])]
    a = a.sort_values("assigned_at").groupby("user_id").first()
    e = e[(e.event_time >= d["pre"]) & (e.event_time < d["end"])]
    e = e.merge(a[["assigned_at"]], left_on="user_id", right_index=True)
    during = e[e.event_time >= e.assigned_at]
    pre = e[e.event_time < d["start"]]
    u = pd.DataFrame(index=a.index)
    u["variant"] = a["variant"]
    for tag, f in (("", during), ("p", pre)):
        orders = f[f.event_type == "order"]
        u[tag + "o"] = orders.groupby("user_id").size()
        u[tag + "r"] = orders.groupby("user_id")["revenue"].sum()
        u[tag + "s"] = f[f.event_type == "session"].groupby("user_id").size()
    u = u.fillna(0)
    u["c"], u["pc"] = (u.o > 0).astype(float), (u.po > 0).astype(float)
    for x, y in (("c", "pc"), ("o", "po"), ("r", "pr"), ("s", "ps"), ("r", "o"), ("o", "pr"),
                 ("pr", "po"), ("r", "po")):
        u[f"{x}*{y}"] = u[x] * u[y]
    for x in ("o", "r", "s", "po", "pr", "ps"):
        u[f"{x}^2"] = u[x] ** 2
    return u.groupby("variant").agg(["count", "sum"])


CONTENDERS = {"workbench": run_workbench, "workbench_analyze": run_workbench_full,
              "duckdb_sql": run_sql, "pandas": run_pandas}


def one(name, path, repeat):
    """Run one contender ``repeat`` times in this process; report times and peak RSS."""
    fn = CONTENDERS[name]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"name": name, "times": times, "peak_rss_mb": rss}))


def paired(path, repeat):
    """Interleave the contenders (after a warm-up of each) so load changes on a shared machine
    hit them alike; the ratios are taken per round."""
    times = {k: [] for k in CONTENDERS}
    for name in ("workbench", "duckdb_sql"):  # imports, connections, DuckDB's caches
        CONTENDERS[name](path)
    for _ in range(repeat):
        for name, fn in CONTENDERS.items():
            t0 = time.perf_counter()
            fn(path)
            times[name].append(time.perf_counter() - t0)
    print(json.dumps(times))


def check(path):
    """The contenders compute the same numbers (sessions sum of squares per variant)."""
    wb = run_workbench(path).set_index(["metric", "variant"])
    sql = run_sql(path).set_index("variant")
    for v in sql.index:
        assert wb.loc[("sessions_per_user", v), "sum_squares"] == sql.loc[v, "ss"]
        assert abs(wb.loc[("revenue_per_order", v), "sum_pre_den_product"]
                   - sql.loc[v, "r_po"]) <= 1e-9 * abs(sql.loc[v, "r_po"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one == "paired":
        paired(args.path, args.repeat)
        return
    if args.one:
        one(args.one, args.path, args.repeat)
        return
    bench_dir = Path(os.environ.get("WORKBENCH_BENCH_DIR", "/tmp/workbench_bench"))
    path = bench_dir / f"readout_{args.users}.duckdb"
    if not path.exists():
        from workbench.data.sample import generate

        t0 = time.perf_counter()
        generate(path, seed=1, n_users=args.users, progress=True)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s")
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    events_mb = con.execute("SELECT * FROM events LIMIT 100000").df().memory_usage(
        deep=True).sum() / 1e5 * n_events / 2**20
    con.close()
    check(path)
    print(f"{args.users:,} users, {n_events:,} events (events table in pandas ~ "
          f"{events_mb:,.0f} MiB)")
    print("cold run, each contender in its own process (peak RSS of that process):")
    for name in CONTENDERS:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--path", str(path),
                              "--repeat", "1"], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {name:18s} {res['times'][0]:7.2f} s   peak RSS {res['peak_rss_mb']:,.0f} MiB")
    out = subprocess.run([sys.executable, __file__, "--one", "paired", "--path", str(path),
                          "--repeat", str(args.repeat)], capture_output=True, text=True,
                         check=True)
    times = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"warm, interleaved, medians of {args.repeat}:")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in times.items():
        print(f"  {name:18s} median {med[name]:7.2f} s  (runs {', '.join(f'{x:.2f}' for x in t)})")
    ratio = [w / s for w, s in zip(times["workbench"], times["duckdb_sql"])]
    print(f"workbench / hand-written DuckDB SQL: {med['workbench'] / med['duckdb_sql']:.2f}x "
          f"(per round: {', '.join(f'{r:.2f}' for r in ratio)})")
    print(f"pandas / workbench: {med['pandas'] / med['workbench']:.1f}x")


if __name__ == "__main__":
    main()
