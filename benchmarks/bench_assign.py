"""Assignment benchmark: 10M integer ids, three arms, traffic 50 %, in a namespace slice.

Contenders (medians of ``--repeat``; each counts the units per variant, nothing else leaves
the engine):

- ``duckdb (ibis)``: :func:`workbench.data.assignment.variants_table` compiled by Ibis and run
  by DuckDB on a table of the ids (what ``workbench assign`` runs);
- ``numpy``: :func:`workbench.data.assignment.variants_numpy` on an int64 array in memory;
- ``duckdb hash() floor``: a hand-written DuckDB query with DuckDB's native ``hash()`` (64-bit,
  C++, not reproducible on Spark or numpy): the fastest a hash assignment can be in DuckDB.

The script checks that the Ibis and numpy counts are identical.

    .venv/bin/python benchmarks/bench_assign.py [--ids 10000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import ibis
import numpy as np
import pandas as pd

from workbench.data.assignment import Namespace, variants_numpy, variants_table

WEIGHTS = {"control": 0.5, "a": 0.25, "b": 0.25}
NS = Namespace("bench", {"exp": (0.0, 0.8)})
KW = dict(traffic=0.5, namespace=NS)


def timed(fn, repeat):
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.ids
    con = ibis.duckdb.connect()
    con.raw_sql(f"CREATE TABLE ids AS SELECT range::BIGINT AS user_id FROM range({n})")
    t = variants_table(con.table("ids"), "exp", WEIGHTS, 1, **KW)
    expr = t.group_by("variant").aggregate(n=t.user_id.count())

    t0 = time.perf_counter()
    sql = ibis.to_sql(expr, dialect="duckdb")  # Ibis compiles once (pure Python, timed apart)
    compile_s = time.perf_counter() - t0

    def engine():
        return pd.Series(dict(con.con.execute(sql).fetchall()))

    ids = np.arange(n, dtype=np.int64)

    def numpy():
        return pd.Series(variants_numpy(ids, "exp", WEIGHTS, 1, **KW)).value_counts(dropna=False)

    floor_sql = (
        "SELECT CASE WHEN hash(user_id, 'exp-in') % 1000000 >= 400000 THEN NULL "
        "WHEN hash(user_id, 'exp-arm') % 1000000 < 500000 THEN 'control' "
        "WHEN hash(user_id, 'exp-arm') % 1000000 < 750000 THEN 'a' ELSE 'b' END AS variant, "
        "count(*) AS n FROM ids WHERE hash(user_id, 'bench') % 1000000 < 800000 GROUP BY 1")

    def floor():
        return con.con.execute(floor_sql).fetchall()

    got_e, te = timed(engine, args.repeat)
    got_n, tn = timed(numpy, args.repeat)
    _, tf = timed(floor, args.repeat)
    e = got_e.dropna() if hasattr(got_e, "dropna") else got_e
    want = got_n.drop(index=[k for k in got_n.index if pd.isna(k)])
    same = {str(k): int(v) for k, v in e.items() if pd.notna(k)} == \
        {str(k): int(v) for k, v in want.items()}
    print(f"{n:,} ids, weights {WEIGHTS}, traffic 0.5, namespace slice [0, 0.8)")
    print(f"counts (ibis == numpy: {same}): {dict(want)}; Ibis compile {compile_s:.2f} s")
    floor_m = statistics.median(tf)
    for name, ts in (("duckdb (ibis)", te), ("numpy", tn), ("duckdb hash() floor", tf)):
        m = statistics.median(ts)
        print(f"{name:22s} median {m:7.2f} s  ({', '.join(f'{x:.2f}' for x in ts)})  "
              f"ratio to floor {m / floor_m:5.1f}x  {n / m / 1e6:6.1f} M ids/s")


if __name__ == "__main__":
    main()
