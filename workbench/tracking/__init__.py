"""Tracking of runs: a folder per run first, MLflow when it answers.

A run is a folder ``reports/<template>/<name>/<YYYYmmddTHHMMSSZ>-<id[:8]>/`` plus (when the
tracking server answers) one MLflow run. Everything a notebook logs is written to the folder
first; the owner of the run (``workbench run``, or :func:`start_run` in JupyterLab) pushes the
folder to MLflow when the run ends. A run whose push failed stays in ``reports/`` with
``"synced": false`` in ``run.json`` and ``workbench sync`` pushes it later, so nothing is lost.

- :mod:`~workbench.tracking.store` - the run folder, ``run.json``, markers, stale runs.
- :mod:`~workbench.tracking.mlflow` - push, sync, tags, the SQLite lock.
- :mod:`~workbench.tracking.run` - the :class:`Run` handle, :func:`start_run`.
- :mod:`~workbench.tracking.notebook` - ``log_table``, ``log_record``... for notebooks.

This package knows nothing of papermill (the runner does) nor of the readout's maths.
"""
from __future__ import annotations

from workbench.tracking.mlflow import (
    MLFLOW_STATUS,
    push,
    recover_stale_runs,
    runs_with_tag,
    sanitize_metrics,
    sanitize_params,
    set_tag,
    sync,
    tracking_uri,
)
from workbench.tracking.notebook import (
    artifact_path,
    current_run,
    log_figure,
    log_fingerprint,
    log_metrics,
    log_model,
    log_params,
    log_record,
    log_summary,
    log_table,
    set_tags,
)
from workbench.tracking.run import Run, begin_run, start_run
from workbench.tracking.store import (
    DISK_FULL,
    ENV_RUN_DIR,
    FAILED,
    FINISHED,
    LOGGED_JSON,
    RUN_JSON,
    RUN_JSON_FIELDS,
    RUNNING,
    STATE_DIR,
    STOPPED,
    atomic_path,
    disk_full,
    error_cause,
    find_runs,
    git_commit,
    jsonable,
    read_run,
    resolve_run,
    run_ids,
    run_matches,
    slug,
)

__all__ = [
    "DISK_FULL", "atomic_path", "disk_full", "error_cause", "resolve_run", "run_ids",
    "run_matches",
    "ENV_RUN_DIR", "FAILED", "FINISHED", "LOGGED_JSON", "MLFLOW_STATUS", "RUNNING", "RUN_JSON",
    "RUN_JSON_FIELDS", "STATE_DIR", "STOPPED", "Run", "artifact_path", "begin_run",
    "current_run", "find_runs", "git_commit", "jsonable", "log_figure", "log_fingerprint",
    "log_metrics", "log_model", "log_params", "log_record", "log_summary", "log_table", "push",
    "read_run", "recover_stale_runs", "runs_with_tag", "sanitize_metrics", "sanitize_params",
    "set_tag", "set_tags", "slug", "start_run", "sync", "tracking_uri",
]
