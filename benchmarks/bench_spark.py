"""Spark Connect benchmark: the full readout (validation, CUPED, caps, per-day series) of the
sample at 1M users on a Spark Connect server (local[2], its own JVM, on this machine) against
the same readout on DuckDB. Ratio only: both engines share this machine's 2 cores.

    .venv/bin/python benchmarks/bench_spark.py [--users 1000000] [--repeat 2]

The sample is generated once into ``$WORKBENCH_BENCH_DIR`` (default ``/tmp/workbench_bench``,
the same file as bench_readout.py), copied to parquet and registered in the server as
persistent tables. The server is $WORKBENCH_SPARK_CONNECT if set, else one started (and
stopped) here by ``.ci/spark_connect.sh``. Each engine runs in its own process (a Connect
session switches PySpark to Connect mode for its process): the first readout is the cold one,
then ``--repeat`` warm ones; the ratio is of the warm medians. The two results are checked
to agree to 1e-9 relative first.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("assignments", "events", "users", "experiments")


def one(source: str, repeat: int, out: str) -> None:
    """Time ``repeat + 1`` readouts of ``source`` in this process; print times as JSON."""
    import warnings

    from workbench.readout.experiment import Experiment

    times, result = [], None
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exp = Experiment.from_source(source)
            result = exp.analyze()
        times.append(time.perf_counter() - t0)
    result.to_frame().to_parquet(out, index=False)
    print(json.dumps({"times": times}))


def load(url: str, folder: Path) -> None:
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(url).getOrCreate()
    for t in TABLES:
        session.sql(f"DROP TABLE IF EXISTS {t}")
        session.sql(f"CREATE TABLE {t} USING parquet LOCATION '{folder / t}.parquet'")


def _run_one(source: str, repeat: int, out: Path) -> list[float]:
    res = subprocess.run([sys.executable, __file__, "--one", source, "--repeat", str(repeat),
                          "--out", str(out)], capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"readout on {source} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])["times"]


def _check(a: Path, b: Path) -> float:
    import numpy as np
    import pandas as pd

    x = pd.read_parquet(a).sort_values(["metric", "variant"]).reset_index(drop=True)
    y = pd.read_parquet(b).sort_values(["metric", "variant"]).reset_index(drop=True)
    num = [c for c in x.columns if pd.api.types.is_float_dtype(x[c])]
    u, v = x[num].to_numpy(float), y[num].to_numpy(float)
    assert (np.isnan(u) == np.isnan(v)).all() and (x["verdict"] == y["verdict"]).all()
    ok = ~np.isnan(u) & (u != v)  # equal values (infinities too) differ by 0
    if not ok.any():
        return 0.0
    rel = np.abs(u[ok] - v[ok]) / np.maximum(np.abs(u[ok]), 1e-300)
    return float(rel.max())


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--path", default=None,
                   help="an existing sample DuckDB file (e.g. bench_scale.py's) instead")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--load", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        load(args.load, Path(args.out))
        return
    if args.one:
        one(args.one, args.repeat, args.out)
        return
    import duckdb

    bench_dir = Path(os.environ.get("WORKBENCH_BENCH_DIR", "/tmp/workbench_bench"))
    path = Path(args.path) if args.path else bench_dir / f"readout_{args.users}.duckdb"
    if not path.exists():
        from workbench.data.sample import generate

        t0 = time.perf_counter()
        generate(path, seed=1, n_users=args.users, progress=False)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s")
    folder = bench_dir / f"{path.stem}_parquet"
    if not (folder / "experiments.parquet").exists():
        folder.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path), read_only=True)
        for t in TABLES:
            con.execute(f"COPY {t} TO '{folder / t}.parquet' (FORMAT parquet)")
        con.close()
    con = duckdb.connect(str(path), read_only=True)
    n_events = con.execute("SELECT count(*) FROM events").fetchone()[0]
    n_users = con.execute("SELECT count(DISTINCT user_id) FROM assignments").fetchone()[0]
    con.close()

    print(f"load average at start: {_load()}")
    url, state = os.environ.get("WORKBENCH_SPARK_CONNECT"), None
    script = ROOT / ".ci" / "spark_connect.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    if not url:
        state = tempfile.mkdtemp(prefix="bench_spark_connect_")
        t0 = time.perf_counter()
        url = subprocess.run(["bash", str(script), "start", state], capture_output=True,
                             text=True, check=True, env=env).stdout.strip().splitlines()[-1]
        print(f"started a Spark Connect server at {url} in {time.perf_counter() - t0:.0f} s")
    try:
        subprocess.run([sys.executable, __file__, "--load", url, "--out", str(folder)],
                       check=True)
        print(f"{n_users:,} users, {n_events:,} events; readout = validation + analyze() "
              "with the sample's metrics (CUPED, a percentile cap, per-day series)")
        with tempfile.TemporaryDirectory() as tmp:
            times = {"duckdb": _run_one(str(path), args.repeat, Path(tmp) / "duckdb.parquet"),
                     "spark_connect": _run_one(url, args.repeat, Path(tmp) / "sc.parquet")}
            rel = _check(Path(tmp) / "duckdb.parquet", Path(tmp) / "sc.parquet")
    finally:
        if state:
            subprocess.run(["bash", str(script), "stop", state], capture_output=True, env=env)
    print(f"load average at end: {_load()}")
    print(f"results agree: max relative difference {rel:.1e}, same verdicts")
    med = {}
    for name, t in times.items():
        med[name] = statistics.median(t[1:]) if len(t) > 1 else t[0]
        print(f"  {name:14s} cold {t[0]:7.2f} s   warm median {med[name]:7.2f} s  "
              f"(warm runs {', '.join(f'{x:.2f}' for x in t[1:])})")
    print(f"Spark Connect / DuckDB: {med['spark_connect'] / med['duckdb']:.1f}x warm, "
          f"{times['spark_connect'][0] / times['duckdb'][0]:.1f}x cold")


if __name__ == "__main__":
    main()
