"""Logged plans: finding the ``plan`` run of an experiment and reading its plan table back.

Below the readout and :mod:`workbench.plan` (both import it; it imports neither): a readout
links to a plan by the plan run's id or folder, by the planned experiment's id, or ``"auto"``
(the newest *finished* run in the run store whose tag :data:`TAG` is the readout's experiment
id; else in MLflow, :func:`find_in_mlflow`). The link is recorded as the readout run's tag
``workbench.plan_run`` (:data:`workbench.readout.record.PLAN_RUN_TAG`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ParameterError
from workbench.tracking import store

TAG = "workbench.plan"  # on a plan run: the planned experiment's id
TABLE = "plan"  # name of the logged plan table
AUTO = "auto"


def find(experiment_id: str, reports_dir: Any = None) -> Path | None:
    """The folder of the newest finished run whose tag :data:`TAG` equals ``experiment_id``
    (case-insensitive), or None. Failed, stopped and running runs are ignored."""
    want = str(experiment_id).strip().lower()
    best, best_key = None, None
    for folder in store.find_runs(reports_dir):
        try:
            data = store.read_run(folder)
        except (OSError, ValueError):
            continue
        tag = (data.get("tags") or {}).get(TAG)
        if data.get("status") != store.FINISHED or tag is None or str(tag).lower() != want:
            continue
        key = (str(data.get("ended_at") or data.get("started_at") or ""), folder.name)
        if best_key is None or key > best_key:
            best, best_key = folder, key
    return best


def find_in_mlflow(experiment_id: str | None = None, plan_run: str | None = None,
                   tracking_uri: str | None = None) -> Path | None:
    """A plan run that only MLflow holds (logged from another machine, or its folder gone):
    the newest ``FINISHED`` run tagged :data:`TAG` = ``experiment_id``, or the run
    ``plan_run``; its ``run.json`` and ``tables/`` are downloaded once into
    ``<cache>/plans/<MLflow run id>`` (a finished run's artifacts do not change), which is
    returned (None when MLflow has no such run). The tag lookup is one read-only query of
    a local SQLite store (:func:`workbench.tracking.mlflow.runs_with_tag`), so a readout
    without a plan does not pay for importing MLflow."""
    import shutil
    import tempfile

    from workbench.config import get_settings
    from workbench.tracking import mlflow as _mlflow

    uri = tracking_uri or get_settings().tracking_uri
    db = _mlflow.sqlite_path(uri)
    if db is not None and not db.exists():  # looking never creates a store
        return None
    tracking_uri = uri
    try:
        ids = (_mlflow.runs_with_tag(TAG, experiment_id, tracking_uri) if plan_run is None
               else {plan_run})
    except Exception:  # noqa: BLE001 - an unreachable store: no plan found there
        return None
    if not ids:
        return None
    try:
        client = _mlflow.client(tracking_uri)
        runs = []
        for i in ids:
            try:
                run = client.get_run(i)
            except Exception:  # noqa: BLE001 - not a run of this store
                continue
            tag = run.data.tags.get(TAG)
            if run.info.status == "FINISHED" and tag is not None and (
                    experiment_id is None or str(tag).lower() == str(experiment_id).lower()):
                runs.append(run)
        if not runs:
            return None
        best = max(runs, key=lambda r: (r.info.end_time or 0, r.info.start_time or 0))
        cached = get_settings().cache_dir / "plans" / best.info.run_id
        if (cached / store.RUN_JSON).exists():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(prefix=f".{best.info.run_id}-", dir=cached.parent))
        try:
            client.download_artifacts(best.info.run_id, "tables", str(part))
            try:
                client.download_artifacts(best.info.run_id, store.RUN_JSON, str(part))
            except Exception:  # noqa: BLE001 - an older run without run.json: the id is enough
                store.write_json(part / store.RUN_JSON, {"mlflow_run_id": best.info.run_id})
            try:
                part.rename(cached)  # whole or not at all; a concurrent reader's copy wins
            except OSError:
                pass
        finally:
            shutil.rmtree(part, ignore_errors=True)
        return cached
    except Exception:  # noqa: BLE001 - MLflow raises several types
        return None


def run_id(folder: str | os.PathLike) -> str:
    """The id a plan run is known by: its MLflow run id, else its local run id."""
    ids = store.run_ids(folder)
    return ids[0] if ids else Path(folder).name


def locate(plan: str | os.PathLike, experiment_id: str | None = None,
           reports_dir: Any = None) -> Path | None:
    """The plan run folder ``plan`` names: a run folder, a run id (:func:`store.resolve_run`),
    a planned experiment's id (:func:`find`) or ``"auto"`` (``experiment_id``'s plan).

    Returns None only for ``"auto"`` with no plan (a readout without a plan stays silent).

    Raises
    ------
    ParameterError
        An explicit ``plan`` that names no plan run.
    """
    text = str(plan).strip()
    if text.lower() == AUTO:
        if not experiment_id:
            return None
        return find(experiment_id, reports_dir) or find_in_mlflow(experiment_id)
    if text and Path(text).is_dir():
        return Path(text)
    folder = store.resolve_run(text, reports_dir) if text else None
    if folder is None and text:
        folder = find(text, reports_dir) or find_in_mlflow(text) \
            or find_in_mlflow(plan_run=text)
    if folder is None:
        raise ParameterError(f"plan_run={text!r}: no plan run has that run id or a "
                             f"{TAG} tag with that experiment id in the reports folder")
    return folder


def load(run: str | os.PathLike, reports_dir: Any = None) -> pd.DataFrame:
    """The plan table logged by a run (the ``plan`` template), by run id, folder or planned
    experiment id."""
    folder = locate(run, None, reports_dir)
    for f in sorted(Path(folder).rglob(f"{TABLE}.*")):
        if f.suffix == ".parquet":
            return pd.read_parquet(f)
        if f.suffix == ".csv":
            return pd.read_csv(f)
    raise ParameterError(f"plan_run={str(run)!r}: the run has no {TABLE!r} table")


def resolve(plan: Any, experiment_id: str | None = None,
            reports_dir: Any = None) -> tuple[pd.DataFrame | None, str | None]:
    """``(plan table, plan run id)`` of what a readout's ``plan=`` names: a
    :class:`workbench.plan.Plan` (anything with a ``table``), a plan table, or a run /
    experiment id / folder / ``"auto"`` (:func:`locate`). ``(None, None)`` without a plan."""
    if plan is None or (isinstance(plan, str) and not plan.strip()):
        return None, None
    if isinstance(plan, pd.DataFrame):
        return plan, None
    if isinstance(getattr(plan, "table", None), pd.DataFrame):
        return plan.table, None
    if not isinstance(plan, (str, os.PathLike)):
        raise ParameterError(f"plan={plan!r}: expected a Plan, its table, a plan run id, an "
                             f"experiment id or {AUTO!r}")
    folder = locate(plan, experiment_id, reports_dir)
    if folder is None:
        return None, None
    return load(folder), run_id(folder)


def planned_mde(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, float]:
    """``{metric: mde}`` from a plan table, restricted to ``metrics`` when given."""
    t = table.drop_duplicates("metric")
    return {str(m): float(v) for m, v in zip(t["metric"], t["mde"])
            if np.isfinite(v) and (metrics is None or m in metrics)}


def planned(table: pd.DataFrame | None, metrics: Sequence[str], cuped: Sequence[bool],
            sequential: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(planned_n, planned_days)`` per readout row: the plan row of the row's metric (its
    CUPED row when the readout used CUPED for it), ``*_sequential`` for a sequential readout,
    else ``*_fixed``; NaN without a plan or a plan row."""
    n = np.full(len(metrics), np.nan)
    days = np.full(len(metrics), np.nan)
    if table is None or not len(table):
        return n, days
    suffix = "sequential" if sequential else "fixed"
    rows = {(str(r["metric"]), bool(r["cuped"])): r for r in table.to_dict("records")}
    for i, (m, c) in enumerate(zip(metrics, cuped)):
        r = rows.get((str(m), bool(c) if c is not None and c == c else False))
        if r is not None:
            n[i] = float(r.get(f"n_{suffix}", np.nan))
            days[i] = float(r.get(f"days_{suffix}", np.nan))
    return n, days
