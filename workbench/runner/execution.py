"""Running one template notebook with papermill as one tracked run.

:func:`run_template` is a few named steps, as papermill's own ``execute.py``: parameterise
(check the values against the ``parameters`` cell) -> prepare (add the sentinel cell) ->
execute (papermill, in a kernel of this interpreter, inside
:func:`workbench.tracking.start_run`) -> raise for errors (a :class:`~workbench.errors.RunError`
carrying the typed :class:`~workbench.errors.RunFailure`) -> write (the executed notebook and
an HTML export with the code hidden, in the run folder).

Exit codes (also of ``workbench run-jobs``): 0 success, 1 failed (a cell raised, timed out, the
kernel died, the run's files could not be written: "no space left on device"), 2 bad input
(unknown template, a path that is not a notebook, bad parameters or jobs file), 3 the notebook
stopped early without an error (``sys.exit()``, ``exit()``: papermill reports success there);
an interrupted run (Ctrl-C) is recorded FAILED and :class:`RunInterrupted` is raised.

Every file of the run is written atomically (a temporary file in the same folder, renamed when
complete, removed on failure): the notebook papermill saves after each cell too, so the partial
notebook kept after a failure, a full disk included, is always valid JSON. The kernel's own
output (ipykernel's log lines, its ``ZMQError`` traceback after a timeout or an interrupt) goes
to ``.kernel.log`` in the run folder, not to the terminal.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import tracking
from workbench.config import get_settings
from workbench.errors import TRACEBACK_LINES, RunError, RunFailure
from workbench.runner.parameters import (
    parameters_cell,
    parse_parameters,
    read_notebook,
    template_path,
    validate_parameters,
)
from workbench.tracking import store

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3
EXIT_CODES = {tracking.FINISHED: EXIT_OK, tracking.FAILED: EXIT_FAILED,
              tracking.STOPPED: EXIT_STOPPED}

SENTINEL_TAG = "workbench-sentinel"
_SENTINEL_SOURCE = ("# workbench: every cell ran (removed from the saved notebook)\n"
                    "_workbench_sentinel = True")
# which parameter names the MLflow experiment, in order; else the template name
EXPERIMENT_PARAMETERS = ("task", "experiment_id")
_ENV_LOCK = threading.Lock()
# cells papermill adds (not in the template): skipped when numbering cells
_SKIP_TAGS = {"injected-parameters", "papermill-error-cell-tag"}
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KERNEL_START_ATTEMPTS = 3
KERNEL_LOG = ".kernel.log"  # the kernel's stdout/stderr (hidden: not pushed to MLflow)
_ATOMIC_SCHEME = "workbench-atomic://"  # papermill output handler: atomic notebook saves


class RunInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C); it was recorded FAILED before this was raised.

    Attributes
    ----------
    result : RunResult
        The recorded run.
    """

    def __init__(self, result: RunResult):
        super().__init__(result.message)
        self.result = result


@dataclass(frozen=True)
class RunResult:
    """Outcome of one template run.

    Attributes
    ----------
    template, name : str
        Template and run name.
    status : str
        ``FINISHED``, ``FAILED`` or ``STOPPED`` (stopped early without an error).
    exit_code : int
        0, 1 or 3 (see the module docstring); 2 for a run refused before it started.
    run_dir : Path or None
        The run folder (None if refused before it started).
    mlflow_run_id : str or None
        None while unsynced.
    synced : bool
        The run is in MLflow.
    message : str
        Empty on success, else what went wrong (the failing cell and its error).
    record : dict
        ``run.json``.
    failure : RunFailure or None
        Where and why the run failed or stopped early; None on success.
    """

    template: str
    name: str
    status: str
    exit_code: int
    run_dir: Path | None
    mlflow_run_id: str | None = None
    synced: bool = False
    message: str = ""
    record: dict = field(default_factory=dict, repr=False)
    failure: RunFailure | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{k: getattr(self, k) for k in (
            "template", "name", "status", "exit_code", "run_dir", "mlflow_run_id", "synced",
            "message")}])

    def summary(self) -> str:
        text = f"{self.template}/{self.name}: {self.status} (exit {self.exit_code})"
        if self.run_dir:
            text += f" -> {self.run_dir}"
        if not self.synced and self.run_dir:
            why = self.record.get("sync_error")
            why = f" ({why.splitlines()[0][:200]})" if why else ""
            text += f" [not synced to MLflow{why}: run `workbench sync`]"
        return text + (f"\n  {self.message}" if self.message else "")

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)


