"""What a preheated dashboard kernel does before its viewer arrives, and the kernel pools.

Functional only (the times are benchmarks/bench_dashboards.py's): a prepared kernel shows the
newest run without reading or drawing anything more, shows the same pictures a fresh kernel
draws, and reads a run again once its folder changed; the pools leave room for viewers.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from workbench.dashboards import catalogue, server, widgets
from workbench.dashboards.widgets import ExperimentDashboard


def _images(widget) -> list[bytes]:
    found = [widget.value] if widget.__class__.__name__ == "Image" else []
    for child in getattr(widget, "children", ()):
        found += _images(child)
    return found


@pytest.fixture
def fresh_caches(monkeypatch):
    monkeypatch.setattr(widgets, "_LOADED", {})
    monkeypatch.setattr(widgets, "_PNGS", {})


def test_a_prepared_kernel_reads_and_draws_nothing_for_the_newest_run(runs_env, fresh_caches,
                                                                      monkeypatch):
    # the pictures a kernel without any preparation draws
    drawn = _images(ExperimentDashboard(query_string="").widget)
    assert len(drawn) == 3  # forest, cumulative lift, segments
    monkeypatch.setattr(widgets, "_LOADED", {})
    monkeypatch.setattr(widgets, "_PNGS", {})
    ExperimentDashboard.prepare(published_only=True)
    assert len(widgets._PNGS) == 3

    def refuse(*args, **kwargs):
        raise AssertionError("read or drawn after the viewer arrived")

    monkeypatch.setattr(widgets, "_figure_png", refuse)
    monkeypatch.setattr(widgets, "load_run", refuse)
    dash = ExperimentDashboard(query_string="")
    assert dash.run.run_id == runs_env.latest
    shown = _images(dash.widget)
    assert shown == drawn  # the same pictures, byte for byte
    decision = runs_env.results[runs_env.latest].decision
    assert widgets.esc(decision) in dash.widget.children[3].children[0].value


def test_another_run_or_metric_is_read_and_drawn_when_asked(runs_env, fresh_caches):
    ExperimentDashboard.prepare(published_only=True)
    prepared = set(widgets._PNGS)
    assert runs_env.frequentist != runs_env.latest
    dash = ExperimentDashboard(query_string=f"run={runs_env.frequentist}")
    assert dash.run.run_id == runs_env.frequentist
    assert len(_images(dash.widget)) == 3
    assert len(widgets._PNGS) == len(prepared) + 3
    metrics = list(dash.metric_select.options)
    dash.metric_select.value = metrics[-1]
    assert len(_images(dash.widget)) == 3 and len(widgets._PNGS) == len(prepared) + 5


def test_a_rewritten_run_is_read_again(runs_env, fresh_caches):
    runs = catalogue.list_runs(published_only=True)
    first = widgets.cached_run(runs_env.latest, runs)
    assert widgets.cached_run(runs_env.latest, runs).tables is first.tables  # read once
    run_json = first.record.path / "run.json"
    stat = run_json.stat()
    os.utime(run_json, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    try:
        again = widgets.cached_run(runs_env.latest, catalogue.list_runs(published_only=True))
    finally:
        os.utime(run_json, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert again.tables is not first.tables
    assert set(again.tables) == set(first.tables)


def test_prepare_without_runs_does_nothing(tmp_path, monkeypatch, fresh_caches):
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    ExperimentDashboard.prepare(published_only=True)
    assert widgets._PNGS == {} and widgets._LOADED == {}


def test_the_pools_leave_half_the_slots_to_viewers():
    config = server.voila_config()
    pools = config["VoilaKernelManager"]["kernel_pools_config"]
    assert pools == {"default": {"pool_size": 1},
                     server.POOLED_DASHBOARD: {"pool_size": server.POOL_SIZE}}
    assert config["VoilaKernelManager"]["fill_delay"] == server.FILL_DELAY
    preheated = server.POOL_SIZE + len(server.DASHBOARDS) - 1
    assert preheated <= server.MAX_KERNELS // 2
    assert server.pool_sizes(max_kernels=3) == {"default": 1, server.POOLED_DASHBOARD: 1}
    assert server.pool_sizes(max_kernels=8, pool_size=2)[server.POOLED_DASHBOARD] == 2
    assert "VoilaKernelManager" not in server.voila_config(preheat=False)
    assert server.POOLED_DASHBOARD == server.DASHBOARDS["experiment"]


def test_a_dashboard_kernel_imports_none_of_the_analysis_stack(runs_env):
    """What a kernel imports before its viewer sees the page is the kernel's start-up time: the
    readout's engine and statistics (scipy alone was ~0.3-0.65 s of it) stay out."""
    code = ("import sys; from workbench.dashboards import widgets; "
            "widgets.ExperimentDashboard.prepare(published_only=True); "
            "widgets.ExperimentDashboard(query_string='').widget; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "ipywidgets" in loaded and "workbench" in loaded  # the page was built
    heavy = {"scipy", "statsmodels", "ibis", "duckdb", "mlflow", "sklearn", "pymc", "shap",
             "xgboost", "evidently"}
    assert not loaded & heavy, sorted(loaded & heavy)
