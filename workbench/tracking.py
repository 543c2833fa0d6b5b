"""MLflow tracking of template runs and of notebooks, through one run directory.

A run is a folder ``reports/<template>/<name>/<YYYYmmddTHHMMSSZ>-<id[:8]>/`` plus (when the
tracking server answers) one MLflow run. Everything a notebook logs is written to the folder
first; the owner of the run (``workbench run``, or :func:`start_run` in JupyterLab) pushes the
folder to MLflow when the run ends. A run whose push failed stays in ``reports/`` with
``"synced": false`` in ``run.json`` and ``workbench sync`` pushes it later, so nothing is lost.

Folder layout::

    run.json                 run record (see ``RUN_JSON_FIELDS``)
    notebook.ipynb           executed notebook (template runs)
    report.html              HTML export with the code hidden (template runs)
    tables/<name>.parquet    log_table()
    figures/<name>.png       log_figure()
    models/<name>/           log_model() (an MLflow model folder, with signature)
    artifacts/<file>         artifact_path() (other files, e.g. the Evidently HTML report)

Inside a notebook, :func:`log_table`, :func:`log_figure`, :func:`log_metrics`,
:func:`log_summary`, :func:`log_model` and :func:`log_fingerprint` write to the current run: the
innermost ``with start_run(...)`` of this process, else the run whose folder is in the
``WORKBENCH_RUN_DIR`` environment variable (set by the runner for its kernel). With neither they
print a notice once and do nothing, so a template also runs by hand.

This module knows nothing of papermill (the runner does).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.config import get_settings
from workbench.errors import TrackingError

ENV_RUN_DIR = "WORKBENCH_RUN_DIR"
RUN_JSON = "run.json"
LOGGED_JSON = "logged.json"  # written by the notebook side, merged into run.json at the end
STATE_DIR = ".workbench"  # under reports/: markers of runs in progress

RUNNING, FINISHED, FAILED, STOPPED = "RUNNING", "FINISHED", "FAILED", "STOPPED"
# run.json status -> MLflow run status (MLflow has no "stopped early")
MLFLOW_STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", STOPPED: "FAILED", "KILLED": "KILLED"}

RUN_JSON_FIELDS = {
    "run_id": "local id: the MLflow run id when MLflow answered at the start, else a uuid4 hex",
    "mlflow_run_id": "MLflow run id, or null until the run is synced",
    "experiment_name": "MLflow experiment (A/B experiment id or model task)",
    "template": "template name", "name": "run name (folder level under the template)",
    "status": "RUNNING | FINISHED | FAILED | STOPPED (stopped early without an error)",
    "synced": "true once everything is in MLflow; false: `workbench sync` will push it",
    "sync_error": "why the last push failed, else null", "tracking_uri": "where it goes",
    "parameters": "template parameters", "started_at": "UTC ISO time", "ended_at": "UTC ISO time",
    "tables": "names under tables/", "figures": "names under figures/", "models": "under models/",
    "summary": "log_summary() dict", "metrics": "log_metrics() dict (null where not finite)",
    "tags": "workbench.* tags (version, git commit, data fingerprint...)",
    "error": "{cell_index, ename, evalue, message} of a failed run, else null",
    "notebook": "notebook.ipynb or null", "report": "report.html or null",
}

_MAX_PARAM = 500  # MLflow refuses longer parameter values
_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_METRIC_KEY_RE = re.compile(r"[^A-Za-z0-9_.\- /]+")
_ACTIVE: list[Run] = []
_ATTACHED: dict[str, Run] = {}
_NOTICE_SHOWN = False


# ----------------------------------------------------------------------------- small helpers
def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def slug(text: str) -> str:
    """A file-system-safe version of ``text`` (letters, digits, ``_.-``)."""
    out = _NAME_RE.sub("_", str(text)).strip("._")
    return out or "run"


def jsonable(value: Any) -> Any:
    """``value`` made strict-JSON-safe: numpy scalars to Python, NaN/inf to None, dates to ISO."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar/array
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return str(value)


