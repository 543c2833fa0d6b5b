"""Dashboards: read what runs logged, publish runs, serve Voilà with secure defaults.

Dashboards never recompute an analysis: they read the tables, figures and summary that a template
run wrote into its run directory (``reports/<template>/<name>/<stamp>-<id8>/``) and the MLflow tag
``workbench.published``. Everything a viewer can choose (a dropdown, the page's query string) is
treated as untrusted: it is only ever matched against the runs that exist.
"""
from __future__ import annotations

import html
import io
import json
import logging
import math
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from workbench.config import get_settings
from workbench.errors import PublishError

log = logging.getLogger(__name__)

PUBLISHED_TAG = "workbench.published"
RUN_FILE = "run.json"
EXPERIMENT_TABLE = "results"
MODEL_TABLES = ("scores", "shap_importance", "drift")
DASHBOARDS = {"experiment": "experiment.ipynb", "model": "model.ipynb"}
# What Voilà may serve besides the rendered dashboards: pictures only, never code or notebooks.
FILE_ALLOWLIST = r".*\.(png|jpg|gif|svg)"
FILE_DENYLIST = r".*\.(ipynb|py)"
CULL_IDLE_TIMEOUT = 600
CULL_INTERVAL = 60
SRM_THRESHOLD = 0.001
ALL_RUNS_ENV = "WORKBENCH_DASHBOARD_ALL_RUNS"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

NO_RUNS = ("No published {kind} runs yet. A data scientist publishes one with "
           "<code>workbench publish RUN_ID</code>.")
RUN_NOT_FOUND = "Run “{run_id}” was not found among the {scope} runs."
PART_FAILED = "This part of the dashboard could not be shown."


# --------------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One run directory, as described by its ``run.json``.

    Attributes
    ----------
    run_id : str
        The MLflow run id.
    template, name, status : str
        Template, run name and final status written by the runner.
    started_at, ended_at : str
        ISO timestamps (UTC).
    path : Path
        The run directory.
    parameters, summary : dict
        The run's parameters and the summary logged with ``log_summary``.
    tables, figures : tuple of str
        Names of the logged tables (``tables/<name>.parquet``) and figures (``figures/<name>.png``).
    published : bool
        Whether the MLflow tag ``workbench.published`` is ``"true"``.
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
        """What the run is about: its ``experiment_id`` parameter, MLflow experiment or name."""
        return str(self.experiment_name or self.parameters.get("experiment_id") or self.name
                   or self.template)

    @property
    def label(self) -> str:
        """A short human label for dropdowns."""
        when = self.started_at.replace("T", " ")[:16] if self.started_at else "?"
        flag = "" if self.published else " (unpublished)"
        return f"{when} · {self.name} · {self.status} · {self.run_id[:8]}{flag}"

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "template": self.template, "name": self.name,
                "experiment": self.experiment, "status": self.status,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "published": self.published, "path": str(self.path)}


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


def _read_record(run_json: Path, published: set[str]) -> RunRecord | None:
    try:
        meta = json.loads(run_json.read_text())
    except (OSError, ValueError) as exc:
        log.warning("skipping %s: %s", run_json, exc)
        return None
    run_dir = run_json.parent
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


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def published_run_ids(tracking_uri: str | None = None) -> set[str]:
    """Ids of the runs whose MLflow tag ``workbench.published`` is ``"true"``.

    A local SQLite store is read directly (read-only, one query): importing MLflow takes
    seconds and every page view of a dashboard would pay for it. Other stores go through
    ``MlflowClient``. A store that does not exist yet has no published runs (it is not created).
    """
    uri = tracking_uri or get_settings().tracking_uri
    db = _sqlite_path(uri)
    if db is not None:
        if not db.exists():
            return set()
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                rows = con.execute(
                    "SELECT t.run_uuid FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                    "WHERE t.key = ? AND lower(t.value) = 'true' AND r.lifecycle_stage = 'active'",
                    (PUBLISHED_TAG,),
                ).fetchall()
            finally:
                con.close()
            return {row[0] for row in rows}
        except sqlite3.Error as exc:  # an unexpected schema: ask MLflow itself
            log.info("reading %s directly failed (%s); using MlflowClient", db, exc)
    return _published_via_client(uri)


def _published_via_client(uri: str) -> set[str]:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    found: set[str] = set()
    if not experiment_ids:
        return found
    token = None
    while True:
        page = client.search_runs(experiment_ids,
                                  filter_string=f"tags.`{PUBLISHED_TAG}` = 'true'",
                                  run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                  page_token=token)
        found.update(run.info.run_id for run in page)
        token = page.token
        if not token:
            return found


