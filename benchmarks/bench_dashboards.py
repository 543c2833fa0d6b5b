"""Decision-visible time of the experiment dashboard (Voilà) vs opening the run's HTML report.

A stakeholder either opens the dashboard (``workbench serve``: every page view gets a kernel,
preheated or started for it) or the static ``report.html`` that the run exported (code hidden).
Both are opened in the same headless Chromium (a fresh browser context per view: nothing
cached); the time is from navigation to the first frame the browser rendered with the decision
in the page's visible text (timed in the page, from an animation-frame callback: frames are not
rendered while render-blocking resources load). Also printed: the time until the page's load
event with the decision visible (Playwright's ``goto`` then the text; this bench's figure before
2026-12-04, which counted the whole ``voila.js`` bundle's load) and until the first widget.

Dashboard views come in a row: ``--views`` views (default 10), each ``--think`` seconds after the
previous one's page loaded with its decision visible (default 3 s, someone reading the headline
and opening the next link; the pace of this bench's series before the decision was timed at its
paint), starting with the pool full. Each server configuration gets one warm-up view (not counted:
OS caches) and a pool refill first. Configurations: ``workbench serve``'s defaults (a pool of
``server.POOL_SIZE`` preheated kernels for the experiment dashboard, refilled ``FILL_DELAY`` s
after a take, the newest run prepared in the waiting kernels); the former setting (a pool of one,
Voilà's 1 s refill delay); a pool of 5 (``pool5``, not run by default); no preheating
(``--no-preheat``, fewer views). Per configuration:
median, 95th percentile, max, and how many views got a preheated kernel (from Voilà's log).

    .venv/bin/python benchmarks/bench_dashboards.py [--users 20000] [--views 10] [--think 3]
        [--site DIR]   # reuse (or make, once) the logged run in DIR: the template run is slow

Needs Debian's chromium (``make browser-deps``) and Playwright (installed from the lock).
"""
from __future__ import annotations

import argparse
import json
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
PREHEATED = "Using pre-heated kernel"  # Voilà's log line when a view takes a pooled kernel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(base: Path, users: int) -> tuple[str, Path, str]:
    """A published readout run of the ab_test template with its report.html:
    (run id, report path, decision). Reused when ``base`` holds one (``made.json``)."""
    os.environ["WORKBENCH_REPORTS_DIR"] = str(base / "reports")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    made = base / "made.json"
    if made.exists():
        info = json.loads(made.read_text())
        return info["run_id"], Path(info["report"]), info["decision"]
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
    made.write_text(json.dumps({"run_id": run_id, "report": str(run_dir / "report.html"),
                                "decision": decision, "users": users}))
    return run_id, run_dir / "report.html", decision


