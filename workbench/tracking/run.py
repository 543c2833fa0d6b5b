"""The run: a handle on one run folder, and starting and ending runs.

:func:`start_run` serves ``workbench run`` and JupyterLab alike: it creates the folder and the
MLflow run (or an unsynced record if MLflow is down), and pushes the folder when the block
ends. A kernel started by the runner attaches to the runner's folder through
``WORKBENCH_RUN_DIR`` and only writes files (see :mod:`workbench.tracking.notebook`).
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from workbench.config import get_settings
from workbench.errors import RunFailure, TrackingError
from workbench.tracking import mlflow, store

# the runs opened by ``with start_run(...)`` in this process, innermost last
ACTIVE: list[Run] = []


class Run:
    """A run folder and its MLflow run. Get one from :func:`start_run` or
    :func:`~workbench.tracking.current_run`.

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
        self._outcome: tuple[str, RunFailure | None] | None = None
        self.final_record: dict | None = None  # what finish() recorded (owner, once ended)

    # -- record
    def record(self) -> dict:
        """The content of ``run.json`` (plus what was logged since, before the run ends)."""
        return store.read_record(self.run_dir)

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
        path = self.run_dir / "tables" / f"{store.slug(name)}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        with store.atomic_path(path) as tmp:  # a full disk leaves no truncated parquet
            try:
                frame.to_parquet(tmp, index=keep_index)
            except OSError:
                raise
            except Exception:  # noqa: BLE001 - mixed-type object columns: store them as text
                for col in frame.select_dtypes(include="object").columns:
                    frame[col] = frame[col].map(lambda v: v if v is None else str(v))
                frame.to_parquet(tmp, index=keep_index)
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
        path = self.run_dir / "figures" / f"{store.slug(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with store.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        return path

    def log_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Record metrics; non-finite values are kept as null in run.json and not sent to MLflow."""
        store.update_logged(self.run_dir, "metrics", {str(k): v for k, v in metrics.items()})
        return mlflow.sanitize_metrics(metrics)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record extra parameters (beyond the template's)."""
        store.update_logged(self.run_dir, "params", params)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Record the headline of the run (e.g. ``decision``, ``srm_p_value``) for dashboards."""
        store.update_logged(self.run_dir, "summary", summary)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Record MLflow tags."""
        store.update_logged(self.run_dir, "tags", {k: str(v) for k, v in tags.items()})

    def log_fingerprint(self, source: str | os.PathLike | None,
                        tables: list[str] | None = None) -> str | None:
        """Tag the run with the input tables' fingerprint (None if not a DuckDB file).

        See :func:`workbench.data.fingerprint.fingerprint`.
        """
        from workbench.data.fingerprint import fingerprint

        if source is None or not Path(source).is_file():
            return None
        value = fingerprint(source, tables)
        self.set_tags({"workbench.data_fingerprint": value,
                       "workbench.data_source": str(Path(source).resolve())})
        return value

    def artifact_path(self, filename: str) -> Path:
        """A path under ``artifacts/`` to write a file to (e.g. an Evidently HTML report)."""
        path = self.run_dir / "artifacts" / store.slug(filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def log_model(self, model: Any, name: str, input_example: Any) -> Path:
        """Save a fitted scikit-learn or xgboost model as an MLflow model with its signature.

        The signature is inferred from ``input_example`` and the model's predictions; the model
        is logged to MLflow (``mlflow.sklearn`` / ``mlflow.xgboost``) when the run is pushed.
        """
        return mlflow.save_model(model, self.run_dir / "models" / store.slug(name), input_example)

    # -- end of the run (owner only)
    def mark(self, status: str, failure: RunFailure | None = None) -> None:
        """Set the outcome used when the ``with start_run(...)`` block ends."""
        self._outcome = (status, failure)

    def finish(self, status: str = store.FINISHED, failure: RunFailure | None = None) -> dict:
        """End the run: write run.json, push it to MLflow (or leave it unsynced). Returns run.json."""
        data = store.close_run_folder(self.run_dir, status, failure)
        # pushed from memory: on a full disk run.json may not hold the outcome
        self.final_record = mlflow.push(self.run_dir, record=data)
        return self.final_record


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
    name = store.slug(name or experiment)
    template = store.slug(template)
    mlflow.recover_stale_runs(reports_dir)
    started = store.utcnow()
    data: dict[str, Any] = {
        "run_id": None, "mlflow_run_id": None, "experiment_name": experiment,
        "template": template, "name": name, "status": store.RUNNING, "synced": False,
        "sync_error": None, "tracking_uri": uri, "parameters": dict(parameters or {}),
        "started_at": store.iso(started), "ended_at": None, "tables": [], "figures": [],
        "models": [], "summary": {}, "metrics": {}, "tags": dict(tags or {}), "error": None,
        "notebook": None, "report": None, "workbench_version": store.WORKBENCH_VERSION,
        "git_commit": store.git_commit(settings.root), "pid": os.getpid(),
        "host": socket.gethostname(), "reports_dir": str(reports_dir.resolve()),
    }
    local_id = uuid.uuid4().hex
    base_tags = mlflow.run_tags(dict(data, run_id=local_id), reports_dir)
    base_tags.pop("workbench.run_dir")
    try:
        mlflow_id = mlflow.create_run(uri, experiment, base_tags["mlflow.runName"], base_tags,
                                      start_time=store.epoch_ms(data["started_at"]))
        data.update(run_id=mlflow_id, mlflow_run_id=mlflow_id)
    except Exception as exc:  # noqa: BLE001 - server down, bad URI...: run offline, sync later
        data.update(run_id=local_id, sync_error=f"{type(exc).__name__}: {exc}"[:2000])
        print(f"workbench: MLflow at {uri} cannot record the run ({store.error_cause(exc)}); "
              "the run is kept in reports/ and `workbench sync` will log it later",
              file=sys.stderr)
    run_dir = store.create_run_folder(reports_dir, data, started)
    if data["mlflow_run_id"]:
        with contextlib.suppress(Exception):  # cosmetic: lets the UI link back to the folder
            mlflow.set_tag(data["mlflow_run_id"], "workbench.run_dir", str(run_dir.resolve()),
                           tracking_uri=uri)
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
    ACTIVE.append(run)
    try:
        yield run
    except BaseException as exc:
        ACTIVE.remove(run)
        run.finish(store.FAILED, RunFailure.from_exception(exc))
        raise
    ACTIVE.remove(run)
    status, failure = run._outcome or (store.FINISHED, None)
    run.finish(status, failure)
