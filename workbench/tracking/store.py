"""The run folder: where everything a run logs is written first, and its record ``run.json``.

A run is a folder ``reports/<template>/<name>/<YYYYmmddTHHMMSSZ>-<id[:8]>/``::

    run.json                 run record (see ``RUN_JSON_FIELDS``)
    logged.json              what the notebook logged so far (merged into run.json at the end)
    notebook.ipynb           executed notebook (template runs)
    report.html              HTML export with the code hidden (template runs)
    tables/<name>.parquet    log_table()
    figures/<name>.png       log_figure()
    models/<name>/           log_model() (an MLflow model folder, with signature)
    artifacts/<file>         artifact_path() (other files, e.g. the Evidently HTML report)

Runs in progress leave a marker in ``reports/.workbench/running/``; a run whose process died
is ended FAILED by :func:`end_stale_runs`. This module writes files only (MLflow is
:mod:`workbench.tracking.mlflow`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import math
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from workbench.config import get_settings
from workbench.errors import RunFailure

ENV_RUN_DIR = "WORKBENCH_RUN_DIR"
RUN_JSON = "run.json"
LOGGED_JSON = "logged.json"  # written by the notebook side, merged into run.json at the end
STATE_DIR = ".workbench"  # under reports/: markers of runs in progress

RUNNING, FINISHED, FAILED, STOPPED = "RUNNING", "FINISHED", "FAILED", "STOPPED"
DISK_FULL = "no space left on device"

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
    "error": "RunFailure.to_dict() of a failed run: {cell_index, ename, evalue, message, "
             "traceback_tail}, else null",
    "notebook": "notebook.ipynb or null", "report": "report.html or null",
}

_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]+")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

try:  # from the installed metadata: importing the package root would lift tracking above it
    WORKBENCH_VERSION = version("workbench")
except PackageNotFoundError:  # pragma: no cover - a checkout used without installing
    WORKBENCH_VERSION = "0+unknown"


# ----------------------------------------------------------------------------- small helpers
def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime) -> str:
    """``t`` as run.json writes times (UTC, whole seconds)."""
    return t.strftime(_TIME_FORMAT)


def epoch_ms(text: str | None) -> int | None:
    """A run.json time as milliseconds since the epoch (MLflow's unit), None stays None."""
    if not text:
        return None
    return int(dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC).timestamp() * 1000)


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
    if hasattr(value, "isoformat"):  # datetime, date, pandas Timestamp
        return value.isoformat()
    return str(value)


def disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the disk or a quota is full."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "no space left on device" in text or "database or disk is full" in text:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def error_cause(exc: BaseException) -> str:
    """A short, one-line reason for ``exc``: ``no space left on device`` for a full disk, else
    its first meaningful line (never a traceback, never a file's content)."""
    if disk_full(exc):
        return DISK_FULL
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() + (f": {exc.filename}" if exc.filename else "")
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.startswith("(raised as a result of"):
            return f"{type(exc).__name__}: {line}"[:300]
    return type(exc).__name__


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends,
    removed if it raises. A reader (dashboard, sync) never sees half a file, and a full disk
    leaves neither a truncated file nor a temporary one behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json(path: Path, data: Mapping) -> None:
    """Write ``data`` as strict JSON, atomically (see :func:`atomic_path`)."""
    text = json.dumps(jsonable(data), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _rewrite_in_place(path: Path, data: Mapping) -> None:
    """Overwrite ``path`` with compact JSON in the disk blocks it already holds.

    The last resort on a full disk, where no new block can be had for a temporary file: only
    done when the new text fits in the file's allocated blocks, so it cannot end half-written.
    """
    text = json.dumps(jsonable(data), separators=(",", ":"), allow_nan=False).encode()
    info = path.stat()
    if len(text) > max(info.st_size, info.st_blocks * 512):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    with open(path, "r+b") as handle:
        handle.write(text)
        handle.truncate()


def save_json(path: Path, data: Mapping, *, compact: Mapping | None = None) -> None:
    """:func:`write_json`, falling back on a full disk to rewriting the file in place (with
    ``compact``, a smaller version of ``data``, when given). Raises the OSError if neither
    fits."""
    try:
        write_json(path, data)
    except OSError as exc:
        if not disk_full(exc) or not path.exists():
            raise
        try:
            _rewrite_in_place(path, data)
        except OSError:
            if compact is None:
                raise
            _rewrite_in_place(path, compact)


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or an empty dict if there is no file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default the project root), or None."""
    path = Path(path or get_settings().root)
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# ----------------------------------------------------------------------------- reading runs
def find_runs(reports_dir: str | os.PathLike | None = None) -> list[Path]:
    """Every run folder under ``reports_dir`` (default the settings'), oldest first."""
    root = Path(reports_dir or get_settings().reports_dir)
    runs = [p.parent for p in root.glob(f"*/*/*/{RUN_JSON}")]
    return sorted(runs, key=lambda p: p.name)


def read_run(run_dir: str | os.PathLike) -> dict:
    """``run.json`` of a run folder (an empty dict if it has none)."""
    return read_json(Path(run_dir) / RUN_JSON)


def read_record(run_dir: Path) -> dict:
    """``run.json`` with what the notebook logged since (before the run ends)."""
    return merge_logged(read_json(run_dir / RUN_JSON), read_json(run_dir / LOGGED_JSON))


def merge_logged(data: dict, logged: dict) -> dict:
    """``run.json`` content updated with ``logged.json`` (metrics, summary, tags, params)."""
    if not logged:
        return data
    data = dict(data)
    for key in ("metrics", "summary", "tags"):
        if logged.get(key):
            data[key] = {**data.get(key, {}), **logged[key]}
    if logged.get("params"):
        data["parameters"] = {**data.get("parameters", {}), **logged["params"]}
    return data


def update_logged(run_dir: Path, key: str, values: Mapping[str, Any]) -> None:
    """Add ``values`` to the ``key`` section of ``logged.json``."""
    path = run_dir / LOGGED_JSON
    data = read_json(path)
    data.setdefault(key, {}).update(jsonable(dict(values)))
    write_json(path, data)


def _scan_outputs(run_dir: Path, data: dict) -> None:
    data["tables"] = sorted(p.stem for p in (run_dir / "tables").glob("*.parquet"))
    data["figures"] = sorted(p.stem for p in (run_dir / "figures").glob("*.png"))
    data["models"] = sorted(p.name for p in (run_dir / "models").glob("*") if p.is_dir())
    data["artifacts"] = sorted(p.name for p in (run_dir / "artifacts").glob("*"))
    data["notebook"] = "notebook.ipynb" if (run_dir / "notebook.ipynb").exists() else None
    data["report"] = "report.html" if (run_dir / "report.html").exists() else None


# ----------------------------------------------------------------------------- writing runs
def create_run_folder(reports_dir: Path, data: dict, started: dt.datetime) -> Path:
    """Make the folder of a new run, write its ``run.json`` and the in-progress marker."""
    run_dir = (reports_dir / data["template"] / data["name"]
               / f"{started:%Y%m%dT%H%M%SZ}-{data['run_id'][:8]}")
    run_dir.mkdir(parents=True, exist_ok=False)
    write_json(run_dir / RUN_JSON, data)
    marker_dir = _marker_dir(reports_dir)
    marker_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker_dir / f"{data['run_id']}.json",
               {"run_dir": str(run_dir.resolve()), "pid": os.getpid(), "host": data["host"]})
    return run_dir