# ----------------------------------------------------------------------------- the steps
@dataclass(frozen=True)
class _Plan:
    """A template checked and ready to run."""

    path: Path
    notebook: Any  # nbformat.NotebookNode
    values: dict  # what papermill injects
    effective: dict  # every parameter, defaults included (logged)
    experiment: str


def _parameterise(template: str | os.PathLike, parameters: Mapping[str, Any],
                  text_parameters: Mapping[str, str] | None) -> _Plan:
    """Read the template and check the values against its ``parameters`` cell."""
    path = template_path(template)
    nb = read_notebook(path)
    _, source = parameters_cell(nb)
    declared = parse_parameters(source, f"template {path.name}, parameters cell")
    values = validate_parameters(declared, dict(parameters), text_parameters)
    effective = {k: p.default for k, p in declared.items()} | values
    experiment = next((str(effective[k]) for k in EXPERIMENT_PARAMETERS
                       if effective.get(k) not in (None, "")), None) or path.stem
    return _Plan(path, nb, values, effective, experiment)


def _prepare(nb) -> None:
    """Append the sentinel cell (tells an early stop from a complete run) and a kernelspec."""
    import nbformat

    sentinel = nbformat.v4.new_code_cell(_SENTINEL_SOURCE)
    sentinel.metadata["tags"] = [SENTINEL_TAG]
    nb.cells.append(sentinel)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})


def _execute(plan: _Plan, out_path: Path, *, cell_timeout: int | None, progress: bool,
             start_timeout: int) -> tuple[Any, BaseException | None]:
    """Run the notebook with papermill; returns the executed notebook (None if nothing was
    saved) and the exception papermill raised, if any."""
    import papermill as pm

    _register_atomic_handler()
    error: BaseException | None = None
    manager = _kernel_manager_class(out_path.parent / KERNEL_LOG)
    for attempt in range(_KERNEL_START_ATTEMPTS):
        error = None
        try:
            with _quiet_papermill():
                pm.execute_notebook(
                    plan.notebook, _ATOMIC_SCHEME + str(out_path), parameters=plan.values,
                    kernel_name="python3", progress_bar=progress,
                    execution_timeout=cell_timeout, start_timeout=start_timeout,
                    cwd=os.getcwd(), log_output=False, request_save_on_cell_execute=True,
                    kernel_manager_class=manager)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - cell error, timeout, dead kernel, full disk
            error = exc
        if error is None or not _kernel_did_not_start(out_path):
            break
        # another process took the kernel's ports between their choice and binding
        # ("Address already in use"): nothing ran yet, so starting again is safe
        time.sleep(1 + attempt)
    return _saved_notebook(out_path), error


def _saved_notebook(out_path: Path):
    """The notebook papermill last saved (None if none was, or it cannot be read)."""
    import nbformat

    try:
        return nbformat.read(out_path, as_version=4)
    except Exception:  # noqa: BLE001 - missing (nothing saved yet) or unreadable
        return None


class _AtomicNotebookHandler:
    """papermill I/O handler of ``workbench-atomic://<path>``: each save is a temporary file
    renamed onto the notebook, so a full disk leaves the last complete save, never half a
    notebook."""

    @staticmethod
    def _path(path: str) -> Path:
        return Path(path[len(_ATOMIC_SCHEME):])

    def read(self, path):
        return self._path(path).read_text(encoding="utf-8")

    def write(self, buf, path):
        with store.atomic_path(self._path(path)) as tmp:
            tmp.write_text(buf, encoding="utf-8")

    def listdir(self, path):
        return [str(p) for p in self._path(path).iterdir()]

    def pretty_path(self, path):
        return str(self._path(path))


