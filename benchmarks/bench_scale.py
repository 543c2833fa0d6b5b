"""Scale curve: the full readout at 100k / 1M / 10M users, time and peak memory, vs the floor.

The readout: ``Experiment.from_source(...).analyze(segments=["device"])`` -- data-quality
validation, CUPED on three metrics (conversion, revenue per user, sessions per user), a 99th
percentile cap on revenue per user (its CUPED covariate capped at its own percentile), a
segment breakdown by device and the cumulative per-day series. The floor: hand-written DuckDB
SQL for the same statistics (the data-quality checks' counts, the cap percentiles, per variant,
per variant x device, per variant x day cumulative), one connection, no Python statistics.

Each contender runs in its own process (peak RSS = that process's ``VmHWM``); a process
runs its readout twice, on a fresh ``Experiment`` / connection each time: ``cold`` is the
first (file pages maybe cached by an earlier process), ``warm`` the second. Rounds alternate
workbench and SQL, so the load of a shared machine falls on both alike. The script checks that
both give the same statistics (relative 1e-9) and the same counts of the checks (rows,
crossovers, exposures outside the dates, events before exposure, units missing from users).

    .venv/bin/python benchmarks/bench_scale.py [--sizes 100000 1000000 10000000] [--rounds 3]

Data: ``workbench.data.streaming.generate_streaming`` (250,000 users per chunk) into
``$WORKBENCH_BENCH_DIR`` (default ``/tmp/workbench_bench``), ``scale_<n>.duckdb``, generated
once; the files are deleted at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CAP = 0.99
METRICS = {"defaults": {"cuped": True, "pre_period_days": 14}, "metrics": [
    {"name": "conversion", "kind": "proportion", "event_type": "order", "role": "primary"},
    {"name": "revenue_per_user", "kind": "mean", "event_type": "order", "aggregation": "sum",
     "column": "revenue", "cap": {"percentile": CAP}},
    {"name": "sessions_per_user", "kind": "mean", "event_type": "session",
     "role": "guardrail"},
]}

# The unit table (materialised once: it feeds caps, overall, segments and the per-day series).
SQL_UNITS = """
CREATE TEMP TABLE a AS
  SELECT user_id, arg_min(variant, assigned_at) AS variant, min(assigned_at) AS assigned_at
  FROM assignments WHERE experiment_id = 'checkout_redesign'
    AND assigned_at >= TIMESTAMP '{start}' AND assigned_at < TIMESTAMP '{end}'
  GROUP BY user_id HAVING min(variant) = max(variant);
CREATE TEMP TABLE u AS
  WITH e AS (
    SELECT e.user_id,
      count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.assigned_at) AS o,
      sum(e.revenue) FILTER (WHERE e.event_type = 'order' AND e.event_time >= a.assigned_at) AS r,
      count(*) FILTER (WHERE e.event_type = 'session' AND e.event_time >= a.assigned_at) AS s,
      count(*) FILTER (WHERE e.event_type = 'order' AND e.event_time < TIMESTAMP '{start}') AS po,
      sum(e.revenue) FILTER (WHERE e.event_type = 'order' AND e.event_time < TIMESTAMP '{start}') AS pr,
      count(*) FILTER (WHERE e.event_type = 'session' AND e.event_time < TIMESTAMP '{start}') AS ps
    FROM events e JOIN a USING (user_id)
    WHERE e.event_time >= TIMESTAMP '{pre}' AND e.event_time < TIMESTAMP '{end}'
    GROUP BY e.user_id)
  SELECT a.user_id, a.variant, a.assigned_at, users.device,
    (coalesce(o, 0) > 0)::DOUBLE AS c, (coalesce(po, 0) > 0)::DOUBLE AS pc,
    coalesce(r, 0)::DOUBLE AS r, coalesce(pr, 0)::DOUBLE AS pr,
    coalesce(s, 0)::DOUBLE AS s, coalesce(ps, 0)::DOUBLE AS ps
  FROM a LEFT JOIN e USING (user_id) LEFT JOIN users USING (user_id);