def list_runs(template: str | None = None, published_only: bool = False, *,
              reports_dir: str | Path | None = None,
              tracking_uri: str | None = None) -> list[RunRecord]:
    """Runs found under the reports folder, newest first.

    Parameters
    ----------
    template : str, optional
        Keep only runs of this template (e.g. ``"ab_test"``).
    published_only : bool
        Keep only runs tagged ``workbench.published = "true"`` in MLflow.
    reports_dir, tracking_uri : optional
        Default to the settings (``WORKBENCH_REPORTS_DIR``, ``MLFLOW_TRACKING_URI``).
    """
    settings = get_settings()
    root = Path(reports_dir) if reports_dir is not None else settings.reports_dir
    published = published_run_ids(tracking_uri or settings.tracking_uri)
    records = []
    for run_json in sorted(root.glob(f"*/*/*/{RUN_FILE}")) if root.is_dir() else []:
        record = _read_record(run_json, published)
        if record is None:
            continue
        if template is not None and record.template != template:
            continue
        if published_only and not record.published:
            continue
        records.append(record)
    # started_at has whole seconds: runs started in the same second go by when they were written
    records.sort(key=lambda r: (r.started_at, _mtime(r.path / RUN_FILE)), reverse=True)
    return records


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_run(run_id: str, runs: list[RunRecord]) -> RunRecord | None:
    """The run among ``runs`` whose id is ``run_id`` or starts with it (at least 8 characters)."""
    run_id = (run_id or "").strip()
    if not run_id:
        return None
    exact = [r for r in runs if r.run_id == run_id]
    if exact:
        return exact[0]
    if len(run_id) < 8:
        return None
    matches = [r for r in runs if r.run_id.startswith(run_id)]
    return matches[0] if len(matches) == 1 else None


