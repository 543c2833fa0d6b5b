"""Incremental readout benchmark: the daily run of a 14-day experiment vs a full recompute.

The sample (1M users, ~12M events over the 14-day pre-period and the 14 days) is generated
once; a working DuckDB file holds the events and assignments up to the end of day 13 and an
incremental state (``workbench.metrics.incremental``) is built through day 13; then day 14's
rows are appended. Timed, interleaved (medians of ``--repeat``):

- daily: bring the state up to date (the new assignments into the state's units; fingerprints
  of the assignments, the units, the settled events and each pending day; aggregate day 14,
  the only changed day, and add its rows to the units' rows of ``unit_table``; day 11 is
  settled) and compute the sufficient statistics from it; the state through day 13 is
  restored before each repeat;
- full: the sufficient statistics from all events (``MetricCompiler.sufficient_stats``);
- statistics alone: the sufficient statistics from the state just updated, without an
  update (the floor of a daily run that reads a per-unit table of all units).

Both include the units, caps (99.9th percentile), CUPED and the hurdle statistics of the
sample's metrics, and closing the connection (the state's commit and checkpoint); the results
are checked equal (1e-9 relative).

Then, interleaved, the whole readout a scheduled job runs (``Experiment.from_source(...,
incremental=state).analyze(segments=["device"])``: the state's update, the checks, the overall,
segment and per-day statistics, the tests and the decision) against the same without a state;
their per-day series are checked equal.

    .venv/bin/python benchmarks/bench_incremental.py [--users 1000000] [--repeat 3]
        [--activity 1] [--no-readout]

``--activity`` multiplies every user's session rate (and so the events per user) in the
generated sample: 1 is the sample's ~12 events per user over the 28 days.

Data goes to ``$WORKBENCH_BENCH_DIR`` (default ``/tmp/workbench_bench``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import duckdb
import numpy as np

START = dt.datetime(2026, 10, 5)
DAY14 = START + dt.timedelta(days=13)  # midnight starting day 14


def _prepare(source: Path, work: Path) -> None:
    if work.exists():
        work.unlink()
    with duckdb.connect(str(work)) as con:
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        for t in ("users", "experiments"):
            con.execute(f"CREATE TABLE {t} AS SELECT * FROM src.{t}")
        con.execute(f"CREATE TABLE assignments AS SELECT * FROM src.assignments "
                    f"WHERE assigned_at < '{DAY14}' ORDER BY assigned_at")
        con.execute(f"CREATE TABLE events AS SELECT * FROM src.events "
                    f"WHERE event_time < '{DAY14}' ORDER BY event_time")


def _append_day14(source: Path, work: Path) -> None:
    with duckdb.connect(str(work)) as con:
        con.execute(f"ATTACH '{source}' AS src (READ_ONLY)")
        con.execute(f"INSERT INTO assignments SELECT * FROM src.assignments "
                    f"WHERE assigned_at >= '{DAY14}' ORDER BY assigned_at")
        con.execute(f"INSERT INTO events SELECT * FROM src.events "
                    f"WHERE event_time >= '{DAY14}' ORDER BY event_time")


def _open(work: Path, **kw):
    import workbench as wb

    exp = wb.Experiment.from_source(work, "checkout_redesign")
    exp.con.raw_sql("SET enable_progress_bar = false")
    return exp


def _stats_only(work: Path, state: Path) -> float:
    """The floor of a daily run: the statistics from an up-to-date state, no update (the
    state's units and ``unit_table`` read as the daily run reads them)."""
    from workbench.metrics.incremental import IncrementalState

    exp = _open(work)
    t = time.perf_counter()
    st = IncrementalState(state)
    st._attach(exp.compiler)
    st.manifest = st._read_manifest()
    exp.compiler._units = st._units(exp.compiler)
    exp.compiler.per_unit = st.per_unit
    exp.compiler.sufficient_stats()
    exp.con.disconnect()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lookback-days", type=int, default=2)
    ap.add_argument("--activity", type=float, default=1.0)
    ap.add_argument("--no-readout", action="store_true")
    args = ap.parse_args()
    from workbench.data.sample import generate
    from workbench.metrics import incremental

    base = Path(os.environ.get("WORKBENCH_BENCH_DIR", "/tmp/workbench_bench"))
    base.mkdir(parents=True, exist_ok=True)
    tag = "" if args.activity == 1 else f"_x{args.activity:g}"
    source = base / f"incremental_{args.users}{tag}.duckdb"
    if not source.exists():
        t = time.perf_counter()
        generate(source, seed=7, n_users=args.users, activity=args.activity, progress=False)
        print(f"generated {args.users} users in {time.perf_counter() - t:.0f} s")
    work, state, saved = (base / "incremental_work.duckdb", base / "incremental_state.duckdb",
                          base / "incremental_state_day13.duckdb")
    _prepare(source, work)
    for p in (state, saved):
        if p.exists():
            p.unlink()
    warnings.simplefilter("ignore")
    exp = _open(work)
    t = time.perf_counter()
    incremental.attach(exp.compiler, state, lookback_days=args.lookback_days)
    exp.compiler.sufficient_stats()
    build = time.perf_counter() - t
    exp.con.disconnect()
    shutil.copy(state, saved)
    _append_day14(source, work)
    with duckdb.connect(str(work), read_only=True) as con:
        n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
        n_new = con.execute(f"SELECT count(*) FROM events WHERE event_time >= '{DAY14}'"
                            ).fetchone()[0]

    daily, full, floor, results = [], [], [], {}
    for _ in range(args.repeat):
        shutil.copy(saved, state)
        exp = _open(work)
        t = time.perf_counter()
        up = incremental.attach(exp.compiler, state, lookback_days=args.lookback_days)
        results["daily"] = exp.compiler.sufficient_stats()
        exp.con.disconnect()  # timed: closing the state file may checkpoint it
        daily.append(time.perf_counter() - t)
        assert not up.rebuilt, up.reason
        floor.append(_stats_only(work, state))
        exp = _open(work)
        t = time.perf_counter()
        results["full"] = exp.compiler.sufficient_stats()
        exp.con.disconnect()
        full.append(time.perf_counter() - t)
    a = results["full"].select_dtypes("number").to_numpy(float)
    b = results["daily"].select_dtypes("number").to_numpy(float)
    ok = ~np.isnan(a)
    rel = float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-300)))
    md, mf, mo = (statistics.median(x) for x in (daily, full, floor))
    print(f"users {args.users}, events {n_events} ({n_new} on day 14), lookback "
          f"{args.lookback_days} days, state {state.stat().st_size / 2**20:.0f} MiB")
    print(f"state build through day 13 (first run, incl. statistics): {build:.2f} s")
    print(f"daily run (day 14 given day 13): median {md:.2f} s  {[round(x, 2) for x in daily]}")
    print(f"full recompute:                  median {mf:.2f} s  {[round(x, 2) for x in full]}")
    print(f"statistics alone from the state: median {mo:.2f} s  {[round(x, 2) for x in floor]}")
    print(f"ratio daily / full: {md / mf:.3f} (target <= 0.2); statistics alone / full: "
          f"{mo / mf:.3f}; max relative difference {rel:.2e}")
    pairs = [d / f for d, f in zip(daily, full)]  # each repeat's daily and full run back to back
    print(f"ratio per repeat: median {statistics.median(pairs):.3f}  "
          f"{[round(x, 2) for x in pairs]}")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.no_readout:
        return
    inc, whole = [], []
    for _ in range(args.repeat):
        shutil.copy(saved, state)
        t, a = _readout(work, state)
        inc.append(t)
        t, b = _readout(work)
        whole.append(t)
        x, y = (f.select_dtypes("number").to_numpy(float) for f in (a, b))
        assert a.shape == b.shape and np.allclose(x, y, rtol=1e-9, equal_nan=True)
    mi, mw = statistics.median(inc), statistics.median(whole)
    pairs = [i / w for i, w in zip(inc, whole)]
    print(f"readout with the state:    median {mi:.2f} s  {[round(x, 2) for x in inc]}")
    print(f"readout without:           median {mw:.2f} s  {[round(x, 2) for x in whole]}")
    print(f"ratio: {mi / mw:.3f}; per repeat median {statistics.median(pairs):.3f}  "
          f"{[round(x, 2) for x in pairs]} (per-day series equal)")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


def _readout(work: Path, state: Path | None = None):
    """The readout a scheduled job runs, with or without the incremental state: its time and
    its per-day series."""
    import workbench as wb

    t = time.perf_counter()
    exp = wb.Experiment.from_source(work, "checkout_redesign", incremental=state)
    exp.analyze(segments=["device"])
    daily = exp.sufficient_stats(by_day=True)
    exp.con.disconnect()
    return time.perf_counter() - t, daily


if __name__ == "__main__":
    main()