"""
# The data-quality checks the readout reports (workbench/data/quality.py), as one would write
# them: per table its rows, NULLs of the required columns, NaN/inf of the float columns and
# duplicate keys; per unit its variants and first exposure (crossovers, unplanned variants,
# exposures outside the dates, units missing from users); events before exposure.
SQL_VALIDATE = """
SELECT * FROM
 (SELECT count(*) AS a_rows, count(*) FILTER (experiment_id IS NULL) AS a_null_eid,
    count(*) FILTER (user_id IS NULL) AS a_null_uid, count(*) FILTER (variant IS NULL) AS a_null_v,
    count(*) FILTER (assigned_at IS NULL) AS a_null_at FROM assignments),
 (SELECT count(*) AS e_rows, count(*) FILTER (user_id IS NULL) AS e_null_uid,
    count(*) FILTER (event_time IS NULL) AS e_null_t, count(*) FILTER (event_type IS NULL) AS e_null_type,
    count(*) FILTER (isnan(revenue)) AS e_nan, count(*) FILTER (isinf(revenue)) AS e_inf FROM events),
 (SELECT count(*) AS u_rows, count(DISTINCT user_id) AS u_keys,
    count(*) FILTER (user_id IS NULL) AS u_null_uid, count(*) FILTER (country IS NULL) AS u_null_c,
    count(*) FILTER (device IS NULL) AS u_null_d, count(*) FILTER (channel IS NULL) AS u_null_ch,
    count(*) FILTER (tenure_days IS NULL) AS u_null_t, count(*) FILTER (signup_date IS NULL) AS u_null_s
  FROM users),
 (SELECT count(*) AS x_rows, count(*) FILTER (planned_weight IS NULL OR isnan(planned_weight)
    OR isinf(planned_weight)) AS x_bad, count(*) FILTER (experiment_id IS NULL OR variant IS NULL
    OR is_control IS NULL OR start_date IS NULL OR end_date IS NULL) AS x_null FROM experiments),
 (SELECT count(*) AS units, count(*) FILTER (v_min <> v_max) AS crossovers,
    count(*) FILTER (unknown > 0) AS unknown_units, coalesce(sum(unknown), 0) AS unknown_rows,
    count(*) FILTER (first_at < TIMESTAMP '{start}' OR first_at >= TIMESTAMP '{end}') AS outside,
    count(*) FILTER (uid IS NULL) AS missing_users
  FROM (SELECT user_id, min(variant) AS v_min, max(variant) AS v_max, min(assigned_at) AS first_at,
          count(*) FILTER (variant NOT IN (SELECT variant FROM experiments
                                           WHERE experiment_id = 'checkout_redesign')) AS unknown
        FROM assignments WHERE experiment_id = 'checkout_redesign' GROUP BY user_id) p
  LEFT JOIN (SELECT DISTINCT user_id AS uid FROM users) ON p.user_id = uid),
 (SELECT count(*) AS in_window, count(*) FILTER (e.event_time < a.assigned_at) AS before,
    count(DISTINCT e.user_id) FILTER (e.event_time < a.assigned_at) AS users_before
  FROM events e JOIN a USING (user_id)
  WHERE e.event_time >= TIMESTAMP '{start}' AND e.event_time < TIMESTAMP '{end}')