def load_run(run_id: str, *, reports_dir: str | Path | None = None,
             tracking_uri: str | None = None, runs: list[RunRecord] | None = None) -> LoadedRun:
    """Read a run's logged tables (parquet), figure paths and summary.

    Raises
    ------
    PublishError
        When no run directory has this id (or unique id prefix).
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


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------
def publish(run_id: str, published: bool = True, *, tracking_uri: str | None = None,
            reports_dir: str | Path | None = None) -> str:
    """Set the MLflow tag ``workbench.published`` of a run; returns the full run id.

    ``run_id`` may be the full MLflow id or the 8-character prefix shown in run folder names.
    Unpublishing sets the tag to ``"false"`` (kept, so the history shows it was withdrawn).
    """
    settings = get_settings()
    uri = tracking_uri or settings.tracking_uri
    db = _sqlite_path(uri)
    if db is not None and not db.exists():
        raise PublishError(f"no MLflow database at {db}: run a template first")
    record = find_run(run_id, list_runs(reports_dir=reports_dir, tracking_uri=uri))
    full_id = record.run_id if record is not None else run_id
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        client.get_run(full_id)
        client.set_tag(full_id, PUBLISHED_TAG, "true" if published else "false")
    except MlflowException as exc:
        raise PublishError(f"run {run_id!r} not found in MLflow ({uri})") from exc
    return full_id


def main(args) -> int:
    """``workbench publish RUN_ID [--unpublish]``."""
    full_id = publish(args.run_id, published=not args.unpublish)
    print(f"{'unpublished' if args.unpublish else 'published'} run {full_id}")
    return 0


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------
def voila_command(target: str | Path, *, port: int, ip: str = "127.0.0.1",
                  cull_idle_timeout: int = CULL_IDLE_TIMEOUT,
                  cull_interval: int = CULL_INTERVAL, preheat: bool = True) -> list[str]:
    """The Voilà command line with the secure defaults (token/password go in a config file).

    Every option is spelt as Voilà 0.5 knows it: a misspelt one is only warned about.
    ``preheat`` keeps one kernel per dashboard started with its imports done, waiting for the
    next viewer (the dashboards read the query string only once the request arrives).
    """
    return [
        sys.executable, "-m", "voila", str(target),
        "--no-browser",
        f"--port={int(port)}",
        "--Voila.port_retries=0",  # fail rather than silently serve on another port
        f"--Voila.ip={ip}",
        "--strip_sources=True",
        "--show_tracebacks=False",
        f"--VoilaConfiguration.file_allowlist={FILE_ALLOWLIST}",
        f"--VoilaConfiguration.file_denylist={FILE_DENYLIST}",
        "--VoilaConfiguration.allow_template_override=NO",
        "--VoilaConfiguration.allow_theme_override=NO",
        f"--MappingKernelManager.cull_idle_timeout={int(cull_idle_timeout)}",
        f"--MappingKernelManager.cull_interval={int(cull_interval)}",
        f"--preheat_kernel={bool(preheat)}",
        f"--pool_size={1 if preheat else 0}",
    ]


def voila_config(token: str | None = None, password: str | None = None) -> dict:
    """Voilà configuration holding the secrets, so they never appear in ``ps`` or kernel env."""
    config: dict[str, Any] = {}
    if token:
        config["Voila"] = {"token": token}
    if password:
        from jupyter_server.auth import passwd

        config["PasswordIdentityProvider"] = {"hashed_password": passwd(password)}
    return config


def dashboard_target(dashboard: str | None = None) -> Path:
    """The notebook (``experiment``, ``model`` or a file name) or the dashboards folder."""
    folder = get_settings().dashboards_dir
    if not dashboard:
        target = folder
    else:
        name = DASHBOARDS.get(dashboard, dashboard)
        target = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not target.exists():
        known = ", ".join(sorted(DASHBOARDS))
        raise PublishError(f"dashboard {dashboard or str(folder)!r} not found (known: {known})")
    return target


def start_server(target: str | Path, *, port: int, ip: str = "127.0.0.1",
                 token: str | None = None, password: str | None = None,
                 config_dir: str | Path, env: dict | None = None,
                 cull_idle_timeout: int = CULL_IDLE_TIMEOUT, cull_interval: int = CULL_INTERVAL,
                 all_runs: bool = False, preheat: bool = True,
                 **popen_kwargs) -> subprocess.Popen:
    """Start Voilà in the background; the caller owns the process (terminate and wait).

    ``config_dir`` becomes the server's working directory, where Voilà reads ``voila.json``:
    pass a fresh private folder (a ``voila.py`` found there would be executed).
    """
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / "voila.json"
    config_file.unlink(missing_ok=True)
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from the start
    with os.fdopen(fd, "w") as handle:
        json.dump(voila_config(token, password), handle)
    run_env = dict(os.environ if env is None else env)
    settings = get_settings()
    run_env.setdefault("WORKBENCH_ROOT", str(settings.root))
    uri = run_env.get("MLFLOW_TRACKING_URI") or settings.tracking_uri
    db = _sqlite_path(uri)
    if db is not None and not db.is_absolute():  # kernels run in the dashboards folder
        uri = f"sqlite:///{db.resolve()}"
    run_env["MLFLOW_TRACKING_URI"] = uri
    run_env.pop("JUPYTER_TOKEN", None)
    if all_runs:
        run_env[ALL_RUNS_ENV] = "1"
    cmd = voila_command(Path(target).resolve(), port=port, ip=ip,
                        cull_idle_timeout=cull_idle_timeout, cull_interval=cull_interval,
                        preheat=preheat)
    return subprocess.Popen(cmd, cwd=config_dir, env=run_env, **popen_kwargs)


def required_token(ip: str, token: str | None, password: str | None) -> str | None:
    """The token to use: the given one, or a random one when bound beyond localhost unprotected."""
    if token or password or ip in LOOPBACK:
        return token or None
    return secrets.token_urlsafe(24)  # reachable from other machines: never without a secret


def main_serve(args) -> int:
    """``workbench serve``: Voilà on the dashboards, bound to localhost unless told otherwise."""
    target = dashboard_target(getattr(args, "dashboard", None))
    token = args.token or os.environ.get("WORKBENCH_TOKEN") or None
    password = os.environ.get("WORKBENCH_PASSWORD") or None
    if getattr(args, "password", False) and not password:
        import getpass

        password = getpass.getpass("Dashboard password: ")
    token = required_token(args.ip, token, password)
    query = f"?token={token}" if token else ""
    host = f"[{args.ip}]" if ":" in args.ip else args.ip
    pages = ([f"voila/render/{name}" for name in sorted(p.name for p in target.glob("*.ipynb"))]
             if target.is_dir() else [""])
    for page in pages:
        print(f"Dashboard: http://{host}:{args.port}/{page}{query}", flush=True)
    with tempfile.TemporaryDirectory(prefix="workbench-serve-") as tmp:
        proc = start_server(target, port=args.port, ip=args.ip, token=token, password=password,
                            config_dir=tmp, all_runs=getattr(args, "all_runs", False),
                            preheat=not getattr(args, "no_preheat", False))
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return 130


# --------------------------------------------------------------------------------------------
# Dashboards (ipywidgets). The notebooks in notebooks/dashboards/ only call these.
# --------------------------------------------------------------------------------------------
_BOX = ("padding:10px 14px;margin:6px 0;border-radius:6px;border-left:6px solid {colour};"
        "background:{background};font-size:14px;line-height:1.45")
_STYLES = {"info": ("#4C72B0", "#EEF3FA"), "good": ("#2E8B57", "#EDF7F0"),
           "warning": ("#D98E04", "#FDF6E7"), "bad": ("#C44E52", "#FBEDEE")}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _box(inner_html: str, kind: str = "info") -> str:
    colour, background = _STYLES[kind]
    return f'<div style="{_BOX.format(colour=colour, background=background)}">{inner_html}</div>'


def warm_up() -> None:
    """Import what drawing a dashboard needs (done by a preheated kernel before any viewer)."""
    import ipywidgets  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    plots()


def wait_for_viewer() -> None:
    """In a preheated Voilà kernel, block until a viewer's request arrives (sets QUERY_STRING).

    Outside Voilà's preheat mode this returns at once.
    """
    if os.environ.get("VOILA_PREHEAT", "False") == "True":
        from voila.utils import wait_for_request

        wait_for_request()


def query_parameters(query_string: str | None = None) -> dict[str, str]:
    """The page's query parameters (Voilà puts them in ``QUERY_STRING``), first value of each.

    Values come from the viewer: they are cut to 200 characters and only ever compared with
    names of existing runs and metrics.
    """
    if query_string is None:
        query_string = os.environ.get("QUERY_STRING", "")
    parsed = parse_qs(query_string or "", keep_blank_values=False)
    return {k: v[0][:200] for k, v in parsed.items() if v}


def _published_only_default() -> bool:
    return os.environ.get(ALL_RUNS_ENV, "") != "1"


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt_effect(value: Any, relative: bool) -> str:
    if not _finite(value):
        return "n/a"
    value = float(value)
    return f"{value:+.1%}" if relative else f"{value:+.4g}"


def _p_equals(value: Any) -> str:
    text = _fmt_p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _fmt_p(value: Any) -> str:
    if not _finite(value):
        return "n/a"
    value = float(value)
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _overall(frame):
    """Rows of a results table that are neither a segment nor a day."""
    if frame is None:
        return None
    rows = frame
    if "dimension" in rows.columns:
        rows = rows[rows["dimension"].isna() | (rows["dimension"] == "(all)")]
    if "date" in rows.columns:
        rows = rows[rows["date"].isna()]
    return rows


def _is_relative(run: LoadedRun) -> bool:
    return str(run.record.parameters.get("difference", "relative")) != "absolute"


def _level(run: LoadedRun) -> str:
    try:
        alpha = float(run.record.parameters.get("alpha", 0.05))
    except (TypeError, ValueError):
        alpha = 0.05
    return f"{1 - alpha:.0%}"


def decision_sentences(run: LoadedRun) -> tuple[str, list[str]]:
    """The headline decision and one plain sentence per metric x variant (not escaped)."""
    summary = run.summary or {}
    decision = summary.get("decision")
    if isinstance(decision, dict):
        headline = "; ".join(f"{k}: {v}" for k, v in decision.items())
    elif isinstance(decision, (list, tuple)):
        headline = "; ".join(str(v) for v in decision)
    else:
        headline = str(decision) if decision else "No decision was recorded for this run."
    results = _overall(run.table(EXPERIMENT_TABLE))
    sentences: list[str] = []
    if results is None or results.empty:
        return headline, sentences
    relative, level = _is_relative(run), _level(run)
    chances = chance_to_win(run)
    for row in results.to_dict("records"):
        metric, variant = row.get("metric", "?"), row.get("variant", "?")
        error = row.get("error_message")
        if isinstance(error, str) and error:
            sentences.append(f"{metric} for {variant}: could not be computed ({error}).")
            continue
        effect, lo, hi = row.get("effect"), row.get("ci_lower"), row.get("ci_upper")
        interval = (f"{level} interval {_fmt_effect(lo, relative)} to {_fmt_effect(hi, relative)}"
                    if _finite(lo) and _finite(hi) else "no interval")
        verdict = row.get("verdict")
        if not isinstance(verdict, str) or not verdict:
            if _finite(lo) and float(lo) > 0:
                verdict = "higher than control"
            elif _finite(hi) and float(hi) < 0:
                verdict = "lower than control"
            else:
                verdict = "no detectable effect"
        text = f"{metric} for {variant}: {verdict} ({_fmt_effect(effect, relative)}, {interval}"
        p = _p_of(row)
        if _finite(p):
            text += f"; {_p_equals(p)}"
        chance = chances.get((metric, variant))
        if _finite(chance):
            text += f"; chance to beat control {float(chance):.0%}"
        sentences.append(text + ").")
    return headline, sentences


def _p_of(row: dict) -> Any:
    adjusted = row.get("p_value_adjusted")
    return adjusted if _finite(adjusted) else row.get("p_value")


def chance_to_win(run: LoadedRun) -> dict:
    """``{(metric, variant): chance to beat control}`` from the run's results, else from its
    ``bayesian`` table (the ab_test template logs the Bayesian readout there)."""
    for name in (EXPERIMENT_TABLE, "bayesian"):
        frame = _overall(run.table(name))
        if frame is not None and "chance_to_win" in frame.columns \
                and frame["chance_to_win"].notna().any():
            return {(r["metric"], r["variant"]): r["chance_to_win"]
                    for r in frame.to_dict("records")}
    return {}


def srm_status(run: LoadedRun) -> tuple[str, str]:
    """(kind, plain sentence) about the sample ratio mismatch check."""
    p = (run.summary or {}).get("srm_p_value")
    results = run.table(EXPERIMENT_TABLE)
    if not _finite(p) and results is not None and "srm_p_value" in results.columns:
        values = results["srm_p_value"].dropna()
        p = float(values.min()) if len(values) else None
    if not _finite(p):
        return "warning", "The traffic split was not checked in this run (no SRM p-value logged)."
    p = float(p)
    if p < SRM_THRESHOLD:
        return "bad", (f"Warning: the traffic split differs from the plan (SRM check "
                       f"{_p_equals(p)}). Something went wrong in the assignment: do not trust "
                       "these results until it is explained.")
    return "good", f"The traffic split matches the plan (SRM check {_p_equals(p)})."


def _check_state(value: Any) -> str | None:
    """'ok', 'warn' or 'fail' from a status/passed cell of a checks table (None: unknown)."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("ok", "pass", "passed", "true", "good", "info"):
            return "ok"
        if low in ("warn", "warning"):
            return "warn"
        if low in ("fail", "failed", "error", "false", "bad"):
            return "fail"
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return "ok" if bool(value) else "fail"


