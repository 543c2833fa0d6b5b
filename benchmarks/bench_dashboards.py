"""Page load of the experiment dashboard (Voilà) vs opening the run's executed HTML report.

A stakeholder either opens the dashboard (``workbench serve``: every page view starts a kernel,
which reads the run's logged tables and draws the figures) or the static ``report.html`` that the
run exported (code hidden). Both are opened in the same headless Chromium; the time is from
navigation to the decision text being visible. Medians of 5 loads each, and their ratio.

    .venv/bin/python benchmarks/bench_dashboards.py [--users 20000] [--loads 5]

Needs Debian's chromium (``make browser-deps``) and Playwright (installed from the lock).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
EXPERIMENT = "checkout_redesign"
THINK_TIME = 10  # seconds between a pool refill and the next preheated view


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(base: Path, users: int) -> tuple[str, Path, str]:
    """A published readout run of the ab_test template with its report.html:
    (run id, report path, decision)."""
    os.environ["WORKBENCH_REPORTS_DIR"] = str(base / "reports")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    from workbench import runner
    from workbench.dashboards import catalogue
    from workbench.data.sample import generate

    warehouse = base / "warehouse.duckdb"
    generate(warehouse, seed=11, n_users=users, progress=False)
    # the real thing: the template run a scheduler would do
    result = runner.run_template("ab_test", {"source": str(warehouse),
                                             "experiment_id": EXPERIMENT}, progress=False)
    if not result.ok:
        sys.exit(f"template run failed: {result.message}")
    run_dir, run_id = result.run_dir, result.mlflow_run_id
    catalogue.publish(run_id)
    decision = catalogue.load_run(run_id).summary["decision"]
    return run_id, run_dir / "report.html", decision


def _launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--no-first-run"])


def _load(browser, url: str, decision: str) -> float:
    """Seconds from navigation to the decision text being visible (off-machine requests refused)."""
    context = browser.new_context()
    page = context.new_page()
    page.route(lambda u: not (u.startswith("http://127.0.0.1") or u.startswith("file:")),
               lambda route: route.abort())
    t = time.perf_counter()
    page.goto(url, timeout=180_000)
    page.get_by_text(decision).first.wait_for(timeout=180_000)
    elapsed = time.perf_counter() - t
    context.close()
    return elapsed


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate() and time.perf_counter() < deadline:
        time.sleep(0.1)


def time_dashboard(browser, base: Path, run_id: str, decision: str, loads: int,
                   preheat: bool) -> tuple[float, list[float]]:
    """(server start seconds, load times) of the experiment dashboard served by Voilà."""
    from workbench.dashboards import server as dashboards

    port = _free_port()
    log = base / f"voila-{preheat}.log"
    t0 = time.perf_counter()
    with open(log, "w") as out:
        server = dashboards.start_server(dashboards.dashboard_target("experiment"), port=port,
                                      config_dir=base / f"config-{preheat}", preheat=preheat,
                                      stdout=out, stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.perf_counter() - t0 > 120:
                    sys.exit("Voilà did not start:\n" + log.read_text())
                time.sleep(0.05)
        start = time.perf_counter() - t0
        times = []
        for i in range(loads + 1):  # the first load warms the OS caches: not counted
            if preheat:
                # a viewer arriving once the pool refilled and its kernel finished importing
                # (views are not back to back): pool refilled, then a think time
                _wait_for(lambda i=i: log.read_text().count("is filled with") > i, 120)
                time.sleep(THINK_TIME)
            elapsed = _load(browser, f"http://127.0.0.1:{port}/?run={run_id}", decision)
            if i:
                times.append(elapsed)
        return start, times
    finally:
        server.terminate()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("Debian chromium missing: run `make browser-deps`")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-dashboards-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        run_id, report, decision = make_run(base, args.users)
        print(f"run {run_id[:8]} logged in {time.perf_counter() - t0:.1f} s; "
              f"decision: {decision!r}; report.html {report.stat().st_size / 1e6:.1f} MB")
        with sync_playwright() as p:
            browser = _launch(p)
            report_times = [_load(browser, report.as_uri(), decision)
                            for _ in range(args.loads + 1)][1:]
            results = {mode: time_dashboard(browser, base, run_id, decision, args.loads,
                                            preheat=mode == "preheated")
                       for mode in ("preheated", "cold")}
            browser.close()
    rep = statistics.median(report_times)

    def row(label, values):
        return (f"{label:<40} {statistics.median(values):6.2f} s  "
                f"[{', '.join(f'{t:.2f}' for t in values)}]")

    print(row("report.html, decision visible", report_times))
    for mode, (start, times) in results.items():
        print(f"Voilà server start ({mode}):".ljust(41) + f"{start:6.2f} s")
        print(row(f"dashboard ({mode}), decision visible", times)
              + f"  ratio to report {statistics.median(times) / rep:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
