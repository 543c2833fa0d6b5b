"""The catalogue of runs a dashboard may show, and publishing them.

Runs are read through :mod:`workbench.tracking` (its run folders and the MLflow tag
:data:`PUBLISHED_TAG`); a dashboard never recomputes an analysis. Whatever a viewer chooses (a
dropdown, the page's query string) is only ever matched against the runs that exist.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench import tracking
from workbench.config import get_settings
from workbench.errors import PublishError, WorkbenchError
from workbench.tracking.mlflow import sqlite_path

log = logging.getLogger(__name__)

PUBLISHED_TAG = "workbench.published"
# Set by ``workbench serve --all-runs`` for its kernels: offer unpublished runs too.
ALL_RUNS_ENV = "WORKBENCH_DASHBOARD_ALL_RUNS"
_RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunRecord:
    """One run folder, as described by its ``run.json``.

    Attributes
    ----------
    run_id : str
        The MLflow run id.
    template, name, status : str
        Template, run name and final status written by the runner.
    started_at, ended_at : str
        ISO timestamps (UTC).
    path : Path
        The run folder.
    parameters, summary : dict
        The run's parameters and the summary logged with ``log_summary``.
    tables, figures : tuple of str
        Names of the logged tables (``tables/<name>.parquet``) and figures (``figures/<name>.png``).
    published : bool
        Whether the MLflow tag :data:`PUBLISHED_TAG` is ``"true"``.
    experiment_name : str
        The MLflow experiment.
    """

    run_id: str
    template: str
    name: str
    status: str
    started_at: str
    ended_at: str
    path: Path
    parameters: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    tables: tuple = ()
    figures: tuple = ()
    published: bool = False
    experiment_name: str = ""

    @property
    def experiment(self) -> str:
        """What the run is about: its MLflow experiment, ``experiment_id`` parameter or name."""
        return str(self.experiment_name or self.parameters.get("experiment_id") or self.name
                   or self.template)

    @property
    def kind(self) -> str:
        """``"plan"`` for a run that logged an experiment plan (the ``plan`` template: its
        summary's ``kind``), else the template."""
        return str(self.summary.get("kind") or self.template)

    @property
    def planned_days(self) -> float | None:
        """A plan run's planned duration of its primary metric (as the plan logged it in its
        summary: ``primary_metric``, ``planned_days``); None for other runs."""
        value = self.summary.get("planned_days") if self.kind == "plan" else None
        return None if value is None else float(value)

    @property
    def label(self) -> str:
        """A short human label for dropdowns (a plan run says so, with its planned days)."""
        from workbench import format as fmt

        when = self.started_at.replace("T", " ")[:16] if self.started_at else "?"
        flag = "" if self.published else " (unpublished)"
        plan = (f" · plan: {fmt.days(self.planned_days)} planned" if self.kind == "plan"
                else "")
        return f"{when} · {self.name}{plan} · {self.status} · {self.run_id[:8]}{flag}"

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "template": self.template, "name": self.name,
                "experiment": self.experiment, "status": self.status,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "published": self.published, "path": str(self.path), "kind": self.kind,
                "planned_days": self.planned_days,
                "primary_metric": self.summary.get("primary_metric") if self.kind == "plan"
                else None}


@dataclass(frozen=True)
class LoadedRun:
    """A run with its logged outputs read back.

    Attributes
    ----------
    record : RunRecord
    tables : dict of str to DataFrame
        Every logged table, read from parquet.
    figures : dict of str to Path
        Every logged figure that exists on disk.
    """

    record: RunRecord
    tables: dict
    figures: dict

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def summary(self) -> dict:
        return self.record.summary

    def table(self, name: str):
        """The table ``name``, or None when the run did not log it."""
        return self.tables.get(name)


def _record(run_dir: Path, published: set[str]) -> RunRecord | None:
    try:
        meta = tracking.read_run(run_dir)
    except (OSError, ValueError) as exc:  # half-written or foreign file: skip, keep the others
        log.warning("skipping %s: %s", run_dir, exc)
        return None
    if not meta:
        return None
    run_id = str(meta.get("mlflow_run_id") or meta.get("run_id") or run_dir.name)
    tables = tuple(meta.get("tables") or sorted(p.stem for p in run_dir.glob("tables/*.parquet")))
    figures = tuple(meta.get("figures") or sorted(p.stem for p in run_dir.glob("figures/*.png")))
    return RunRecord(
        run_id=run_id,
        template=str(meta.get("template") or run_dir.parent.parent.name),
        name=str(meta.get("name") or run_dir.parent.name),
        status=str(meta.get("status") or "unknown"),
        started_at=str(meta.get("started_at") or ""),
        ended_at=str(meta.get("ended_at") or ""),
        path=run_dir,
        parameters=dict(meta.get("parameters") or {}),
        summary=dict(meta.get("summary") or {}),
        tables=tables,
        figures=figures,
        published=run_id in published,
        experiment_name=str(meta.get("experiment_name") or ""),
    )