def _register_atomic_handler() -> None:
    from papermill.iorw import papermill_io

    if not any(scheme == _ATOMIC_SCHEME for scheme, _ in papermill_io._handlers):
        papermill_io.register(_ATOMIC_SCHEME, _AtomicNotebookHandler())


@contextlib.contextmanager
def _quiet_papermill():
    """papermill's logger prints nbclient's "Timeout waiting for execute reply" and "Kernel
    died" lines with no handler configured; the run's failure says it once, in words."""
    logger = logging.getLogger("papermill")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _raise_for_errors(executed, error: BaseException | None, template: str) -> None:
    """Raise :class:`RunError` if papermill raised (a cell failed, timed out, the kernel died)."""
    if error is not None:
        raise RunError(notebook_failure(executed, template, error))


def _write(executed, out_path: Path, run_dir: Path) -> str:
    """Save the executed notebook without the sentinel, and its HTML export (both atomically).

    Returns what could not be written, in words (empty when all was): on a full disk the
    notebook papermill last saved is kept as it is.
    """
    import nbformat

    executed.cells = [c for c in executed.cells
                      if SENTINEL_TAG not in c.get("metadata", {}).get("tags", [])]
    executed.metadata.get("papermill", {})["output_path"] = str(out_path)
    try:
        with store.atomic_path(out_path) as tmp:
            nbformat.write(executed, str(tmp))
    except OSError as exc:
        kept = "the last one saved is kept" if out_path.exists() else "none was saved"
        return f"the notebook could not be written ({store.error_cause(exc)}; {kept})"
    try:
        export_html(out_path, run_dir / "report.html")
    except OSError as exc:
        return f"report.html could not be written ({store.error_cause(exc)})"
    except Exception:  # noqa: BLE001 - a report that cannot render must not hide the run
        pass
    return ""


def run_template(template: str | os.PathLike, parameters: Mapping[str, Any] | None = None, *,
                 text_parameters: Mapping[str, str] | None = None, name: str | None = None,
                 cell_timeout: int | None = None, progress: bool = True,
                 reports_dir: str | os.PathLike | None = None,
                 tracking_uri: str | None = None, start_timeout: int = 120) -> RunResult:
    """Run a template with papermill as one tracked run.

    Parameters
    ----------
    template : str or path
        Template name in ``templates/`` or a notebook path.
    parameters : dict, optional
        Typed parameter values.
    text_parameters : dict, optional
        Values given as text (command line), converted to the parameters' types.
    name : str, optional
        Run name (default: the ``experiment_id`` or ``task`` parameter, else the template).
    cell_timeout : int, optional
        Seconds a cell may run before the run fails.
    progress : bool
        Show papermill's progress bar over the cells.
    reports_dir, tracking_uri : optional
        Default: the settings.
    start_timeout : int
        Seconds to wait for the kernel to start.

    Returns
    -------
    RunResult
        Never raises for a failure inside the notebook; see ``status``, ``exit_code`` and
        ``failure``.

    Raises
    ------
    ParameterError
        Unknown template or invalid parameters (before any kernel starts).
    """
    plan = _parameterise(template, parameters or {}, text_parameters)
    _prepare(plan.notebook)
    source_path = _fingerprint_source(plan.effective)
    interrupted = False
    with tracking.start_run(plan.path.stem, name or plan.experiment, parameters=plan.effective,
                            experiment=plan.experiment, reports_dir=reports_dir,
                            tracking_uri=tracking_uri) as run:
        if source_path is not None:
            with contextlib.suppress(Exception):  # a locked or odd file must not fail the run
                run.log_fingerprint(source_path)
        out_path = run.run_dir / "notebook.ipynb"
        try:
            with _environ(_kernel_environment(run)):
                executed, error = _execute(plan, out_path, cell_timeout=cell_timeout,
                                           progress=progress, start_timeout=start_timeout)
        except KeyboardInterrupt as exc:
            interrupted, executed, error = True, _saved_notebook(out_path), exc
        try:
            _raise_for_errors(executed, error, plan.path.stem)
            failure = notebook_failure(executed, plan.path.stem)
            status = tracking.STOPPED if failure else tracking.FINISHED
        except RunError as exc:
            status, failure = tracking.FAILED, exc.failure
        not_written = (_write(executed, out_path, run.run_dir) if executed is not None
                       else "no notebook could be saved")
        if not_written:  # a full disk: the outputs may be incomplete
            failure = _with_note(failure, plan.path.stem, not_written)
            status = tracking.FAILED
        run.mark(status, failure)
    record = run.final_record or tracking.read_run(run.run_dir)
    message = failure.message if failure else ""
    if record.get("record_error"):
        message += f" ({record['record_error']})"
    result = RunResult(template=plan.path.stem, name=record.get("name", ""), status=status,
                       exit_code=EXIT_CODES[status], run_dir=run.run_dir,
                       mlflow_run_id=record.get("mlflow_run_id"),
                       synced=bool(record.get("synced")), message=message, record=record,
                       failure=failure)
    _drop_empty(run.run_dir / KERNEL_LOG)
    if interrupted:
        raise RunInterrupted(result)
    return result