def _write_json(path: Path, data: Mapping) -> None:
    # write then rename, so a reader (dashboard, sync) never sees half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, allow_nan=False))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


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
        text = value if isinstance(value, str) else json.dumps(jsonable(value))
        if len(text) > _MAX_PARAM:
            text = text[: _MAX_PARAM - 3] + "..."
        out[_METRIC_KEY_RE.sub("_", str(key))[:250]] = text
    return out


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default the project root), or None."""
    path = Path(path or get_settings().root)
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def fingerprint(source_path: str | os.PathLike, tables: list[str] | None = None) -> str:
    """A hash of the content of tables in a DuckDB file, computed inside DuckDB.

    Per table: column names and types, the row count and the sum of the row hashes (order
    independent), so any change of a value changes the fingerprint without reading the rows
    into Python.

    Parameters
    ----------
    source_path : path
        DuckDB file (opened read-only).
    tables : list of str, optional
        Tables to include (default: all tables of the file).

    Returns
    -------
    str
        ``sha256:<16 hex digits>``.
    """
    import hashlib

    import duckdb

    path = Path(source_path)
    if not path.is_file():
        raise TrackingError(f"fingerprint: no DuckDB file at {path}")
    con = None
    for attempt in range(20):  # another process may hold a write lock for a moment
        try:
            con = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower() or attempt == 19:
                raise TrackingError(f"fingerprint: cannot open {path}: {exc}") from exc
            time.sleep(0.25)
    try:
        known = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
        names = sorted(tables) if tables else known
        digest = hashlib.sha256()
        for name in names:
            if name not in known:
                raise TrackingError(f"fingerprint: table {name!r} not in {path} (has {known})")
            cols = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position", [name]).fetchall()
            count, hsum = con.execute(
                f'SELECT count(*), sum(hash(t)::HUGEINT) FROM "{name}" AS t').fetchone()
            digest.update(repr((name, cols, count, hsum)).encode())
        return f"sha256:{digest.hexdigest()[:16]}"
    finally:
        con.close()


# ----------------------------------------------------------------------------- MLflow access
def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's ``sqlite:///<root>/mlflow.db``."""
    return get_settings().tracking_uri


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


@contextlib.contextmanager
def _mlflow_lock(uri: str) -> Iterator[None]:
    """Serialise writers of one SQLite tracking file across processes ("database is locked")."""
    db = _sqlite_path(uri)
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


def _retry(func, *args, attempts: int = 6, **kwargs):
    """Call ``func``, retrying with backoff while SQLite says the database is locked."""
    for attempt in range(attempts):
        try:
            return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps sqlite errors in several types
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str = "") -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    db = _sqlite_path(uri)
    # next to the SQLite file, not in whatever directory the process happens to run from
    location = (db.parent / "mlruns" / slug(name)).as_uri() if db is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created by a concurrent run in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _create_mlflow_run(uri: str, experiment: str, run_name: str, tags: Mapping[str, str]) -> str:
    with _mlflow_lock(uri):
        client = _client(uri)
        exp_id = _retry(_experiment_id, client, experiment, uri)
        run = _retry(client.create_run, exp_id, run_name=run_name, tags=dict(tags))
        return run.info.run_id