def quality_status(run: LoadedRun) -> tuple[str, list[str]]:
    """(kind, plain sentences) about the data-quality checks logged in the ``validation`` table.

    The table is the readout's ``ValidationReport.to_frame()``: ``check, status
    ('ok'|'warn'|'fail'), ..., detail``.
    """
    table = run.table("validation")
    if table is None or table.empty:
        return "warning", ["No data-quality checks were logged for this run."]
    name_col = next((c for c in ("check", "name", "rule") if c in table.columns), None)
    msg_col = next((c for c in ("detail", "message", "details") if c in table.columns), None)
    flag_col = next((c for c in ("status", "passed", "ok") if c in table.columns), None)
    found = {"fail": [], "warn": []}
    for row in table.to_dict("records"):
        state = _check_state(row.get(flag_col)) if flag_col else None
        if state in found:
            label = row.get(name_col, "a check") if name_col else "a check"
            detail = row.get(msg_col) if msg_col else ""
            found[state].append(f"{label}: {detail}" if detail else str(label))
    failed, warned = found["fail"], found["warn"]
    if not failed and not warned:
        return "good", [f"All {len(table)} data-quality checks passed."]
    parts = []
    if failed:
        parts.append(f"{len(failed)} failed")
    if warned:
        parts.append(f"{len(warned)} {'needs' if len(warned) == 1 else 'need'} attention")
    lines = [f"Of {len(table)} data-quality checks, {' and '.join(parts)}:"]
    lines += [f"Failed: {x}" for x in failed] + [f"Check: {x}" for x in warned]
    return ("bad" if failed else "warning"), lines