def close_run_folder(run_dir: Path, status: str, failure: RunFailure | None = None) -> dict:
    """Write the final ``run.json`` (status, end time, error, outputs) and drop the marker.

    The run is then ready to push; ``synced`` stays as it was. Returns the record.

    On a full disk, ``run.json`` is rewritten in place (without the traceback tail if need
    be); if even that cannot be done, the outcome is left in the run's marker, so that the next
    ``workbench sync`` records this cause rather than "Killed", and the returned record has
    ``record_error`` set (it is never written).
    """
    data = read_record(run_dir)
    data.update(status=status, ended_at=iso(utcnow()),
                error=failure.to_dict() if failure else None)
    _scan_outputs(run_dir, data)
    reports_dir = Path(data.get("reports_dir") or run_dir.parents[2])
    marker = _marker_dir(reports_dir) / f"{data.get('run_id', '')}.json"
    logged = run_dir / LOGGED_JSON
    try:
        try:
            write_json(run_dir / RUN_JSON, data)
        except OSError as exc:
            if not disk_full(exc):
                raise
            logged.unlink(missing_ok=True)  # merged into data already; frees its blocks
            save_json(run_dir / RUN_JSON, data, compact=_compact(data))
    except OSError as exc:
        if not disk_full(exc):
            raise
        with contextlib.suppress(OSError, ValueError):
            info = read_json(marker)
            if info:
                save_json(marker, dict(info, status=status, error=_compact(data)["error"]))
        return dict(data, record_error=f"run.json could not be updated: {DISK_FULL}")
    logged.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)
    return data


def _compact(data: dict) -> dict:
    """``data`` without the bulky parts that can be dropped (the traceback tail)."""
    error = data.get("error")
    if error:
        error = dict(error, traceback_tail=[], message=str(error.get("message", ""))[:500],
                     evalue=str(error.get("evalue", ""))[:300])
    return dict(data, error=error)


def run_ids(run_dir: str | os.PathLike) -> tuple[str, ...]:
    """The ids a run folder answers to: its MLflow run id, its local run id and the 8-character
    id of its folder name (they differ for a run recorded offline and synced later)."""
    run_dir = Path(run_dir)
    try:
        data = read_run(run_dir)
    except (OSError, ValueError):
        data = {}
    ids = [data.get("mlflow_run_id"), data.get("run_id"), run_dir.name.rpartition("-")[2]]
    return tuple(dict.fromkeys(str(i) for i in ids if i))


def run_matches(run_id: str, run_dir: str | os.PathLike) -> bool:
    """True when ``run_id`` is one of :func:`run_ids` of the folder, or a prefix of at least 8
    characters of one of them."""
    run_id = (run_id or "").strip()
    if not run_id:
        return False
    ids = run_ids(run_dir)
    return run_id in ids or (len(run_id) >= 8 and any(i.startswith(run_id) for i in ids))


def resolve_run(run_id: str, reports_dir: str | os.PathLike | None = None) -> Path | None:
    """The run folder that ``run_id`` names (see :func:`run_matches`): an MLflow run id, a
    local run id, or the 8-character prefix in a folder's name. None when no folder matches
    or when the prefix names more than one run."""
    matches = [d for d in find_runs(reports_dir) if run_matches(run_id, d)]
    exact = [d for d in matches if (run_id or "").strip() in run_ids(d)]
    if len(exact) == 1:
        return exact[0]
    return matches[0] if len(matches) == 1 else None


# ----------------------------------------------------------------------------- stale runs
def _marker_dir(reports_dir: Path) -> Path:
    return reports_dir / STATE_DIR / "running"


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


def end_stale_runs(reports_dir: str | os.PathLike | None = None) -> list[Path]:
    """End as FAILED (in the folder) the runs whose process died while RUNNING.

    Only runs started on this host are judged (by process id). The runs are left unsynced;
    :func:`workbench.tracking.recover_stale_runs` also pushes them. Returns their folders.
    """
    reports_dir = Path(reports_dir or get_settings().reports_dir)
    ended = []
    for marker in sorted(_marker_dir(reports_dir).glob("*.json")):
        info = read_json(marker)
        if info.get("host") != socket.gethostname() or _alive(int(info.get("pid", 0))):
            continue
        run_dir = Path(info.get("run_dir", ""))
        if (run_dir / RUN_JSON).exists() and read_run(run_dir).get("status") == RUNNING:
            # a run that could not write its end (full disk) left its outcome in the marker
            failure = RunFailure.from_dict(info.get("error")) or RunFailure(
                None, "Killed", "", f"the process (pid {info.get('pid')}) ended while the run "
                                    "was RUNNING")
            data = close_run_folder(run_dir, info.get("status") or FAILED, failure)
            if data.get("record_error"):
                continue  # the disk is still full: keep the marker, try again next time
            ended.append(run_dir)
        marker.unlink(missing_ok=True)
    return ended
