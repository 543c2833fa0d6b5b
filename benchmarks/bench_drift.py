"""Drift verdicts on 1M rows x 20 numeric columns: workbench.drift.drift_table vs Evidently.

Evidently 0.7's ``Report([DataDriftPreset()])`` is what a user would otherwise run. Both get the
same two frames (reference and current, 1M rows each; half the columns shifted by 0.02-0.2 sd);
the script prints the median of drift_table's runs, Evidently's time for one run (it is slow),
the ratio, and checks that the per-column verdicts are the same.

    .venv/bin/python benchmarks/bench_drift.py [--rows 1000000] [--repeat 3] [--evidently-rows N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd


def frames(rows: int, columns: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({f"x{i:02d}": rng.normal(0, 1, rows) for i in range(columns)})
    # Columns x10..x19 shift by 0.02 .. 0.2 sd: around Evidently's 0.1 Wasserstein threshold.
    cur = pd.DataFrame({f"x{i:02d}": rng.normal(0.02 * (i - 9) if i >= 10 else 0.0, 1, rows)
                        for i in range(columns)})
    return ref, cur


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-rows", type=int, default=None,
                        help="run Evidently on this many rows instead (default: all)")
    args = parser.parse_args()

    from workbench.drift import drift_table

    ref, cur = frames(args.rows)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = drift_table(ref, cur)
        times.append(time.perf_counter() - t0)
    ours = statistics.median(times)
    print(f"drift_table  {args.rows:,} rows x 20 cols: median {ours:.2f} s over {args.repeat} runs "
          f"({', '.join(f'{t:.2f}' for t in times)})")

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from workbench.drift import snapshot_verdicts

    n_ev = args.evidently_rows or args.rows
    ev_ref, ev_cur = ref.iloc[:n_ev], cur.iloc[:n_ev]
    definition = DataDefinition(numerical_columns=list(ref.columns))
    t0 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(ev_cur, data_definition=definition),
        Dataset.from_pandas(ev_ref, data_definition=definition))
    theirs_t = time.perf_counter() - t0
    print(f"Evidently    {n_ev:,} rows x 20 cols: {theirs_t:.2f} s (one run)")
    theirs = snapshot_verdicts(snapshot).set_index("column")["drifted"].to_dict()
    if n_ev == args.rows:
        same = theirs == result.verdicts()
        print(f"ratio Evidently / drift_table: {theirs_t / ours:.1f}x; "
              f"same per-column verdicts: {same} ({sum(theirs.values())} of {len(theirs)} drifted)")
    else:
        sub = drift_table(ev_ref, ev_cur).verdicts()
        print(f"Evidently ran on {n_ev:,} rows; extrapolated to {args.rows:,}: "
              f"~{theirs_t * args.rows / n_ev:.0f} s (linear); same verdicts on that subset: "
              f"{sub == theirs}")


if __name__ == "__main__":
    main()