def _figure_png(fig) -> bytes:
    if not hasattr(fig, "savefig") and hasattr(fig, "get_figure"):  # an Axes
        fig = fig.get_figure()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    if getattr(fig, "number", None) is not None:  # made through pyplot: free it
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buffer.getvalue()


def _new_axes(height: float, width: float = 6.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _plotted(plot, frame, *, height: float, width: float = 6.4, **kwargs):
    """A figure drawn by a :mod:`workbench.plots.experiment` function on a tidy frame."""
    fig, ax = _new_axes(height, width)
    plot(frame, ax=ax, **kwargs)
    fig.tight_layout()
    return fig


class _Dashboard:
    """Shared machinery: run selection, query parameters, friendly failures."""

    kind = "experiment"

    def __init__(self, run_id: str | None, published_only: bool | None,
                 query_string: str | None):
        import ipywidgets as widgets

        warm_up()
        self.widgets = widgets
        if query_string is None:
            wait_for_viewer()
        self.query = query_parameters(query_string)
        self.published_only = (_published_only_default() if published_only is None
                               else published_only)
        self.requested = run_id or self.query.get("run")
        self.notice = widgets.HTML()
        self.experiment_select = widgets.Dropdown(description="Experiment",
                                                  layout=widgets.Layout(width="340px"))
        self.run_select = widgets.Dropdown(description="Run", layout=widgets.Layout(width="520px"))
        self.body = widgets.VBox()
        self.run: LoadedRun | None = None
        try:
            self.runs = [r for r in list_runs(published_only=self.published_only)
                         if self.accepts(r)]
        except Exception as exc:  # noqa: BLE001 - a viewer never sees a traceback
            log.debug("listing runs failed", exc_info=True)
            self.runs = []
            self.notice.value = _box(_esc(f"{PART_FAILED} ({type(exc).__name__})"), "bad")

    def accepts(self, record: RunRecord) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self):
        """Fill the selectors (honouring ``?run=``) and render the chosen run."""
        if not self.runs:
            self.experiment_select.layout.display = self.run_select.layout.display = "none"
            scope = "published " if self.published_only else ""
            self.notice.value = self.notice.value or _box(
                NO_RUNS.format(kind=f"{self.kind}").replace("published ", scope), "info")
            if self.requested:
                self.notice.value = _box(_esc(RUN_NOT_FOUND.format(
                    run_id=self.requested, scope="published" if self.published_only else "logged")),
                    "warning") + self.notice.value
            return
        chosen = self.runs[0]
        if self.requested:
            found = find_run(self.requested, self.runs)
            if found is None:
                scope = "published" if self.published_only else "logged"
                self.notice.value = _box(
                    _esc(RUN_NOT_FOUND.format(run_id=self.requested, scope=scope))
                    + " Showing the latest one instead.", "warning")
            else:
                chosen = found
        elif self.query.get("experiment"):
            same = [r for r in self.runs if r.experiment == self.query["experiment"]]
            chosen = same[0] if same else chosen
        experiments = list(dict.fromkeys(r.experiment for r in self.runs))
        self.experiment_select.options = experiments
        self.experiment_select.value = chosen.experiment
        self._fill_runs(chosen.experiment, chosen.run_id)
        self.experiment_select.observe(self._on_experiment, names="value")
        self.run_select.observe(self._on_run, names="value")
        self.show(chosen.run_id)

    def _fill_runs(self, experiment: str, run_id: str | None = None):
        runs = [r for r in self.runs if r.experiment == experiment]
        self._filling = True  # setting options fires value changes: render once, after
        try:
            self.run_select.options = [(r.label, r.run_id) for r in runs]
            self.run_select.value = run_id or (runs[0].run_id if runs else None)
        finally:
            self._filling = False

    def _on_experiment(self, change):
        self._fill_runs(change["new"])
        self.show(self.run_select.value)

    def _on_run(self, change):
        if getattr(self, "_filling", False) or change["new"] is None:
            return
        if self.run is None or change["new"] != self.run.run_id:
            self.show(change["new"])

    def show(self, run_id: str):
        """Load a run and render it; any failure becomes a friendly message."""
        try:
            self.run = load_run(run_id, runs=self.runs)
            self.body.children = self.render(self.run)
        except Exception as exc:  # noqa: BLE001 - a viewer never sees a traceback
            log.debug("rendering run %s failed", run_id, exc_info=True)
            self.body.children = [self.widgets.HTML(_box(
                _esc(f"{PART_FAILED} ({type(exc).__name__})"), "bad"))]

    def render(self, run: LoadedRun) -> list:  # pragma: no cover - overridden
        raise NotImplementedError

    def _image(self, fig_or_path, max_width: str = "100%") -> Any:
        data = fig_or_path.read_bytes() if isinstance(fig_or_path, Path) else _figure_png(fig_or_path)
        return self.widgets.Image(value=data, format="png",
                                  layout=self.widgets.Layout(max_width=max_width, height="auto"))

    def _section(self, title: str, *children) -> Any:
        return self.widgets.VBox([self.widgets.HTML(f"<h3 style='margin:14px 0 4px'>{_esc(title)}"
                                                    "</h3>"), *children],
                                 layout=self.widgets.Layout(margin="0 28px 0 0"))

    def _safe(self, title: str, build) -> Any:
        """A section whose failure is shown as a message instead of breaking the page."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._section(title, *build())
        except Exception as exc:  # noqa: BLE001
            log.debug("section %s failed", title, exc_info=True)
            return self._section(title, self.widgets.HTML(
                _box(_esc(f"{PART_FAILED} ({type(exc).__name__})"), "bad")))


class ExperimentDashboard(_Dashboard):
    """The experiment dashboard: decision, lift, chance to win, cumulative lift, segments, SRM.

    Build with :func:`experiment_dashboard`; ``widget`` is what the notebook displays.
    """

    kind = "experiment"

    def __init__(self, run_id=None, *, metric=None, published_only=None, query_string=None):
        super().__init__(run_id, published_only, query_string)
        w = self.widgets
        self.requested_metric = metric or self.query.get("metric")
        self.metric_select = w.Dropdown(description="Metric", layout=w.Layout(width="340px"))
        self.dimension_select = w.Dropdown(description="Segment by",
                                           layout=w.Layout(width="340px"))
        self.metric_select.observe(self._on_metric, names="value")
        self.dimension_select.observe(self._on_metric, names="value")
        self.metric_area = w.VBox()
        self.widget = w.VBox([
            w.HTML("<h2 style='margin:4px 0'>Experiment results</h2>"),
            self.notice, w.HBox([self.experiment_select, self.run_select]), self.body,
        ], layout=w.Layout(max_width="1200px", padding="0 12px"))
        self.start()

    def accepts(self, record: RunRecord) -> bool:
        return EXPERIMENT_TABLE in record.tables

    def render(self, run: LoadedRun) -> list:
        w = self.widgets
        headline, sentences = decision_sentences(run)
        decision = w.HTML(_box(
            "<div style='font-size:13px;color:#555'>Decision</div>"
            f"<div style='font-size:20px;font-weight:600'>{_esc(headline)}</div>"
            + ("<ul style='margin:6px 0 0 0'>" + "".join(f"<li>{_esc(s)}</li>" for s in sentences)
               + "</ul>" if sentences else ""), "info"))
        srm_kind, srm_text = srm_status(run)
        dq_kind, dq_lines = quality_status(run)
        dq_html = _esc(dq_lines[0]) + ("<ul style='margin:4px 0 0 0'>" + "".join(
            f"<li>{_esc(s)}</li>" for s in dq_lines[1:]) + "</ul>" if len(dq_lines) > 1 else "")
        status = w.HBox([w.HTML(_box("<b>Traffic split.</b> " + _esc(srm_text), srm_kind)),
                         w.HTML(_box("<b>Data quality.</b> " + dq_html, dq_kind))])
        results = _overall(run.table(EXPERIMENT_TABLE))
        relative = _is_relative(run)
        lift = self._safe(f"Lift by metric ({_level(run)} intervals)", lambda: [self._image(
            _plotted(plots().plot_forest, results, percent=relative, width=7.2,
                     height=0.45 * len(results) + 1.5))])
        chance = self._safe("Chance to win", lambda: [w.HTML(self._chance_html(run, results,
                                                                              relative))])
        metrics = list(dict.fromkeys(results["metric"])) if results is not None else []
        segments = run.table("segments")
        dimensions = (list(dict.fromkeys(segments["dimension"].dropna()))
                      if segments is not None and "dimension" in segments.columns else [])
        self._updating = True  # one render for the new options, not one per trait change
        try:
            self.metric_select.options = metrics
            wanted = self.requested_metric if self.requested_metric in metrics else None
            self.metric_select.value = wanted or (metrics[0] if metrics else None)
            self.dimension_select.options = dimensions
            self.dimension_select.value = dimensions[0] if dimensions else None
            self.dimension_select.layout.display = None if dimensions else "none"
        finally:
            self._updating = False
        self._render_metric()
        return [decision, status, w.HBox([lift, chance]),
                w.HTML("<h3 style='margin:14px 0 4px'>One metric over time and by segment</h3>"),
                w.HBox([self.metric_select, self.dimension_select]), self.metric_area]

    def _chance_html(self, run, results, relative: bool) -> str:
        if results is None or results.empty:
            return _box("No results were logged.", "warning")
        chances = chance_to_win(run)
        head = ["metric", "variant", "lift" if relative else "difference", "p-value"]
        if chances:
            head.append("chance to beat control")
        rows = []
        for r in results.to_dict("records"):
            row = [r.get("metric"), r.get("variant"), _fmt_effect(r.get("effect"), relative),
                   _fmt_p(_p_of(r))]
            if chances:
                chance = chances.get((r.get("metric"), r.get("variant")))
                row.append(f"{float(chance):.0%}" if _finite(chance) else "n/a")
            rows.append(row)
        note = ("" if chances else "<p style='font-size:12px;color:#555;max-width:420px'>This "
                "run has no Bayesian readout, so there is no chance to beat control; the p-value "
                "says how surprising the difference would be if there were no effect.</p>")
        return _table_html(head, rows) + note

    def _on_metric(self, change):
        if self.run is not None and not getattr(self, "_updating", False):
            self._render_metric()

    def _render_metric(self):
        run, metric = self.run, self.metric_select.value
        if run is None or metric is None:
            self.metric_area.children = []
            return
        self.metric_area.children = [self.widgets.HBox([
            self._safe(f"Cumulative lift over time: {metric}", lambda: self._timeseries(run, metric)),
            self._safe(f"Segment breakdown: {metric}", lambda: self._segments(run, metric)),
        ])]

    def _timeseries(self, run, metric):
        frame = run.table("timeseries")
        if frame is None or frame.empty or "date" not in frame.columns:
            return [self.widgets.HTML(_box("This run logged no daily results.", "info"))]
        if not (frame["metric"] == metric).any():
            return [self.widgets.HTML(_box(f"No daily results for {metric}.", "info"))]
        return [self._image(_plotted(plots().plot_cumulative_lift, frame, metric=metric,
                                     percent=_is_relative(run), height=3.6))]

    def _segments(self, run, metric):
        frame = run.table("segments")
        dimension = self.dimension_select.value
        if frame is None or frame.empty or "segment" not in frame.columns or dimension is None:
            return [self.widgets.HTML(_box("This run logged no segment breakdown.", "info"))]
        rows = frame[(frame["metric"] == metric) & (frame["dimension"] == dimension)]
        if rows.empty:
            return [self.widgets.HTML(_box(f"No {dimension} breakdown for {metric}.", "info"))]
        return [self._image(_plotted(plots().plot_segments, frame, metric=metric,
                                     dimension=dimension, percent=_is_relative(run),
                                     height=0.35 * len(rows) + 1.6))]


def plots():
    """:mod:`workbench.plots.experiment` (imported on first use: it pulls in matplotlib)."""
    from workbench.plots import experiment

    return experiment


def _table_html(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th style='text-align:left;padding:3px 10px;white-space:nowrap'>{_esc(h)}"
                 "</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='padding:3px 10px'>{_esc(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return (f"<table style='border-collapse:collapse;font-size:13px'><thead><tr>{th}</tr>"
            f"</thead><tbody>{body}</tbody></table>")


def experiment_dashboard(run_id: str | None = None, *, metric: str | None = None,
                         published_only: bool | None = None, query_string: str | None = None):
    """The experiment dashboard widget.

    Parameters
    ----------
    run_id : str, optional
        Run to show first (default: ``?run=`` of the page, else the newest run).
    metric : str, optional
        Metric shown over time and by segment (default: ``?metric=``, else the first).
    published_only : bool, optional
        Offer only published runs (default True, unless ``workbench serve --all-runs``).
    query_string : str, optional
        Default: the page's (Voilà's ``QUERY_STRING``).
    """
    return ExperimentDashboard(run_id, metric=metric, published_only=published_only,
                               query_string=query_string).widget


class ModelDashboard(_Dashboard):
    """The model dashboard: scores, SHAP importance and drift status of a model run.

    Build with :func:`model_dashboard`; ``widget`` is what the notebook displays.
    """

    kind = "model"

    def __init__(self, run_id=None, *, published_only=None, query_string=None):
        super().__init__(run_id, published_only, query_string)
        w = self.widgets
        self.experiment_select.description = "Model task"
        self.widget = w.VBox([
            w.HTML("<h2 style='margin:4px 0'>Model results</h2>"),
            self.notice, w.HBox([self.experiment_select, self.run_select]), self.body,
        ], layout=w.Layout(max_width="1200px", padding="0 12px"))
        self.start()

    def accepts(self, record: RunRecord) -> bool:
        return any(t in record.tables for t in MODEL_TABLES)

    def _source(self, run: LoadedRun, table: str) -> LoadedRun | None:
        """The chosen run if it logged ``table``, else the newest run of the same task that did
        (the templates log scores, SHAP and drift from separate runs)."""
        if table in run.tables:
            return run
        for record in self.runs:  # newest first
            if record.experiment == run.record.experiment and table in record.tables:
                return load_run(record.run_id, runs=self.runs)
        return None

    def render(self, run: LoadedRun) -> list:
        w = self.widgets
        sources = {table: self._source(run, table) for table in MODEL_TABLES}
        scores_run = sources["scores"] or run
        summary = {k: v for k, v in (run.summary or {}).items() if not isinstance(v, (dict, list))}
        head = (summary.pop("headline", "") or (scores_run.summary or {}).get("headline")
                or f"Model task {run.record.experiment}")
        facts = "".join(f"<li>{_esc(k.replace('_', ' '))}: {_esc(_fmt_value(v))}</li>"
                        for k, v in list(summary.items())[:8])
        children = [w.HTML(_box(f"<div style='font-size:18px;font-weight:600'>{_esc(head)}</div>"
                                + (f"<ul style='margin:6px 0 0 0'>{facts}</ul>" if facts else ""),
                                "info"))]
        if sources["drift"] is not None:
            drift_kind, drift_lines = drift_status(sources["drift"])
        else:
            drift_kind, drift_lines = "warning", ["No drift check was logged for this model task."]
        children.append(w.HTML(_box("<b>Drift.</b> " + "<br>".join(_esc(s) for s in drift_lines)
                                    + self._origin(run, sources["drift"]), drift_kind)))
        children.append(self._safe("Scores", lambda: self._scores(run, sources["scores"])))
        children.append(w.HBox([
            self._safe("What drives the predictions (SHAP importance)",
                       lambda: self._shap(run, sources["shap_importance"])),
            self._safe("Drift by column", lambda: self._drift(run, sources["drift"]))]))
        return children

    @staticmethod
    def _origin(run: LoadedRun, source: LoadedRun | None) -> str:
        if source is None or source.run_id == run.run_id:
            return ""
        return (f"<div style='font-size:12px;color:#555'>from run {_esc(source.record.label)}"
                "</div>")

    def _none(self, what: str):
        return [self.widgets.HTML(_box(f"No {what} was logged for this model task.", "info"))]

    @staticmethod
    def _figure(run: LoadedRun, *names: str):
        return next((run.figures[n] for n in names if n in run.figures), None)

    def _scores(self, run, source):
        if source is None:
            return self._none("model comparison")
        out = [self.widgets.HTML(self._origin(run, source))]
        table = source.table("scores")
        if table is not None and not table.empty:
            head = [str(c) for c in table.columns]
            rows = [[_fmt_value(v) for v in row] for row in table.itertuples(index=False)]
            out.append(self.widgets.HTML(_table_html(head, rows)))
        figures = [f for f in (self._figure(source, "scores"), self._figure(source, "roc")) if f]
        if figures:
            width = f"{100 // len(figures) - 2}%"  # side by side within the page
            out.append(self.widgets.HBox([self._image(f, width) for f in figures]))
        return out

    def _shap(self, run, source):
        if source is None:
            return self._none("SHAP explanation")
        origin = self.widgets.HTML(self._origin(run, source))
        figure = self._figure(source, "shap_importance")
        if figure is not None:
            return [origin, self._image(figure)]
        table = source.table("shap_importance")
        label = next(c for c in table.columns if table[c].dtype == object)
        value = next(c for c in table.columns if c != label and table[c].dtype.kind in "fi")
        top = table.sort_values(value, ascending=False).head(15)
        fig, ax = _new_axes(0.35 * len(top) + 1.2)
        ax.barh(top[label].astype(str), top[value], color="#4C72B0")
        ax.invert_yaxis()
        ax.set_xlabel(value.replace("_", " "))
        fig.tight_layout()
        return [origin, self._image(fig)]

    def _drift(self, run, source):
        if source is None:
            return self._none("drift check")
        figure = self._figure(source, "drift")
        if figure is not None:
            return [self._image(figure)]
        table = source.table("drift")
        columns = [c for c in ("column", "method", "statistic", "threshold", "drifted", "status")
                   if c in table.columns]
        rows = [[_fmt_value(v) if not isinstance(v, str) else v for v in row]
                for row in table[columns].itertuples(index=False)]
        return [self.widgets.HTML(_table_html(columns, rows))]


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return str(value)


def drift_status(run: LoadedRun, drift_share: float = 0.5) -> tuple[str, list[str]]:
    """(kind, plain sentences) from the ``drift`` table (``workbench.drift`` columns)."""
    table = run.table("drift")
    if table is None or table.empty or "drifted" not in table.columns:
        return "warning", ["No drift check was logged for this run."]
    judged = table[table["drifted"].notna()]
    name = "column" if "column" in table.columns else table.columns[0]
    drifted = [str(c) for c, d in zip(judged[name], judged["drifted"]) if bool(d)]
    lines = []
    if judged.empty:
        return "warning", ["No column could be compared for drift."]
    share = len(drifted) / len(judged)
    if not drifted:
        lines.append(f"No drift: none of the {len(judged)} columns changed between the reference "
                     "and the current data.")
        kind = "good"
    else:
        overall = "The data has drifted overall" if share >= drift_share else "Some columns drifted"
        lines.append(f"{overall}: {len(drifted)} of {len(judged)} columns changed "
                     f"({', '.join(drifted[:10])}{', ...' if len(drifted) > 10 else ''}).")
        kind = "bad" if share >= drift_share else "warning"
    skipped = len(table) - len(judged)
    if skipped:
        lines.append(f"{skipped} column(s) could not be compared.")
    return kind, lines


def model_dashboard(run_id: str | None = None, *, published_only: bool | None = None,
                    query_string: str | None = None):
    """The model dashboard widget (see :func:`experiment_dashboard` for the parameters)."""
    return ModelDashboard(run_id, published_only=published_only, query_string=query_string).widget
