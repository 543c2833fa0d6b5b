"""Plan benchmark: `wb.plan` on the sample's pre-period at 1M users vs a hand-written DuckDB
query of the same moments (the floor).

Window 2026-09-28 .. 2026-10-04 (units: users active in it, exposed at their first event);
metrics conversion (CUPED over the 14 days before), revenue per user (CUPED over the 7 days
before) and revenue per order (ratio, delta method, CUPED). The floor computes the same
per-unit values and the same sums in one SQL statement; both answers are checked equal.

    WORKBENCH_ROOT=$PWD .venv/bin/python benchmarks/bench_plan.py --users 1000000 --repeat 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import duckdb
import numpy as np

START, END = "2026-09-28", "2026-10-04"
METRICS = [
    {"name": "conversion", "kind": "proportion", "event_type": "order", "aggregation": "any",
     "cuped": True, "pre_period_days": 14},
    {"name": "revenue_per_user", "kind": "mean", "event_type": "order", "aggregation": "sum",
     "column": "revenue"},
    {"name": "revenue_per_order", "kind": "ratio", "cuped": True, "pre_period_days": 14,
     "numerator": {"event_type": "order", "aggregation": "sum", "column": "revenue"},
     "denominator": {"event_type": "order", "aggregation": "count"}},
]
FLOOR = f"""
WITH w AS (SELECT user_id, min(event_time) AS t0 FROM events
           WHERE event_time >= TIMESTAMP '{START}' AND event_time < TIMESTAMP '{END}' + INTERVAL 1 DAY
           GROUP BY user_id),
u AS (
  SELECT w.user_id,
    count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time >= w.t0
                     AND e.event_time < TIMESTAMP '{END}' + INTERVAL 1 DAY) AS y_o,
    coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'order' AND e.event_time >= w.t0
                     AND e.event_time < TIMESTAMP '{END}' + INTERVAL 1 DAY), 0) AS y_r,
    count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time < TIMESTAMP '{START}'
                     AND e.event_time >= TIMESTAMP '{START}' - INTERVAL 14 DAY) AS x_o,
    coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'order'
                     AND e.event_time < TIMESTAMP '{START}'
                     AND e.event_time >= TIMESTAMP '{START}' - INTERVAL 14 DAY), 0) AS x_r,
    coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'order'
                     AND e.event_time < TIMESTAMP '{START}'
                     AND e.event_time >= TIMESTAMP '{START}' - INTERVAL 7 DAY), 0) AS x7_r
  FROM w LEFT JOIN events e ON e.user_id = w.user_id
       AND e.event_time >= TIMESTAMP '{START}' - INTERVAL 14 DAY
       AND e.event_time < TIMESTAMP '{END}' + INTERVAL 1 DAY
  GROUP BY w.user_id)
SELECT count(*) n,
  avg((y_o > 0)::DOUBLE) p, corr((y_o > 0)::DOUBLE, (x_o > 0)::DOUBLE) rho_p,
  avg(y_r) m, var_samp(y_r) v_m, corr(y_r, x7_r) rho_m,
  sum(y_r) sy, sum(y_o) sd, sum(y_r*y_r) syy, sum(y_o*y_o) sdd, sum(y_r*y_o) syd,
  sum(x_r) sx, sum(x_o) sw, sum(x_r*x_r) sxx, sum(x_o*x_o) sww, sum(x_r*x_o) sxw,
  sum(y_r*x_r) syx, sum(y_r*x_o) syw, sum(y_o*x_r) sdx, sum(y_o*x_o) sdw
FROM u
"""


def floor_moments(path):
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET enable_progress_bar = false")
        r = con.execute(FLOOR).df().iloc[0]
    n = r.n
    R, Rx = r.sy / r.sd, r.sx / r.sw
    dbar = r.sd / n
    vz = (r.syy - 2 * R * r.syd + R**2 * r.sdd) / (n - 1) / dbar**2  # means of y - R d are 0
    cov = r.syx - Rx * r.syw - R * r.sdx + R * Rx * r.sdw
    vu = r.sxx - 2 * Rx * r.sxw + Rx**2 * r.sww
    vzz = r.syy - 2 * R * r.syd + R**2 * r.sdd
    return {"conversion": (r.p, r.p * (1 - r.p), r.rho_p),
            "revenue_per_user": (r.m, r.v_m, r.rho_m),
            "revenue_per_order": (R, vz, cov / np.sqrt(vu * vzz))}


def main() -> None:
    import workbench as wb
    from workbench.data.sample import generate

    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    base = Path(os.environ.get("WORKBENCH_BENCH_DIR", "/tmp/workbench_bench"))
    base.mkdir(parents=True, exist_ok=True)
    source = base / f"plan_{args.users}.duckdb"
    if not source.exists():
        t = time.perf_counter()
        generate(source, seed=7, n_users=args.users, progress=False)
        print(f"generated {args.users} users in {time.perf_counter() - t:.0f} s")
    warnings.simplefilter("ignore")
    ours, floor = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        plan = wb.plan(source, METRICS, start_date=START, end_date=END, mde=0.02)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        want = floor_moments(source)
        floor.append(time.perf_counter() - t)
    m = plan.moments.set_index("metric")
    for name, (mean, var, rho) in want.items():
        np.testing.assert_allclose([m.loc[name, "baseline"], m.loc[name, "variance"],
                                    m.loc[name, "rho"]], [mean, var, rho], rtol=1e-6,
                                   err_msg=name)
    a, b = statistics.median(ours), statistics.median(floor)
    print(f"units in window: {int(m['n_units'].iloc[0]):,}")
    print(f"wb.plan (3 metrics, CUPED, moments + sizes): median {a:.2f} s  "
          f"(runs {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"hand-written DuckDB query of the same moments: median {b:.2f} s  "
          f"(runs {', '.join(f'{x:.2f}' for x in floor)})")
    print(f"ratio wb.plan / floor: {a / b:.2f}x  (moments equal to 1e-6)")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