def _with_note(failure: RunFailure | None, template: str, note: str) -> RunFailure:
    """``failure`` (a run with nothing else wrong: the note is the failure) with ``note`` added."""
    if failure is None:
        return RunFailure(None, "OSError", note, f"{template}: {note}")
    return RunFailure(failure.cell_index, failure.ename, failure.evalue,
                      f"{failure.message}; {note}", failure.traceback_tail)


def _drop_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


# ----------------------------------------------------------------------------- failures
def notebook_failure(executed, template: str,
                     error: BaseException | None = None) -> RunFailure | None:
    """What went wrong in an executed notebook: THE place a runner's :class:`RunFailure` is made.

    Parameters
    ----------
    executed : NotebookNode or None
        The notebook papermill saved (None if it saved nothing).
    template : str
        Template name, for the message.
    error : Exception, optional
        What papermill raised. Without it, the notebook is checked for an early stop.

    Returns
    -------
    RunFailure or None
        None when every cell ran.
    """
    if error is not None:
        cell, ename, evalue, count, tail = (_cell_error(executed) if executed is not None
                                            else (None, "", "", None, ()))
        if cell is None and executed is not None:  # a timeout leaves no error output
            cell, count = _last_started(executed)
        where = _where(cell, count) if cell is not None else "before any cell ran"
        if isinstance(error, KeyboardInterrupt):
            return RunFailure(cell, "KeyboardInterrupt", "interrupted",
                              f"{template}: interrupted at {where}", tail)
        if not ename and store.disk_full(error):  # papermill's save, not a cell
            cause = store.DISK_FULL
            return RunFailure(cell, "OSError", cause, f"{template}: the run's files could not "
                              f"be written at {where}: {cause}", tail)
        ename = ename or type(error).__name__
        evalue = evalue or (str(error).strip().splitlines() or [""])[0]
        return RunFailure(cell, ename, evalue, f"{template}: {where} failed: {ename}: {evalue}",
                          tail)
    stopped = _unexecuted(executed) if executed is not None else None
    if stopped is None:
        return None
    cell, ename, evalue, count, tail = _cell_error(executed)  # sys.exit leaves a SystemExit
    if cell is None:
        cell = max(0, stopped - 1)
    message = (f"{template}: the notebook stopped early at {_where(cell, count)} "
               f"({ename or 'no error raised'}{': ' + evalue if evalue else ''}); "
               "the cells after it did not run")
    return RunFailure(cell, ename or "StoppedEarly", evalue, message, tail)


def _where(cell: int, count: int | None) -> str:
    return f"cell {cell}" + (f" (execution count [{count}])" if count else "")


def _template_cells(nb):
    """(template index, cell) of every cell, not counting the cells papermill added."""
    index = -1
    for cell in nb.cells:
        if _SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        index += 1
        yield index, cell