# ----------------------------------------------------------------------------- the run handle
class Run:
    """A run folder and its MLflow run. Get one from :func:`start_run` or :func:`current_run`.

    Attributes
    ----------
    run_dir : Path
        The run folder.
    owner : bool
        True for the process that started the run (it pushes to MLflow at the end); False for
        a kernel attached through ``WORKBENCH_RUN_DIR`` (it only writes files).
    """

    def __init__(self, run_dir: str | os.PathLike, *, owner: bool = False):
        self.run_dir = Path(run_dir)
        self.owner = owner
        self._outcome: tuple[str, dict | None] | None = None

    # -- record
    def record(self) -> dict:
        """The content of ``run.json`` (plus what was logged since, before the run ends)."""
        data = _read_json(self.run_dir / RUN_JSON)
        return _merge_logged(data, _read_json(self.run_dir / LOGGED_JSON))

    @property
    def run_id(self) -> str:
        return self.record().get("run_id", "")

    @property
    def mlflow_run_id(self) -> str | None:
        return self.record().get("mlflow_run_id")

    @property
    def status(self) -> str:
        return self.record().get("status", "")

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r}, status={self.status!r})"

    # -- logging (files only; pushed to MLflow at the end)
    def _update_logged(self, key: str, values: Mapping[str, Any]) -> None:
        path = self.run_dir / LOGGED_JSON
        data = _read_json(path)
        data.setdefault(key, {}).update(jsonable(dict(values)))
        _write_json(path, data)

    def log_table(self, table: Any, name: str) -> Path:
        """Write a DataFrame (or a result with ``.to_frame()``) to ``tables/<name>.parquet``."""
        import pandas as pd

        frame = table.to_frame() if hasattr(table, "to_frame") and not isinstance(
            table, pd.DataFrame) else table
        if isinstance(frame, pd.Series):
            frame = frame.to_frame()
        if not isinstance(frame, pd.DataFrame):
            raise TrackingError(f"log_table({name!r}): expected a DataFrame, got "
                                f"{type(table).__name__}")
        frame = frame.copy()
        frame.columns = [str(c) for c in frame.columns]
        keep_index = not isinstance(frame.index, pd.RangeIndex)
        path = self.run_dir / "tables" / f"{slug(name)}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            frame.to_parquet(path, index=keep_index)
        except Exception:  # noqa: BLE001 - mixed-type object columns: store them as text
            for col in frame.select_dtypes(include="object").columns:
                frame[col] = frame[col].map(lambda v: v if v is None else str(v))
            frame.to_parquet(path, index=keep_index)
        return path

    def log_figure(self, figure: Any, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib Figure (or Axes, or an object with ``.figure_``) as ``figures/<name>.png``."""
        fig = figure
        for attr in ("figure_", "figure"):
            if not hasattr(fig, "savefig") and hasattr(fig, attr):
                fig = getattr(fig, attr)
        if not hasattr(fig, "savefig") and hasattr(fig, "get_figure"):
            fig = fig.get_figure()
        if not hasattr(fig, "savefig") and hasattr(fig, "flat"):  # array of Axes
            fig = fig.flat[0].get_figure()
        if not hasattr(fig, "savefig"):
            raise TrackingError(f"log_figure({name!r}): not a matplotlib figure "
                                f"({type(figure).__name__})")
        path = self.run_dir / "figures" / f"{slug(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        return path

    def log_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Record metrics; non-finite values are kept as null in run.json and not sent to MLflow."""
        self._update_logged("metrics", {str(k): v for k, v in metrics.items()})
        return sanitize_metrics(metrics)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record extra parameters (beyond the template's)."""
        self._update_logged("params", params)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Record the headline of the run (e.g. ``decision``, ``srm_p_value``) for dashboards."""
        self._update_logged("summary", summary)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Record MLflow tags."""
        self._update_logged("tags", {k: str(v) for k, v in tags.items()})

    def log_fingerprint(self, source: str | os.PathLike, tables: list[str] | None = None) -> str | None:
        """Tag the run with :func:`fingerprint` of the input tables (None if not a DuckDB file)."""
        if source is None or not Path(source).is_file():
            return None
        value = fingerprint(source, tables)
        self.set_tags({"workbench.data_fingerprint": value,
                       "workbench.data_source": str(Path(source).resolve())})
        return value

    def artifact_path(self, filename: str) -> Path:
        """A path under ``artifacts/`` to write a file to (e.g. an Evidently HTML report)."""
        path = self.run_dir / "artifacts" / slug(filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def log_model(self, model: Any, name: str, input_example: Any) -> Path:
        """Save a fitted scikit-learn or xgboost model as an MLflow model with its signature.

        The signature is inferred from ``input_example`` and the model's predictions; the model
        is logged to MLflow (``mlflow.sklearn`` / ``mlflow.xgboost``) when the run is pushed.
        """
        from mlflow.models import infer_signature

        flavor = _flavor(model)
        module = _flavor_module(flavor)
        example = input_example.head(5) if hasattr(input_example, "head") else input_example[:5]
        signature = infer_signature(input_example, model.predict(input_example))
        path = self.run_dir / "models" / slug(name)
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        module.save_model(model, str(path), signature=signature, input_example=example,
                          pip_requirements=_pip_requirements(flavor), **_save_options(flavor))
        return path

    # -- end of the run (owner only)
    def mark(self, status: str, error: Mapping[str, Any] | None = None) -> None:
        """Set the outcome used when the ``with start_run(...)`` block ends."""
        self._outcome = (status, dict(error) if error else None)

    def finish(self, status: str = FINISHED, error: Mapping[str, Any] | None = None) -> dict:
        """End the run: write run.json, push it to MLflow (or leave it unsynced). Returns run.json."""
        data = _merge_logged(_read_json(self.run_dir / RUN_JSON),
                             _read_json(self.run_dir / LOGGED_JSON))
        data.update(status=status, ended_at=_iso(utcnow()), error=jsonable(error) if error else None)
        _scan_outputs(self.run_dir, data)
        _write_json(self.run_dir / RUN_JSON, data)
        (self.run_dir / LOGGED_JSON).unlink(missing_ok=True)
        data = push(self.run_dir)
        _clear_marker(self.run_dir, data)
        return data


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


def _merge_logged(data: dict, logged: dict) -> dict:
    if not logged:
        return data
    data = dict(data)
    for key, target in (("metrics", "metrics"), ("summary", "summary"), ("tags", "tags")):
        if logged.get(key):
            data[target] = {**data.get(target, {}), **logged[key]}
    if logged.get("params"):
        data["parameters"] = {**data.get("parameters", {}), **logged["params"]}
    return data


def _scan_outputs(run_dir: Path, data: dict) -> None:
    data["tables"] = sorted(p.stem for p in (run_dir / "tables").glob("*.parquet"))
    data["figures"] = sorted(p.stem for p in (run_dir / "figures").glob("*.png"))
    data["models"] = sorted(p.name for p in (run_dir / "models").glob("*") if p.is_dir())
    data["artifacts"] = sorted(p.name for p in (run_dir / "artifacts").glob("*"))
    data["notebook"] = "notebook.ipynb" if (run_dir / "notebook.ipynb").exists() else None
    data["report"] = "report.html" if (run_dir / "report.html").exists() else None


# ----------------------------------------------------------------------------- push / sync
def push(run_dir: str | os.PathLike, tracking_uri: str | None = None) -> dict:
    """Log a finished run folder to MLflow; on failure leave it unsynced. Returns run.json.

    Creates the MLflow run if it does not exist yet (the server was down at the start),
    logs parameters, metrics, tags, every file of the folder as artifacts and the models as
    MLflow models, then ends the MLflow run with the run's status.
    """
    run_dir = Path(run_dir)
    data = _read_json(run_dir / RUN_JSON)
    if not data:
        raise TrackingError(f"no {RUN_JSON} in {run_dir}")
    uri = tracking_uri or data.get("tracking_uri") or get_settings().tracking_uri
    data["tracking_uri"] = uri
    try:
        run_id = _push(run_dir, data, uri)
    except Exception as exc:  # noqa: BLE001 - any failure: keep the files, sync later
        data.update(synced=False, sync_error=f"{type(exc).__name__}: {exc}"[:2000])
        _write_json(run_dir / RUN_JSON, data)
        return data
    data.update(mlflow_run_id=run_id, synced=True, sync_error=None)
    _write_json(run_dir / RUN_JSON, data)
    return data


def _run_tags(data: dict, run_dir: Path) -> dict[str, str]:
    tags = {
        "workbench.template": data.get("template", ""),
        "workbench.name": data.get("name", ""),
        "workbench.run_id": data.get("run_id", ""),
        "workbench.run_dir": str(run_dir.resolve()),
        "workbench.version": __version__,
        "mlflow.runName": f"{data.get('name', '')}-{data.get('run_id', '')[:8]}",
    }
    if data.get("git_commit"):
        tags["workbench.git_commit"] = data["git_commit"]
        tags["mlflow.source.git.commit"] = data["git_commit"]
    tags.update({k: str(v) for k, v in (data.get("tags") or {}).items()})
    return {k: v[:5000] for k, v in tags.items()}


def _push(run_dir: Path, data: dict, uri: str) -> str:
    from mlflow.entities import Metric, Param, RunTag

    with _mlflow_lock(uri):
        client = _client(uri)
        run_id = data.get("mlflow_run_id")
        if run_id:
            try:
                client.get_run(run_id)
            except Exception as exc:  # noqa: BLE001
                if "RESOURCE_DOES_NOT_EXIST" not in str(exc) and "not found" not in str(exc).lower():
                    raise
                run_id = None
        tags = _run_tags(data, run_dir)
        if not run_id:
            exp_id = _retry(_experiment_id, client, data.get("experiment_name") or "workbench", uri)
            started = data.get("started_at")
            start_ms = int(dt.datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC).timestamp() * 1000) if started else None
            run_id = _retry(client.create_run, exp_id, start_time=start_ms, tags=tags,
                            run_name=tags["mlflow.runName"]).info.run_id
        summary = data.get("summary") or {}
        tags.update({f"summary.{k}": json.dumps(v) if not isinstance(v, str) else v
                     for k, v in summary.items()})
        tags["workbench.status"] = data.get("status", "")
        if data.get("error"):
            tags["workbench.error"] = str(data["error"].get("message", ""))[:5000]
        existing = client.get_run(run_id).data.params
        params = {k: v for k, v in sanitize_params(data.get("parameters") or {}).items()
                  if k not in existing}  # a re-push must not change a logged parameter
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in sanitize_metrics(data.get("metrics") or {}).items()]
        tag_list = [RunTag(k, v[:5000]) for k, v in tags.items()]
        param_list = [Param(k, v) for k, v in params.items()]
        for i in range(0, max(len(metrics), len(param_list), len(tag_list)), 100):
            _retry(client.log_batch, run_id, metrics=metrics[i:i + 100],
                   params=param_list[i:i + 100], tags=tag_list[i:i + 100])
    # artifacts go to the artifact store (files / HTTP), outside the SQLite lock
    final = dict(data, mlflow_run_id=run_id, synced=True, sync_error=None)
    _write_json(run_dir / RUN_JSON, final)
    for item in sorted(run_dir.iterdir()):
        if item.name in ("models", LOGGED_JSON) or item.name.startswith("."):
            continue
        if item.is_dir():
            client.log_artifacts(run_id, str(item), artifact_path=item.name)
        else:
            client.log_artifact(run_id, str(item))
    for model_dir in sorted((run_dir / "models").glob("*")):
        _log_model_folder(model_dir, run_id, uri)
    with _mlflow_lock(uri):
        status = MLFLOW_STATUS.get(data.get("status"), "FAILED")
        ended = data.get("ended_at")
        end_ms = int(dt.datetime.strptime(ended, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC).timestamp() * 1000) if ended else None
        _retry(client.set_terminated, run_id, status=status, end_time=end_ms)
    return run_id


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
        with _mlflow_lock(uri), mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            module.log_model(model, name=model_dir.name, signature=meta.signature,
                             input_example=example, pip_requirements=_pip_requirements(flavor),
                             **_save_options(flavor))
    finally:
        tracking_utils._tracking_uri = previous_uri


def find_runs(reports_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every run folder under ``reports_dir`` (default the settings'), oldest first."""
    root = Path(reports_dir or get_settings().reports_dir)
    runs = [p.parent for p in root.glob(f"*/*/*/{RUN_JSON}")]
    return sorted(runs, key=lambda p: p.name)


def read_run(run_dir: str | os.PathLike) -> dict:
    """``run.json`` of a run folder."""
    return _read_json(Path(run_dir) / RUN_JSON)


def sync(reports_dir: str | os.PathLike | None = None, tracking_uri: str | None = None) -> list[dict]:
    """Push every unsynced run (and end runs left RUNNING by a killed process as FAILED).

    Returns the run.json of every run it tried, with ``synced`` telling the outcome.
    """
    recover_stale_runs(reports_dir)
    done = []
    for run_dir in find_runs(reports_dir):
        data = read_run(run_dir)
        if data.get("synced") or data.get("status") == RUNNING:
            continue
        done.append(dict(push(run_dir, tracking_uri), run_dir=str(run_dir)))
    return done


# ----------------------------------------------------------------------------- stale runs
def _marker_dir(reports_dir: Path) -> Path:
    return reports_dir / STATE_DIR / "running"


def _clear_marker(run_dir: Path, data: dict) -> None:
    reports_dir = Path(data.get("reports_dir") or run_dir.parents[2])
    (_marker_dir(reports_dir) / f"{data.get('run_id', '')}.json").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def recover_stale_runs(reports_dir: str | os.PathLike | None = None) -> list[Path]:
    """End as FAILED the runs whose process died while RUNNING (killed, machine reboot).

    Only runs started on this host are judged (by process id). Returns their folders.
    """
    reports_dir = Path(reports_dir or get_settings().reports_dir)
    recovered = []
    for marker in sorted(_marker_dir(reports_dir).glob("*.json")):
        info = _read_json(marker)
        if info.get("host") != socket.gethostname() or _alive(int(info.get("pid", 0))):
            continue
        run_dir = Path(info.get("run_dir", ""))
        if (run_dir / RUN_JSON).exists() and read_run(run_dir).get("status") == RUNNING:
            run = Run(run_dir, owner=True)
            run.finish(FAILED, {"cell_index": None, "ename": "Killed", "evalue": "",
                                "message": f"the process (pid {info.get('pid')}) ended while the "
                                           "run was RUNNING"})
            recovered.append(run_dir)
        marker.unlink(missing_ok=True)
    return recovered


# ----------------------------------------------------------------------------- starting runs
def begin_run(template: str = "notebook", name: str | None = None, *,
              parameters: Mapping[str, Any] | None = None, experiment: str | None = None,
              tags: Mapping[str, str] | None = None, reports_dir: str | os.PathLike | None = None,
              tracking_uri: str | None = None) -> Run:
    """Create the run folder and the MLflow run (or an unsynced record if MLflow is down).

    Prefer :func:`start_run`, which also ends the run. See it for the parameters.
    """
    settings = get_settings()
    reports_dir = Path(reports_dir or settings.reports_dir)
    uri = tracking_uri or settings.tracking_uri
    experiment = experiment or name or template
    name = slug(name or experiment)
    template = slug(template)
    recover_stale_runs(reports_dir)
    commit = git_commit(settings.root)
    started = utcnow()
    data: dict[str, Any] = {
        "run_id": None, "mlflow_run_id": None, "experiment_name": experiment,
        "template": template, "name": name, "status": RUNNING, "synced": False,
        "sync_error": None, "tracking_uri": uri, "parameters": dict(parameters or {}),
        "started_at": _iso(started), "ended_at": None, "tables": [], "figures": [],
        "models": [], "summary": {}, "metrics": {}, "tags": dict(tags or {}), "error": None,
        "notebook": None, "report": None, "workbench_version": __version__,
        "git_commit": commit, "pid": os.getpid(), "host": socket.gethostname(),
        "reports_dir": str(reports_dir.resolve()),
    }
    local_id = uuid.uuid4().hex
    base_tags = _run_tags(dict(data, run_id=local_id), reports_dir)
    base_tags.pop("workbench.run_dir")
    try:
        mlflow_id = _create_mlflow_run(uri, experiment, base_tags["mlflow.runName"], base_tags)
        data.update(run_id=mlflow_id, mlflow_run_id=mlflow_id)
    except Exception as exc:  # noqa: BLE001 - server down, bad URI...: run offline, sync later
        data.update(run_id=local_id, sync_error=f"{type(exc).__name__}: {exc}"[:2000])
        print(f"workbench: MLflow at {uri} is not reachable; the run is kept in reports/ "
              "and `workbench sync` will log it later", file=sys.stderr)
    run_dir = reports_dir / template / name / f"{started:%Y%m%dT%H%M%SZ}-{data['run_id'][:8]}"
    run_dir.mkdir(parents=True, exist_ok=False)
    _write_json(run_dir / RUN_JSON, data)
    marker_dir = _marker_dir(reports_dir)
    marker_dir.mkdir(parents=True, exist_ok=True)
    _write_json(marker_dir / f"{data['run_id']}.json",
                {"run_dir": str(run_dir.resolve()), "pid": os.getpid(), "host": data["host"]})
    if data["mlflow_run_id"]:
        with contextlib.suppress(Exception):  # cosmetic: lets the UI link back to the folder
            with _mlflow_lock(uri):
                _retry(_client(uri).set_tag, data["mlflow_run_id"], "workbench.run_dir",
                       str(run_dir.resolve()))
    return Run(run_dir, owner=True)


@contextlib.contextmanager
def start_run(template: str = "notebook", name: str | None = None, *,
              parameters: Mapping[str, Any] | None = None, experiment: str | None = None,
              tags: Mapping[str, str] | None = None, reports_dir: str | os.PathLike | None = None,
              tracking_uri: str | None = None) -> Iterator[Run]:
    """Start a tracked run; the module-level ``log_*`` functions write to it inside the block.

    The same helper serves ``workbench run`` and JupyterLab::

        with workbench.tracking.start_run(template="adhoc", name="checkout_redesign") as run:
            workbench.tracking.log_table(result.to_frame(), "results")

    Parameters
    ----------
    template : str
        Template (or activity) name: the first folder level under ``reports/``.
    name : str, optional
        Run name, the second folder level (default: ``experiment``, else ``template``).
    parameters : dict, optional
        Logged as MLflow parameters (values cut at 500 characters).
    experiment : str, optional
        MLflow experiment (default: ``name``, else ``template``).
    tags : dict, optional
        Extra MLflow tags.
    reports_dir, tracking_uri : optional
        Default: the settings (``WORKBENCH_REPORTS_DIR``, ``MLFLOW_TRACKING_URI``).

    Yields
    ------
    Run
        Ends FINISHED, or FAILED if the block raises (or as set by :meth:`Run.mark`).
    """
    run = begin_run(template, name, parameters=parameters, experiment=experiment, tags=tags,
                    reports_dir=reports_dir, tracking_uri=tracking_uri)
    _ACTIVE.append(run)
    try:
        yield run
    except BaseException as exc:
        _ACTIVE.remove(run)
        run.finish(FAILED, {"cell_index": None, "ename": type(exc).__name__,
                            "evalue": str(exc), "message": f"{type(exc).__name__}: {exc}"})
        raise
    _ACTIVE.remove(run)
    status, error = run._outcome or (FINISHED, None)
    run.finish(status, error)


def current_run() -> Run | None:
    """The run that ``log_*`` writes to: the innermost :func:`start_run` of this process, else
    the run in ``WORKBENCH_RUN_DIR`` (a kernel started by the runner), else None."""
    if _ACTIVE:
        return _ACTIVE[-1]
    run_dir = os.environ.get(ENV_RUN_DIR)
    if run_dir and (Path(run_dir) / RUN_JSON).exists():
        return _ATTACHED.setdefault(run_dir, Run(run_dir, owner=False))
    return None


def _current(what: str) -> Run | None:
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


def log_fingerprint(source: str | os.PathLike | None, tables: list[str] | None = None) -> str | None:
    """Tag the current run with the input tables' :func:`fingerprint`; no-op outside a run."""
    run = _current("log_fingerprint")
    return run.log_fingerprint(source, tables) if run else None


def artifact_path(filename: str) -> Path:
    """Where to write an extra file of the current run (``artifacts/<filename>``); outside a run,
    a path in a temporary folder (the file is then not logged)."""
    import tempfile

    run = _current("artifact_path")
    if run:
        return run.artifact_path(filename)
    return Path(tempfile.mkdtemp(prefix="workbench-")) / slug(filename)


def log_model(model: Any, name: str, input_example: Any) -> Path | None:
    """Log a fitted model as an MLflow model with signature (see :meth:`Run.log_model`)."""
    run = _current("log_model")
    return run.log_model(model, name, input_example) if run else None


def result_metrics(frame: Any, prefix: str = "") -> dict[str, float]:
    """Key metrics of a results table (``workbench.stats.schema.OUTPUT_COLUMNS``) for MLflow.

    One ``<metric>.<variant>.<field>`` entry per row and field among effect (``lift``),
    ``p_value``, ``chance_to_win``, ``ci_lower``, ``ci_upper``; rows of segment breakdowns
    (``dimension`` other than ``(all)``) are skipped.
    """
    frame = frame.to_frame() if hasattr(frame, "to_frame") and not hasattr(frame, "iterrows") else frame
    fields = {"effect": "lift", "p_value": "p_value", "chance_to_win": "chance_to_win",
              "ci_lower": "ci_lower", "ci_upper": "ci_upper"}
    out: dict[str, float] = {}
    for _, row in frame.iterrows():
        if "dimension" in frame.columns and row.get("dimension") not in (None, "(all)") \
                and row.get("dimension") == row.get("dimension"):
            continue
        for col, label in fields.items():
            if col in frame.columns:
                out[f"{prefix}{row['metric']}.{row['variant']}.{label}"] = row[col]
    return sanitize_metrics(out)


# ----------------------------------------------------------------------------- CLI
def main_sync(args) -> int:
    """``workbench sync``: push unsynced runs; exit 0 when all are synced, 1 otherwise."""
    results = sync(getattr(args, "reports_dir", None), getattr(args, "tracking_uri", None))
    failed = [r for r in results if not r.get("synced")]
    for r in results:
        state = "synced" if r.get("synced") else f"NOT synced ({r.get('sync_error')})"
        print(f"{r['run_dir']}: {state}")
    if not results:
        print("workbench sync: nothing to sync")
    return 1 if failed else 0
