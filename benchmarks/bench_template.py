"""The scheduled ``ab_test`` template: first run ever (empty caches), then warm runs.

Each run is ``workbench run ab_test -p experiment_id checkout_redesign`` in a new process (wall
clock end to end, kernel start and PyMC included) on the 200k-user sample written into a temp
folder, with its own empty cache folder (``WORKBENCH_CACHE``: PyTensor's compile dir, numba's
cache, the compiled-model entries), reports folder and MLflow store. Per-cell times are
papermill's (``metadata.papermill.duration`` of the executed notebook). The floor is the target:
20 s for a warm run.

    .venv/bin/python benchmarks/bench_template.py [--repeat 3] [--users 200000] [--keep DIR]
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
TARGET_S = 20.0


def _cli(*args, env) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"workbench {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def _cells(reports: Path) -> list[tuple[str, float]]:
    """(first source line, seconds) of each code cell of the newest executed notebook."""
    newest = max(reports.rglob("notebook.ipynb"), key=lambda p: p.stat().st_mtime)
    cells = json.loads(newest.read_text())["cells"]
    out = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        first = next((line.strip() for line in "".join(cell["source"]).splitlines()
                      if line.strip() and not line.startswith("#")), "")
        out.append((first[:60], float(cell["metadata"].get("papermill", {}).get("duration") or 0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm runs (median)")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--keep", default=None, help="work folder to keep (default: a temp one)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_template_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env.update(WORKBENCH_ROOT=str(ROOT), WORKBENCH_CACHE=str(work / "cache"),
               WORKBENCH_WAREHOUSE=str(work / "warehouse.duckdb"),
               WORKBENCH_REPORTS_DIR=str(work / "reports"),
               MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}", MPLBACKEND="Agg")
    if not (work / "warehouse.duckdb").exists():
        _cli("sample-data", "--users", str(args.users), "--out", str(work / "warehouse.duckdb"),
             env=env)
    run = ("run", "ab_test", "-p", "experiment_id", "checkout_redesign")
    print(f"load: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} cores; work folder {work}")
    first = _cli(*run, env=env)
    first_cells = _cells(work / "reports")
    print(f"first run ever (empty caches): {first:.1f} s wall", flush=True)
    warm, warm_cells = [], []
    for _ in range(args.repeat):
        warm.append(_cli(*run, env=env))
        warm_cells.append(_cells(work / "reports"))
        print(f"  warm run: {warm[-1]:.1f} s wall", flush=True)
    median = statistics.median(warm)
    print(f"warm runs (new process each, median of {len(warm)}): {median:.1f} s wall; "
          f"target {TARGET_S:.0f} s: ratio {median / TARGET_S:.2f} ({'met' if median <= TARGET_S else 'missed'})")
    print("\ncell                                                          first   warm (median)")
    for i, (label, seconds) in enumerate(first_cells):
        warm_i = statistics.median(c[i][1] for c in warm_cells)
        print(f"{label:60s} {seconds:7.1f} {warm_i:9.1f}")
    first_sum = sum(s for _, s in first_cells)
    warm_sums = [sum(s for _, s in c) for c in warm_cells]
    print(f"{'sum of cells':60s} {first_sum:7.1f} {statistics.median(warm_sums):9.1f}")
    # CLI and imports, notebook read, MLflow run, kernel start, HTML export, push to MLflow
    print(f"{'outside the cells (wall - sum of cells)':60s} {first - first_sum:7.1f} "
          f"{statistics.median(w - c for w, c in zip(warm, warm_sums)):9.1f}")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
