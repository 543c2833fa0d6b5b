"""MLflow: pushing run folders, syncing the ones left behind, tags, one lock for SQLite.

Everything a run logs is written to its folder first (:mod:`workbench.tracking.store`); the
owner of the run pushes the folder here when the run ends. A push that fails leaves the run
``"synced": false`` and :func:`sync` (``workbench sync``) pushes it later, so nothing is lost.
MLflow itself is imported only when a function needs it (it takes seconds).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from workbench.config import get_settings
from workbench.errors import TrackingError
from workbench.tracking import store

log = logging.getLogger(__name__)

# run.json status -> MLflow run status (MLflow has no "stopped early")
MLFLOW_STATUS = {store.FINISHED: "FINISHED", store.FAILED: "FAILED", store.STOPPED: "FAILED",
                 "KILLED": "KILLED"}

_MAX_PARAM = 500  # MLflow refuses longer parameter values
_MAX_TAG = 5000
_BATCH = 100  # MLflow's log_batch limit per kind is higher; small batches keep locks short
_METRIC_KEY_RE = re.compile(r"[^A-Za-z0-9_.\- /]+")


# ----------------------------------------------------------------------------- values
def sanitize_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Keep the finite numeric values, with keys MLflow accepts (NaN breaks its UI, inf is clamped)."""
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[_METRIC_KEY_RE.sub("_", str(key))[:250]] = number
    return out


def sanitize_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Parameters as strings of at most 500 characters (MLflow raises on longer values)."""
    out = {}
    for key, value in params.items():
        text = value if isinstance(value, str) else json.dumps(store.jsonable(value))
        if len(text) > _MAX_PARAM:
            text = text[: _MAX_PARAM - 3] + "..."
        out[_METRIC_KEY_RE.sub("_", str(key))[:250]] = text
    return out


# ----------------------------------------------------------------------------- access
def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's ``sqlite:///<root>/mlflow.db``."""
    return get_settings().tracking_uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


