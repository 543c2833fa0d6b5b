"""The logging API notebooks call: ``tracking.log_table(frame, "results")`` and friends.

Each function writes to the current run: the innermost ``with start_run(...)`` of this
process, else the run whose folder is in the ``WORKBENCH_RUN_DIR`` environment variable (set
by the runner for its kernel). With neither they print a notice once and do nothing, so a
template also runs by hand.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench.tracking import run as _run
from workbench.tracking import store

_ATTACHED: dict[str, _run.Run] = {}
_NOTICE_SHOWN = False


def current_run() -> _run.Run | None:
    """The run that ``log_*`` writes to: the innermost :func:`start_run` of this process, else
    the run in ``WORKBENCH_RUN_DIR`` (a kernel started by the runner), else None."""
    if _run.ACTIVE:
        return _run.ACTIVE[-1]
    run_dir = os.environ.get(store.ENV_RUN_DIR)
    if run_dir and (Path(run_dir) / store.RUN_JSON).exists():
        return _ATTACHED.setdefault(run_dir, _run.Run(run_dir, owner=False))
    return None


def _current(what: str) -> _run.Run | None:
    global _NOTICE_SHOWN
    run = current_run()
    if run is None and not _NOTICE_SHOWN:
        _NOTICE_SHOWN = True
        print(f"workbench.tracking.{what}: not inside a run, nothing is logged (use "
              "`workbench run` or `with workbench.tracking.start_run(...)`)", file=sys.stderr)
    return run


def log_table(table: Any, name: str) -> Path | None:
    """Log a table to the current run (see :meth:`Run.log_table`); no-op outside a run."""
    run = _current("log_table")
    return run.log_table(table, name) if run else None


def log_figure(figure: Any, name: str, dpi: int = 110) -> Path | None:
    """Log a figure to the current run (see :meth:`Run.log_figure`); no-op outside a run."""
    run = _current("log_figure")
    return run.log_figure(figure, name, dpi=dpi) if run else None


def log_metrics(metrics: Mapping[str, Any]) -> dict[str, float] | None:
    """Log metrics to the current run (see :meth:`Run.log_metrics`); no-op outside a run."""
    run = _current("log_metrics")
    return run.log_metrics(metrics) if run else None


def log_params(params: Mapping[str, Any]) -> None:
    """Log extra parameters to the current run; no-op outside a run."""
    run = _current("log_params")
    if run:
        run.log_params(params)


def log_summary(summary: Mapping[str, Any]) -> None:
    """Log the run's headline (decision, SRM p-value...) for dashboards; no-op outside a run."""
    run = _current("log_summary")
    if run:
        run.log_summary(summary)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set MLflow tags on the current run; no-op outside a run."""
    run = _current("set_tags")
    if run:
        run.set_tags(tags)


def log_fingerprint(source: str | os.PathLike | None,
                    tables: list[str] | None = None) -> str | None:
    """Tag the current run with the input tables' fingerprint; no-op outside a run."""
    run = _current("log_fingerprint")
    return run.log_fingerprint(source, tables) if run else None


def artifact_path(filename: str) -> Path:
    """Where to write an extra file of the current run (``artifacts/<filename>``); outside a run,
    a path in a temporary folder (the file is then not logged)."""
    import tempfile

    run = _current("artifact_path")
    if run:
        return run.artifact_path(filename)
    return Path(tempfile.mkdtemp(prefix="workbench-")) / store.slug(filename)


def log_model(model: Any, name: str, input_example: Any) -> Path | None:
    """Log a fitted model as an MLflow model with signature (see :meth:`Run.log_model`)."""
    run = _current("log_model")
    return run.log_model(model, name, input_example) if run else None


def log_record(record: Any) -> None:
    """Log a readout record in one call: its tables, metrics, tags and summary.

    Parameters
    ----------
    record : ReadoutRecord
        Anything with ``tables`` (a mapping of name to DataFrame), ``metrics()``, ``tags()``
        and ``summary_dict()``, like :class:`workbench.readout.record.ReadoutRecord` (not
        imported here: tracking stays below the readout).
    """
    if _current("log_record") is None:
        return
    for name, frame in record.tables.items():
        log_table(frame, name)
    log_metrics(record.metrics())
    set_tags(record.tags())
    log_summary(record.summary_dict())