def _loadavg() -> str:
    """The 1, 5 and 15 minute load averages (Linux), as ``cat /proc/loadavg`` shows them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--no-first-run"])


# Runs in the page before its own scripts: at each animation frame (frames are not rendered
# while render-blocking stylesheets or scripts load), whether the page's rendered text
# (``innerText``: nothing hidden) shows the decision; the first such frame's time, in ms since
# navigation started, is when the decision was painted; or the page's first contentful paint if
# that came later (a callback runs before its frame is rastered and shown: the first paint of
# report.html came 60-100 ms after the callback that found the decision).
_WATCH = """(wanted) => {
  wanted = wanted.replace(/\\s+/g, ' ');
  const frame = () => {
    const text = document.body ? document.body.innerText.replace(/\\s+/g, ' ') : '';
    if (text.includes(wanted)) { window.__decisionPainted = performance.now(); return; }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}"""


def _load(browser, url: str, decision: str,
          widgets: bool = False) -> tuple[float, float, float | None]:
    """One view (off-machine requests refused), in seconds from navigation: the decision painted
    (the browser's own clock, no polling), the page loaded with the decision visible (Playwright's
    ``goto`` + visible text: the measure before 2026-12-04) and, with ``widgets``, the first
    widget (a dropdown) visible (else None)."""
    context = browser.new_context()
    context.add_init_script(script=f"({_WATCH})({json.dumps(decision)})")
    page = context.new_page()
    page.route(lambda u: not (u.startswith("http://127.0.0.1") or u.startswith("file:")),
               lambda route: route.abort())
    t = time.perf_counter()
    page.goto(url, timeout=180_000, wait_until="commit")
    page.wait_for_function("window.__decisionPainted !== undefined && performance"
                           ".getEntriesByName('first-contentful-paint').length > 0",
                           polling="raf", timeout=180_000)
    painted = page.evaluate("""() => Math.max(window.__decisionPainted, ...performance
        .getEntriesByName('first-contentful-paint').map((paint) => paint.startTime))""") / 1000
    page.wait_for_load_state("load", timeout=180_000)
    page.get_by_text(decision).first.wait_for(timeout=180_000)
    loaded, shown = time.perf_counter() - t, None
    if widgets:
        page.locator(".widget-dropdown").first.wait_for(timeout=180_000)
        shown = time.perf_counter() - t
    context.close()
    return painted, loaded, shown


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate() and time.perf_counter() < deadline:
        time.sleep(0.1)


def time_dashboard(browser, base: Path, run_id: str, decision: str, views: int, think: float,
                   name: str, **options) -> tuple[float, list[float], int, list[float],
                                                  list[float]]:
    """(server start seconds, decision-painted times, views that got a preheated kernel, times
    until the page loaded with the decision visible, times until the widgets showed) of
    ``views`` views in a row of the experiment dashboard served by Voilà with ``options``
    (:func:`workbench.dashboards.server.start_server`'s)."""
    from workbench.dashboards import server as dashboards

    port = _free_port()
    log = base / f"voila-{name}.log"
    preheat = options.get("preheat", True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        server = dashboards.start_server(dashboards.dashboard_target("experiment"), port=port,
                                         config_dir=base / f"config-{name}", stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         **options)
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
        url = f"http://127.0.0.1:{port}/?run={run_id}"

        def filled(n: int) -> bool:  # Voilà logs it each time a pool (re)filled
            return log.read_text().count("is filled with") >= n

        if preheat:
            _wait_for(lambda: filled(1), 300)
        _load(browser, url, decision)  # warm-up: OS caches, Chromium's first page
        if preheat:
            _wait_for(lambda: filled(2), 300)  # the series starts with the pool full
            time.sleep(2)
        used = log.read_text().count(PREHEATED)
        times, loaded, shown = [], [], []
        for i in range(views):
            if i:  # `think` s after the previous page loaded (its widgets were waited for)
                time.sleep(max(0.0, think - (shown[-1] - loaded[-1])))
            painted, complete, drawn = _load(browser, url, decision, widgets=True)
            times.append(painted)
            loaded.append(complete)
            shown.append(drawn)
        return start, times, log.read_text().count(PREHEATED) - used, loaded, shown
    finally:
        dashboards.stop_server(server)


def p95(values: list[float]) -> float:
    """The 95th percentile, linear between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = 0.95 * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main() -> int:
    from workbench.dashboards import server as dashboards

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--think", type=float, default=3.0)
    parser.add_argument("--cold-views", type=int, default=3)
    parser.add_argument("--site", type=Path, default=None,
                        help="folder holding (or to hold) the logged run, reused across runs, "
                        "and the servers' logs (voila-<config>.log)")
    parser.add_argument("--configs", nargs="+", default=["default", "pool1", "cold"],
                        choices=["default", "pool1", "pool5", "cold"], help="server configurations")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("Debian chromium missing: run `make browser-deps`")
    from playwright.sync_api import sync_playwright

    configs = [
        (f"pool of {dashboards.POOL_SIZE}, refill after {dashboards.FILL_DELAY:g} s (default)",
         "default", args.views, {}),
        ("pool of 1, refill after 1 s (before)", "pool1", args.views,
         {"pool_size": 1, "fill_delay": 1.0}),
        (f"pool of 5, refill after {dashboards.FILL_DELAY:g} s", "pool5", args.views,
         {"pool_size": 5}),
        ("no preheating (--no-preheat)", "cold", args.cold_views, {"preheat": False}),
    ]
    configs = [c for c in configs if c[1] in args.configs]
    with tempfile.TemporaryDirectory(prefix="bench-dashboards-") as tmp:
        base = Path(tmp)
        site = args.site or base
        site.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        run_id, report, decision = make_run(site, args.users)
        print(f"run {run_id[:8]} ready in {time.perf_counter() - t0:.1f} s; "
              f"decision: {decision!r}; report.html {report.stat().st_size / 1e6:.1f} MB",
              flush=True)
        results = {}
        print(f"load average at the start: {_loadavg()}", flush=True)
        with sync_playwright() as p:
            browser = _launch(p)
            report_loads = [_load(browser, report.as_uri(), decision)
                            for _ in range(args.views + 1)][1:]
            report_times = [painted for painted, _, _ in report_loads]
            for label, name, views, options in configs:
                results[label] = time_dashboard(browser, site, run_id, decision, views,
                                                args.think, name, **options)
                print(f"{label}: painted {', '.join(f'{t:.2f}' for t in results[label][1])}; "
                      f"loaded {', '.join(f'{t:.2f}' for t in results[label][3])}", flush=True)
            browser.close()
    print(f"load average at the end: {_loadavg()}")
    rep = statistics.median(report_times)

    def row(label, values):
        return (f"{label:<48} median {statistics.median(values):5.2f} s  p95 {p95(values):5.2f} s"
                f"  max {max(values):5.2f} s")

    print(f"views in a row, {args.think:g} s apart; decision painted (s):")
    print(row("report.html", report_times))
    print(row("  the same, page loaded and decision visible", [t for _, t, _ in report_loads]))
    for label, (start, times, pooled, loaded, shown) in results.items():
        print(row(f"dashboard, {label}", times)
              + f"  ratio to report {statistics.median(times) / rep:.1f}x"
              + f"  preheated kernels {pooled}/{len(times)}  server start {start:.1f} s")
        print(row("  the same views, page loaded and decision visible", loaded))
        print(row("  the same views, widgets shown", shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