def published_run_ids(tracking_uri: str | None = None) -> set[str]:
    """Ids of the runs whose MLflow tag :data:`PUBLISHED_TAG` is ``"true"``."""
    return set(tracking.runs_with_tag(PUBLISHED_TAG, "true",
                                      tracking_uri=tracking_uri or get_settings().tracking_uri))


def published_only_default() -> bool:
    """True unless ``workbench serve --all-runs`` started this kernel."""
    return os.environ.get(ALL_RUNS_ENV, "") != "1"


def list_runs(template: str | None = None, published_only: bool = False, *,
              reports_dir: str | Path | None = None,
              tracking_uri: str | None = None) -> list[RunRecord]:
    """Runs found under the reports folder, newest first.

    Parameters
    ----------
    template : str, optional
        Keep only runs of this template (e.g. ``"ab_test"``).
    published_only : bool
        Keep only runs tagged :data:`PUBLISHED_TAG` ``= "true"`` in MLflow.
    reports_dir, tracking_uri : optional
        Default to the settings (``WORKBENCH_REPORTS_DIR``, ``MLFLOW_TRACKING_URI``).
    """
    settings = get_settings()
    root = Path(reports_dir) if reports_dir is not None else settings.reports_dir
    published = published_run_ids(tracking_uri or settings.tracking_uri)
    records = []
    for run_dir in tracking.find_runs(root) if root.is_dir() else []:
        record = _record(run_dir, published)
        if record is None:
            continue
        if template is not None and record.template != template:
            continue
        if published_only and not record.published:
            continue
        records.append(record)
    # started_at has whole seconds: runs started in the same second go by when they were written
    records.sort(key=lambda r: (r.started_at, _mtime(r.path / _RUN_FILE)), reverse=True)
    return records


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_run(run_id: str, runs: list[RunRecord]) -> RunRecord | None:
    """The run among ``runs`` whose id is ``run_id`` or starts with it (at least 8 characters).

    Any id the run folder answers to counts (:func:`workbench.tracking.run_matches`): the
    MLflow id, and the local id in the folder's name of a run recorded offline, synced later.
    """
    run_id = (run_id or "").strip()
    if not run_id:
        return None
    exact = [r for r in runs if r.run_id == run_id]
    if exact:
        return exact[0]
    if len(run_id) < 8:
        return None
    matches = [r for r in runs if r.run_id.startswith(run_id)
               or tracking.run_matches(run_id, r.path)]
    return matches[0] if len(matches) == 1 else None


def load_run(run_id: str, *, reports_dir: str | Path | None = None,
             tracking_uri: str | None = None, runs: list[RunRecord] | None = None) -> LoadedRun:
    """Read a run's logged tables (parquet), figure paths and summary.

    Raises
    ------
    PublishError
        When no run folder has this id (or unique id prefix).
    """
    import pandas as pd

    if runs is None:
        runs = list_runs(reports_dir=reports_dir, tracking_uri=tracking_uri)
    record = find_run(run_id, runs)
    if record is None:
        raise PublishError(f"run {run_id!r} not found under the reports folder")
    tables = {}
    for name in record.tables:
        path = record.path / "tables" / f"{name}.parquet"
        if path.exists():
            tables[name] = pd.read_parquet(path)
    figures = {}
    for name in record.figures:
        path = record.path / "figures" / (name if name.endswith(".png") else f"{name}.png")
        if path.exists():
            figures[Path(name).stem] = path
    return LoadedRun(record=record, tables=tables, figures=figures)


def publish(run_id: str, published: bool = True, *, tracking_uri: str | None = None,
            reports_dir: str | Path | None = None) -> str:
    """Set the MLflow tag :data:`PUBLISHED_TAG` of a run; returns the full run id.

    ``run_id`` may be the full MLflow id or the 8-character prefix shown in run folder names.
    Unpublishing sets the tag to ``"false"`` (kept, so the history shows it was withdrawn).

    Raises
    ------
    PublishError
        No MLflow store yet (it is not created), or no such run in it.
    """
    uri = tracking_uri or get_settings().tracking_uri
    db = sqlite_path(uri)
    if db is not None and not db.exists():  # publishing never creates a store
        raise PublishError(f"no MLflow database at {db}: run a template first")
    record = find_run(run_id, list_runs(reports_dir=reports_dir, tracking_uri=uri))
    full_id = record.run_id if record is not None else run_id
    try:
        tracking.set_tag(full_id, PUBLISHED_TAG, "true" if published else "false",
                         tracking_uri=uri)
    except WorkbenchError as exc:
        raise PublishError(f"run {run_id!r} not found in MLflow ({uri})") from exc
    return full_id


def unpublish(run_id: str, *, tracking_uri: str | None = None,
              reports_dir: str | Path | None = None) -> str:
    """Withdraw a run from the dashboards (see :func:`publish`); returns the full run id."""
    return publish(run_id, False, tracking_uri=tracking_uri, reports_dir=reports_dir)