@contextlib.contextmanager
def mlflow_lock(uri: str) -> Iterator[None]:
    """Serialise writers of one SQLite tracking file across processes ("database is locked")."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's own log records (its SQLAlchemy tracebacks of a full disk, its
    "Creating initial MLflow database tables" lines) for the time of a call: the failure is
    caught, and reported once, in words, by the caller."""
    import mlflow  # noqa: F401 - importing it configures its loggers: do that first

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _retry(func, *args, attempts: int = 6, **kwargs):
    """Call ``func``, retrying with backoff while SQLite says the database is locked."""
    for attempt in range(attempts):
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps sqlite errors in several types
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def client(uri: str | None = None):
    """An ``MlflowClient`` of ``uri`` (default :func:`tracking_uri`)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri or tracking_uri())


def _experiment_id(mlflow_client, name: str, uri: str = "") -> str:
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = sqlite_path(uri)
    # next to the SQLite file, not in whatever directory the process happens to run from
    location = (db.parent / "mlruns" / store.slug(name)).as_uri() if db is not None else None
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # created by a concurrent run in between
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def create_run(uri: str, experiment: str, run_name: str, tags: Mapping[str, str],
               start_time: int | None = None) -> str:
    """Create an MLflow run (and its experiment if new); returns the run id.

    ``start_time`` (ms since the epoch) should be the run's ``started_at``: run.json keeps whole
    seconds, and a start MLflow stamps itself (to the millisecond) can fall after the end
    pushed from run.json, a negative duration in the MLflow UI.
    """
    with quiet_mlflow(), mlflow_lock(uri):
        mlflow_client = client(uri)
        exp_id = _retry(_experiment_id, mlflow_client, experiment, uri)
        return _retry(mlflow_client.create_run, exp_id, run_name=run_name, start_time=start_time,
                      tags=dict(tags)).info.run_id


# ----------------------------------------------------------------------------- tags
def set_tag(run_id: str, key: str, value: Any, tracking_uri: str | None = None) -> None:
    """Set one tag on an MLflow run (under the SQLite lock, retried while locked).

    Raises
    ------
    TrackingError
        The run does not exist or the store cannot be written.
    """
    uri = tracking_uri or get_settings().tracking_uri
    try:
        with quiet_mlflow(), mlflow_lock(uri):
            _retry(client(uri).set_tag, run_id, key, str(value)[:_MAX_TAG])
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types
        raise TrackingError(f"cannot tag run {run_id!r} in {uri}: "
                            f"{store.error_cause(exc)}") from exc


def runs_with_tag(key: str, value: Any, tracking_uri: str | None = None) -> set[str]:
    """Ids of the active runs whose tag ``key`` equals ``value`` (compared case-insensitively).

    A local SQLite store is read directly (read-only, one query): importing MLflow takes
    seconds and every page view of a dashboard would pay for it. Other stores go through
    ``MlflowClient``. A store that does not exist yet has no runs (it is not created).
    """
    uri = tracking_uri or get_settings().tracking_uri
    text = str(value)
    db = sqlite_path(uri)
    if db is not None:
        if not db.exists():
            return set()
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                rows = con.execute(
                    "SELECT t.run_uuid FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                    "WHERE t.key = ? AND lower(t.value) = lower(?) "
                    "AND r.lifecycle_stage = 'active'", (key, text)).fetchall()
            finally:
                con.close()
            return {row[0] for row in rows}
        except sqlite3.Error as exc:  # an unexpected schema: ask MLflow itself
            log.info("reading %s directly failed (%s); using MlflowClient", db, exc)
    return _runs_with_tag_via_client(uri, key, text)


def _runs_with_tag_via_client(uri: str, key: str, text: str) -> set[str]:
    from mlflow.entities import ViewType

    mlflow_client = client(uri)
    experiment_ids = [e.experiment_id
                      for e in mlflow_client.search_experiments(view_type=ViewType.ALL)]
    found: set[str] = set()
    if not experiment_ids:
        return found
    quoted = text.replace("\\", "\\\\").replace("'", "\\'")
    token = None
    while True:
        page = mlflow_client.search_runs(
            experiment_ids, filter_string=f"tags.`{key}` ILIKE '{quoted}'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        # ILIKE treats % and _ as wildcards: keep exact (case-insensitive) matches only
        found.update(run.info.run_id for run in page
                     if str(run.data.tags.get(key, "")).lower() == text.lower())
        token = page.token
        if not token:
            return found


# ----------------------------------------------------------------------------- models
def _flavor(model: Any) -> str:
    try:
        import xgboost

        if isinstance(model, xgboost.XGBModel | xgboost.Booster):
            return "xgboost"
    except ImportError:  # pragma: no cover
        pass
    return "sklearn"


def _flavor_module(flavor: str):
    if flavor == "xgboost":
        import mlflow.xgboost

        return mlflow.xgboost
    import mlflow.sklearn

    return mlflow.sklearn


def _save_options(flavor: str) -> dict:
    # MLflow 3's default sklearn format (skops) refuses pipelines holding workbench functions
    if flavor == "sklearn":
        return {"serialization_format": "cloudpickle"}
    return {}


def _pip_requirements(flavor: str) -> list[str]:
    # explicit requirements: MLflow's inference starts a subprocess and takes seconds
    from importlib.metadata import version

    reqs = [f"mlflow=={version('mlflow')}", f"scikit-learn=={version('scikit-learn')}"]
    try:
        reqs.append(f"xgboost=={version('xgboost')}")
    except Exception:  # noqa: BLE001  pragma: no cover
        pass
    return reqs


def save_model(model: Any, path: Path, input_example: Any) -> Path:
    """Save a fitted scikit-learn or xgboost model as an MLflow model folder with signature."""
    import shutil

    from mlflow.models import infer_signature

    flavor = _flavor(model)
    example = input_example.head(5) if hasattr(input_example, "head") else input_example[:5]
    with _quiet_model_io():
        signature = infer_signature(input_example, model.predict(input_example))
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_model_io():
        _flavor_module(flavor).save_model(model, str(path), signature=signature,
                                          input_example=example,
                                          pip_requirements=_pip_requirements(flavor),
                                          **_save_options(flavor))
    return path


@contextlib.contextmanager
def _quiet_model_io() -> Iterator[None]:
    """MLflow's advice printed on every model save, which lands as a stderr box in the
    stakeholder's report: the integer-columns schema hint (a UserWarning: the signature is
    inferred from the training frame, whose integer columns have no missing values by
    construction) and the cloudpickle caution (a log record: cloudpickle is chosen on
    purpose, see :func:`_save_options`)."""
    import warnings

    with warnings.catch_warnings(), quiet_mlflow():
        warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer",
                                category=UserWarning)
        warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
        yield


def _log_model_folder(model_dir: Path, run_id: str, uri: str) -> None:
    """Log a saved model folder as an MLflow model of the run (signature and example kept)."""
    import mlflow
    from mlflow.models import Model

    meta = Model.load(str(model_dir))
    flavor = "xgboost" if "xgboost" in meta.flavors else "sklearn"
    module = _flavor_module(flavor)
    model = module.load_model(str(model_dir))
    example = meta.load_input_example(str(model_dir))
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # the fluent API is the only one that logs a model; point it at this run's store and then
    # restore the previous state exactly (set_tracking_uri would pin a value read from the env)
    previous_uri = tracking_utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow_lock(uri), mlflow.start_run(run_id=run_id,
                                                nested=mlflow.active_run() is not None):
            with _quiet_model_io():
                module.log_model(model, name=model_dir.name, signature=meta.signature,
                                 input_example=example,
                                 pip_requirements=_pip_requirements(flavor),
                                 **_save_options(flavor))
    finally:
        tracking_utils._tracking_uri = previous_uri


# ----------------------------------------------------------------------------- push / sync
def run_tags(data: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """The MLflow tags of a run record (``workbench.*``, run name, git commit, logged tags)."""
    tags = {
        "workbench.template": data.get("template", ""),
        "workbench.name": data.get("name", ""),
        "workbench.run_id": data.get("run_id", ""),
        "workbench.run_dir": str(run_dir.resolve()),
        "workbench.version": store.WORKBENCH_VERSION,
        "mlflow.runName": run_name(data),
    }
    if data.get("git_commit"):
        tags["workbench.git_commit"] = data["git_commit"]
        tags["mlflow.source.git.commit"] = data["git_commit"]
    tags.update({k: str(v) for k, v in (data.get("tags") or {}).items()})
    return {k: v[:_MAX_TAG] for k, v in tags.items()}


def run_name(data: Mapping[str, Any]) -> str:
    """``<template>-<name>-<first 8 of the run id>``, e.g. ``explain-conversion_model-1a2b3c4d``
    (the name, the experiment or model by default, is left out when it repeats the template):
    runs of several templates on one experiment stay apart in the MLflow UI."""
    parts = [str(data.get("template") or ""), str(data.get("name") or "")]
    if parts[1] == parts[0]:
        parts.pop()
    parts.append((data.get("run_id") or "")[:8])
    return "-".join(p for p in parts if p)


def push(run_dir: str | os.PathLike, tracking_uri: str | None = None, *,
         record: Mapping[str, Any] | None = None) -> dict:
    """Log a finished run folder to MLflow; on failure leave it unsynced. Returns run.json.

    Creates the MLflow run if it does not exist yet (the server was down at the start),
    logs parameters, metrics, tags, every file of the folder as artifacts and the models as
    MLflow models, then ends the MLflow run with the run's status. ``record`` (default: the
    folder's run.json) is what to push: the owner passes the record it just closed, which a
    full disk may have kept out of run.json. ``sync_error`` says why a push failed, in one
    line (``no space left on device`` for a full disk, MLflow's or the folder's).
    """
    run_dir = Path(run_dir)
    data = dict(record) if record else store.read_run(run_dir)
    if not data:
        raise TrackingError(f"no {store.RUN_JSON} in {run_dir}")
    uri = tracking_uri or data.get("tracking_uri") or get_settings().tracking_uri
    data["tracking_uri"] = uri
    try:
        with quiet_mlflow():
            run_id = _push(run_dir, data, uri)
    except Exception as exc:  # noqa: BLE001 - any failure: keep the files, sync later
        data.update(synced=False, sync_error=store.error_cause(exc)[:2000])
        _save_record(run_dir, data)
        return data
    data.update(mlflow_run_id=run_id, synced=True, sync_error=None)
    _save_record(run_dir, data)
    return data


def _save_record(run_dir: Path, data: dict) -> None:
    """Write run.json unless the record could not be written at all (full disk): then the
    outcome stays in the run's marker and ``record_error`` says so."""
    if data.get("record_error"):
        return
    try:
        store.save_json(run_dir / store.RUN_JSON, data)
    except OSError as exc:
        if not store.disk_full(exc):
            raise
        data["record_error"] = f"run.json could not be updated: {store.DISK_FULL}"