def _cell_error(nb) -> tuple[int | None, str, str, int | None, tuple[str, ...]]:
    """(template cell index, ename, evalue, execution count, traceback tail) of the first
    failed cell.

    The index counts every cell of the template from 0 (markdown too), like papermill's
    ``cell_index`` but without the injected parameters cell.
    """
    for index, cell in _template_cells(nb):
        meta = cell.get("metadata", {}).get("papermill", {})
        if meta.get("status") in ("failed", "running") or meta.get("exception"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    lines = _ANSI_RE.sub("", "\n".join(out.get("traceback", []))).splitlines()
                    return (index, out.get("ename", ""), out.get("evalue", ""),
                            cell.get("execution_count"), tuple(lines[-TRACEBACK_LINES:]))
            return index, "", "", cell.get("execution_count"), ()
    return None, "", "", None, ()


def _unexecuted(nb) -> int | None:
    """Template index of the first code cell that did not complete (early stop), else None."""
    for index, cell in _template_cells(nb):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.get("metadata", {}).get("papermill", {}).get("status") != "completed" \
                or cell.get("execution_count") is None:
            return index
    return None


def _last_started(nb) -> tuple[int | None, int | None]:
    """Template index and execution count of the last code cell that started (timed out, or
    running when the kernel died or the run was interrupted).

    papermill's ``start_time`` says which cell started; a cell whose kernel died has none of
    the execution count the kernel would have sent.
    """
    found = (None, None)
    for index, cell in _template_cells(nb):
        if cell.cell_type != "code":
            continue
        if cell.get("metadata", {}).get("papermill", {}).get("start_time") \
                or cell.get("execution_count"):
            found = (index, cell.get("execution_count"))
    return found


# ----------------------------------------------------------------------------- kernel, output
def _kernel_manager_class(log_path: Path | None = None):
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class CurrentInterpreterKernelManager(AsyncKernelManager):
        """``python3`` of this interpreter, whatever kernelspecs the user has installed; its
        stdout and stderr go to ``log_path`` (ipykernel's own tracebacks stay off the
        terminal)."""

        @property
        def kernel_spec(self):
            from ipykernel.kernelspec import RESOURCES, get_kernel_dict

            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if log_path is None:
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            with open(log_path, "ab") as handle:  # the kernel keeps its own copy
                kw["stdout"] = kw["stderr"] = handle
                return await super()._async_launch_kernel(kernel_cmd, **kw)

    return CurrentInterpreterKernelManager


def _kernel_environment(run: tracking.Run) -> dict[str, str | None]:
    """What the kernel needs to attach to the run and to find the project."""
    record = run.record()
    return {
        tracking.ENV_RUN_DIR: str(run.run_dir.resolve()),
        "MLFLOW_RUN_ID": record.get("mlflow_run_id"),
        "MLFLOW_TRACKING_URI": record.get("tracking_uri"),
        "WORKBENCH_ROOT": str(get_settings().root),
        # inline figures in the notebook and its HTML, even under MPLBACKEND=Agg
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
    }


@contextlib.contextmanager
def _environ(values: Mapping[str, str | None]):
    """The kernel inherits os.environ: set the run's variables for the time of the run."""
    with _ENV_LOCK:
        old = {k: os.environ.get(k) for k in values}
        try:
            for k, v in values.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            yield
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _kernel_did_not_start(out_path: Path) -> bool:
    """True when no cell ran at all (the kernel failed to start)."""
    nb = _saved_notebook(out_path)
    if nb is None:
        return True
    return not any(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def export_html(notebook_path: Path, html_path: Path) -> Path:
    """HTML of an executed notebook with the code and prompts hidden (for stakeholders)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook_path, as_version=4))
    with store.atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return html_path


def _fingerprint_source(values: Mapping[str, Any]) -> Path | None:
    source = values.get("source")
    if source is None:
        path = get_settings().warehouse
    elif isinstance(source, str) and "://" not in source:
        path = Path(source).expanduser()
    else:
        return None
    return path if path.is_file() else None