"""
SQL_PLAN = "SELECT * FROM experiments WHERE experiment_id = 'checkout_redesign'"
SQL_VARIANTS = "SELECT variant, count(*) AS n FROM a GROUP BY variant ORDER BY variant"
SQL_CAPS = "SELECT quantile_cont(r, {q}) AS r_cap, quantile_cont(pr, {q}) AS pr_cap FROM u"
STATS = """count(*) AS n,
  sum(c) AS c_sum, sum(c * c) AS c_ss, sum(pc) AS c_x, sum(pc * pc) AS c_xx, sum(c * pc) AS c_xy,
  sum(least(r, {rc})) AS r_sum, sum(least(r, {rc}) ^ 2) AS r_ss, sum(least(pr, {pc})) AS r_x,
  sum(least(pr, {pc}) ^ 2) AS r_xx, sum(least(r, {rc}) * least(pr, {pc})) AS r_xy,
  sum(s) AS s_sum, sum(s * s) AS s_ss, sum(ps) AS s_x, sum(ps * ps) AS s_xx, sum(s * ps) AS s_xy"""
SQL_OVERALL = "SELECT variant, " + STATS + " FROM u GROUP BY variant ORDER BY variant"
SQL_SEGMENTS = ("SELECT variant, device, " + STATS
                + " FROM u GROUP BY variant, device ORDER BY variant, device")
# Per day: each unit's change of every summand on the days it has events (its cumulative
# values after the day against the same less the day's; one window per unit), plus its
# pre-period summands on its entry day, summed per variant x day, cumulated over days.
SQL_DAILY = """
WITH inc AS (
  SELECT e.user_id, e.event_time::DATE AS day,
    count(*) FILTER (WHERE e.event_type = 'order')::DOUBLE AS o,
    coalesce(sum(e.revenue) FILTER (WHERE e.event_type = 'order'), 0)::DOUBLE AS r,
    count(*) FILTER (WHERE e.event_type = 'session')::DOUBLE AS s
  FROM events e JOIN a USING (user_id)
  WHERE e.event_time >= a.assigned_at AND e.event_time < TIMESTAMP '{end}'
  GROUP BY ALL
), cum AS (
  SELECT user_id, day, o, r, s, sum(o) OVER w AS co, sum(r) OVER w AS cr, sum(s) OVER w AS cs
  FROM inc WINDOW w AS (PARTITION BY user_id ORDER BY day)
), d AS (
  SELECT u.variant, cum.day, u.pc, least(u.pr, {pc}) AS px, u.ps,
    (co > 0)::DOUBLE AS c, (co - cum.o > 0)::DOUBLE AS c0, least(cr, {rc}) AS r,
    least(cr - cum.r, {rc}) AS r0, cs AS s, cs - cum.s AS s0
  FROM cum JOIN u USING (user_id)
), per_day AS (
  SELECT variant, day, 0 AS n,
    sum(c - c0) AS c_sum, sum(c * c - c0 * c0) AS c_ss, 0 AS c_x, 0 AS c_xx,
    sum((c - c0) * pc) AS c_xy, sum(r - r0) AS r_sum, sum(r * r - r0 * r0) AS r_ss, 0 AS r_x,
    0 AS r_xx, sum((r - r0) * px) AS r_xy, sum(s - s0) AS s_sum, sum(s * s - s0 * s0) AS s_ss,
    0 AS s_x, 0 AS s_xx, sum((s - s0) * ps) AS s_xy
  FROM d GROUP BY variant, day
  UNION ALL
  SELECT variant, assigned_at::DATE, count(*), 0, 0, sum(pc), sum(pc * pc), 0, 0, 0,
    sum(least(pr, {pc})), sum(least(pr, {pc}) ^ 2), 0, 0, 0, sum(ps), sum(ps * ps), 0
  FROM u GROUP BY 1, 2
), g AS (SELECT variant, day, {summed} FROM per_day GROUP BY variant, day)
SELECT variant, day, {cumulated} FROM g ORDER BY variant, day
"""
COLS = ["n"] + [f"{m}_{s}" for m in ("c", "r", "s") for s in ("sum", "ss", "x", "xx", "xy")]
WB_STATS = {"sum": "sum", "ss": "sum_squares", "x": "pre_sum", "xx": "pre_sum_squares",
            "xy": "pre_sum_product"}
WB_METRIC = {"c": "conversion", "r": "revenue_per_user", "s": "sessions_per_user"}


def _dates(path):
    import duckdb

    con = duckdb.connect(str(path), read_only=True, config=_sql_config())
    start, end = con.execute("SELECT min(start_date), max(end_date) FROM experiments").fetchone()
    con.close()
    return {"start": f"{start} 00:00:00", "end": f"{end + dt.timedelta(days=1)} 00:00:00",
            "pre": f"{start - dt.timedelta(days=14)} 00:00:00"}


def _sql_config() -> dict:
    """The floor runs under the same DuckDB settings as the workbench (memory limit and spill
    folder of ``WORKBENCH_DUCKDB_MEMORY_LIMIT``): one process may hold both connections."""
    from workbench.data.sources import duckdb_config

    return duckdb_config()


def run_sql(path):
    """The floor: every statistic the readout needs, hand-written."""
    import duckdb

    d = _dates(path)
    con = duckdb.connect(str(path), read_only=True, config=_sql_config())
    try:
        con.execute(SQL_UNITS.format(**d))
        validate = con.execute(SQL_VALIDATE.format(**d)).df()
        con.execute(SQL_PLAN).df()
        variants = con.execute(SQL_VARIANTS).df()
        rc, pc = con.execute(SQL_CAPS.format(q=CAP)).fetchone()
        overall = con.execute(SQL_OVERALL.format(rc=rc, pc=pc)).df()
        segments = con.execute(SQL_SEGMENTS.format(rc=rc, pc=pc)).df()
        cumulated = ", ".join(f"sum({c}) OVER (PARTITION BY variant ORDER BY day) AS {c}"
                              for c in COLS)
        summed = ", ".join(f"sum({c}) AS {c}" for c in COLS)
        daily = con.execute(SQL_DAILY.format(rc=rc, pc=pc, cumulated=cumulated, summed=summed,
                                             **d)).df()
    finally:
        con.close()
    return {"validate": validate, "variants": variants, "caps": (rc, pc), "overall": overall,
            "segments": segments, "daily": daily}


def run_workbench(path):
    """The full readout, as a user runs it."""
    import warnings

    from workbench.readout.experiment import Experiment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exp = Experiment.from_source(path, metrics=METRICS)
        return exp, exp.analyze(segments=["device"])


def _wide(frame, keys):
    """workbench's long statistics -> one row per key, the floor's column names."""
    import pandas as pd

    rows = []
    for key, g in frame.groupby(keys, sort=True):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for short, metric in WB_METRIC.items():
            r = g[g.metric == metric].iloc[0]
            row["n"] = float(r["n"])
            for s, col in WB_STATS.items():
                row[f"{short}_{s}"] = float(r[col])
        rows.append(row)
    return pd.DataFrame(rows)


def check(path) -> str:
    """Same statistics from workbench and the hand-written SQL (relative 1e-9)."""
    import numpy as np

    exp, _ = run_workbench(path)
    sql = run_sql(path)
    caps = exp.compiler.cap_thresholds().set_index(["metric", "column"])["cap"]
    assert np.isclose(caps[("revenue_per_user", "y")], sql["caps"][0], rtol=1e-12)
    assert np.isclose(caps[("revenue_per_user", "x")], sql["caps"][1], rtol=1e-12)
    worst = 0.0
    seg = exp.sufficient_stats(segments=["device"])
    seg = seg[seg.dimension == "device"].rename(columns={"segment": "device"})
    daily = exp.sufficient_stats(by_day=True)
    daily = daily.assign(day=daily["date"].astype("datetime64[ns]"))
    sql["daily"]["day"] = sql["daily"]["day"].astype("datetime64[ns]")
    for name, wb, keys in (("overall", exp.sufficient_stats(), ["variant"]),
                           ("segments", seg, ["variant", "device"]),
                           ("daily", daily, ["variant", "day"])):
        a = _wide(wb, keys).sort_values(keys).reset_index(drop=True)
        b = sql[name].sort_values(keys).reset_index(drop=True)
        assert len(a) == len(b), (name, len(a), len(b))
        assert (a[keys].astype(str).values == b[keys].astype(str).values).all(), name
        x, y = a[COLS].to_numpy(float), b[COLS].to_numpy(float)
        rel = np.abs(x - y) / np.maximum(np.abs(y), 1.0)
        worst = max(worst, float(rel.max()))
        assert rel.max() < 1e-9, (name, rel.max())
    checks = exp.validate().checks
    v = sql["validate"].iloc[0]
    for (check_, table), floor in ((("table", "assignments"), v.a_rows),
                                   (("table", "events"), v.e_rows),
                                   (("crossovers", "assignments"), v.crossovers),
                                   (("assignment_window", "assignments"), v.outside),
                                   (("events_before_exposure", "events"), v.before),
                                   (("missing_users", "users"), v.missing_users)):
        counted = checks[(checks["check"] == check_) & (checks["table"] == table)]["count"]
        assert int(counted.iloc[0]) == int(floor), (check_, table, counted.iloc[0], floor)
    return (f"workbench == hand-written SQL: overall, segments, daily (max rel. diff "
            f"{worst:.1e}), the validation's counts")


def one(name, path, repeat):
    """Child process: time ``name`` ``repeat`` times, report peak RSS of this process."""
    fn = {"workbench": run_workbench, "duckdb_sql": run_sql}[name]
    if name == "workbench":
        import workbench.readout.experiment  # noqa: F401  imports are not the readout
    else:
        import duckdb  # noqa: F401
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    # VmHWM: this process's own peak (ru_maxrss also counts the parent's RSS at fork, on Linux)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    print(json.dumps({"times": times, "peak_rss_mb": peak}))


def _child(name, path, repeat):
    out = subprocess.run([sys.executable, __file__, "--one", name, "--path", str(path),
                          "--repeat", str(repeat)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--memory-limit", default="1GB",
                    help="DuckDB memory_limit of both contenders (WORKBENCH_DUCKDB_MEMORY_LIMIT;"
                         " '' = DuckDB's default, 80%% of RAM)")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--one")
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.one:
        one(args.one, args.path, args.repeat)
        return
    bench_dir = Path(os.environ.get("WORKBENCH_BENCH_DIR", "/tmp/workbench_bench"))
    os.environ["WORKBENCH_DUCKDB_MEMORY_LIMIT"] = args.memory_limit  # inherited by the children
    print(f"load: {os.getloadavg()}, DuckDB memory_limit: {args.memory_limit or 'default'}")
    rows = []
    for n in args.sizes:
        path = bench_dir / f"scale_{n}.duckdb"
        if not path.exists():
            from workbench.data.streaming import generate_streaming

            t0 = time.perf_counter()
            generate_streaming(path, seed=1, n_users=n)
            print(f"generated {path} in {time.perf_counter() - t0:.0f} s")
        import duckdb

        con = duckdb.connect(str(path), read_only=True)
        n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
        con.close()
        print(f"\n{n:,} users, {n_events:,} events, {path.stat().st_size / 2**30:.2f} GiB file")
        if not args.no_check and n <= 1_000_000:
            print("  " + check(path))
        res = {"workbench": [], "duckdb_sql": []}
        for r in range(args.rounds):
            for name in res:
                out = _child(name, path, args.repeat)
                res[name].append(out)
                print(f"  round {r + 1} {name:10s} " + ", ".join(f"{t:.2f}" for t in out["times"])
                      + f" s  peak RSS {out['peak_rss_mb']:,.0f} MiB", flush=True)
        med = {k: {"cold": statistics.median(o["times"][0] for o in v),
                   "warm": statistics.median(o["times"][-1] for o in v),
                   "rss": max(o["peak_rss_mb"] for o in v)} for k, v in res.items()}
        ratio = [w["times"][-1] / s["times"][-1]
                 for w, s in zip(res["workbench"], res["duckdb_sql"])]
        rows.append((n, n_events, med, statistics.median(ratio), os.getloadavg()[0]))
        print(f"  median warm: workbench {med['workbench']['warm']:.2f} s, SQL "
              f"{med['duckdb_sql']['warm']:.2f} s, ratio {statistics.median(ratio):.2f}x "
              f"(rounds {', '.join(f'{x:.2f}' for x in ratio)}); peak RSS workbench "
              f"{med['workbench']['rss']:,.0f} MiB, SQL {med['duckdb_sql']['rss']:,.0f} MiB")
    print("\n| users | events | workbench cold / warm | SQL cold / warm | ratio (warm) | "
          "peak RSS workbench / SQL | load |")
    for n, ne, med, ratio, load in rows:
        w, s = med["workbench"], med["duckdb_sql"]
        print(f"| {n:,} | {ne:,} | {w['cold']:.2f} / {w['warm']:.2f} s | {s['cold']:.2f} / "
              f"{s['warm']:.2f} s | {ratio:.2f}x | {w['rss']:,.0f} / {s['rss']:,.0f} MiB | "
              f"{load:.1f} |")
    if not args.keep:
        for n in args.sizes:
            (bench_dir / f"scale_{n}.duckdb").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