def _existing_run_id(mlflow_client, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        mlflow_client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc) and "not found" not in str(exc).lower():
            raise
        return None
    return run_id


def _push(run_dir: Path, data: dict, uri: str) -> str:
    from mlflow.entities import Metric, Param, RunTag

    with mlflow_lock(uri):
        mlflow_client = client(uri)
        run_id = _existing_run_id(mlflow_client, data.get("mlflow_run_id"))
        tags = run_tags(data, run_dir)
        if not run_id:
            exp_id = _retry(_experiment_id, mlflow_client,
                            data.get("experiment_name") or "workbench", uri)
            run_id = _retry(mlflow_client.create_run, exp_id,
                            start_time=store.epoch_ms(data.get("started_at")), tags=tags,
                            run_name=tags["mlflow.runName"]).info.run_id
        summary = data.get("summary") or {}
        tags.update({f"summary.{k}": json.dumps(v) if not isinstance(v, str) else v
                     for k, v in summary.items()})
        tags["workbench.status"] = data.get("status", "")
        if data.get("error"):
            tags["workbench.error"] = str(data["error"].get("message", ""))[:_MAX_TAG]
        mlflow_run = mlflow_client.get_run(run_id)
        existing = mlflow_run.data.params
        params = {k: v for k, v in sanitize_params(data.get("parameters") or {}).items()
                  if k not in existing}  # a re-push must not change a logged parameter
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0)
                   for k, v in sanitize_metrics(data.get("metrics") or {}).items()]
        tag_list = [RunTag(k, v[:_MAX_TAG]) for k, v in tags.items()]
        param_list = [Param(k, v) for k, v in params.items()]
        for i in range(0, max(len(metrics), len(param_list), len(tag_list)), _BATCH):
            _retry(mlflow_client.log_batch, run_id, metrics=metrics[i:i + _BATCH],
                   params=param_list[i:i + _BATCH], tags=tag_list[i:i + _BATCH])
    # the uploaded run.json says where the run is; artifacts go outside the SQLite lock
    _save_record(run_dir, dict(data, mlflow_run_id=run_id, synced=True, sync_error=None))
    for item in sorted(run_dir.iterdir()):
        if item.name in ("models", store.LOGGED_JSON) or item.name.startswith("."):
            continue
        if item.is_dir():
            mlflow_client.log_artifacts(run_id, str(item), artifact_path=item.name)
        else:
            mlflow_client.log_artifact(run_id, str(item))
    for model_dir in sorted((run_dir / "models").glob("*")):
        _log_model_folder(model_dir, run_id, uri)
    # never before the start MLflow holds (runs created by older versions kept milliseconds)
    end_time = store.epoch_ms(data.get("ended_at"))
    if end_time is not None and mlflow_run.info.start_time is not None:
        end_time = max(end_time, mlflow_run.info.start_time)
    with mlflow_lock(uri):
        _retry(mlflow_client.set_terminated, run_id,
               status=MLFLOW_STATUS.get(data.get("status"), "FAILED"), end_time=end_time)
    return run_id


def recover_stale_runs(reports_dir: str | os.PathLike | None = None) -> list[Path]:
    """End as FAILED the runs whose process died while RUNNING (killed, machine reboot),
    and push them. Only runs started on this host are judged. Returns their folders."""
    ended = store.end_stale_runs(reports_dir)
    for run_dir in ended:
        push(run_dir)
    return ended


def sync(reports_dir: str | os.PathLike | None = None,
         tracking_uri: str | None = None) -> list[dict]:
    """Push every unsynced run (and end runs left RUNNING by a killed process as FAILED).

    Returns the run.json of every run it tried, with ``synced`` telling the outcome and
    ``run_dir`` added.
    """
    recover_stale_runs(reports_dir)
    done = []
    for run_dir in store.find_runs(reports_dir):
        data = store.read_run(run_dir)
        if data.get("synced") or data.get("status") == store.RUNNING:
            continue
        done.append(dict(push(run_dir, tracking_uri), run_dir=str(run_dir)))
    return done
