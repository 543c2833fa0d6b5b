"""Run template notebooks with papermill: validated parameters, one tracked run each.

``workbench run ab_test -p experiment_id checkout_redesign`` (or :func:`run_template`) checks the
parameters against the template's ``parameters`` cell, starts a run with
:func:`workbench.tracking.start_run`, executes the notebook in a kernel of the current
interpreter with papermill, writes the executed notebook and an HTML export with the code
hidden into the run folder, and ends the run (pushed to MLflow, or kept unsynced).

The parameters cell
-------------------
One ``name = literal`` per line (``name: type = literal`` is accepted too). The literal's type is
the parameter's type; a value of another type is an error (an ``int`` is accepted for a
``float``). A trailing comment ``# required`` makes the parameter required: its literal is a
placeholder (often ``None``) and a run without a value is refused. A parameter whose default is
``None`` and not required takes any literal. Values given as text on the command line are
converted to the default's type (``-p alpha 0.1``), and a string default keeps the text as it is
(``-p label 007`` stays ``"007"``, papermill would make it 7).

Exit codes (also of ``workbench run-jobs``): 0 success, 1 failed (a cell raised, timed out, the
kernel died), 2 bad input (unknown template, bad parameters or jobs file), 3 the notebook stopped
early without an error (``sys.exit()``, ``exit()``: papermill reports success there).
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import keyword
import os
import sys
import threading
import time
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import tracking
from workbench.config import get_settings
from workbench.errors import ParameterError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3
EXIT_CODES = {tracking.FINISHED: EXIT_OK, tracking.FAILED: EXIT_FAILED, tracking.STOPPED: EXIT_STOPPED}

SENTINEL_TAG = "workbench-sentinel"
_SENTINEL_SOURCE = "# workbench: every cell ran (removed from the saved notebook)\n_workbench_sentinel = True"
# which parameter names the MLflow experiment, in order; else the template name
EXPERIMENT_PARAMETERS = ("task", "experiment_id")
_ENV_LOCK = threading.Lock()
# cells papermill adds (not in the template): skipped when numbering cells
_SKIP_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class TemplateParameter:
    """One line of a template's ``parameters`` cell.

    Attributes
    ----------
    name : str
        Python identifier.
    default : object
        The literal in the cell (a placeholder when ``required``).
    required : bool
        The line ends with ``# required``.
    type : type or None
        ``type(default)``; None when the default is ``None`` (any literal accepted).
    help : str
        The trailing comment, if any.
    """

    name: str
    default: Any
    required: bool
    type: type | None
    help: str = ""


def template_path(template: str | os.PathLike) -> Path:
    """The notebook of a template name (``ab_test`` -> ``templates/ab_test.ipynb``) or a path."""
    text = str(template)
    path = Path(text).expanduser()
    if path.suffix == ".ipynb" or os.sep in text:
        if path.is_file():
            return path.resolve()
        raise ParameterError(f"template notebook not found: {path}")
    templates_dir = get_settings().templates_dir
    candidate = templates_dir / f"{text}.ipynb"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in templates_dir.glob("*.ipynb"))
    raise ParameterError(f"unknown template {text!r}; available in {templates_dir}: {known}")


def _parameters_cell(nb) -> tuple[int, str]:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return index, cell.source
    return -1, ""


def parse_parameters(source: str, where: str = "parameters cell") -> dict[str, TemplateParameter]:
    """Parse a ``parameters`` cell into :class:`TemplateParameter` objects (literals only)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{where}: not valid Python ({exc})") from exc
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    params: dict[str, TemplateParameter] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(
                stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value:
            name, value = stmt.target.id, stmt.value
        else:
            raise ParameterError(f"{where}, line {stmt.lineno}: only `name = literal` lines are "
                                 "allowed in a parameters cell")
        try:
            default = ast.literal_eval(value)
        except ValueError as exc:
            raise ParameterError(f"{where}, line {stmt.lineno}: the default of {name!r} is not a "
                                 "literal") from exc
        comment = comments.get(stmt.end_lineno or stmt.lineno, "")
        required = comment.lower().startswith("required")
        params[name] = TemplateParameter(name, default, required,
                                         None if default is None else type(default), comment)
    return params


def read_parameters(template: str | os.PathLike) -> dict[str, TemplateParameter]:
    """The parameters a template declares (empty if it has no ``parameters`` cell)."""
    import nbformat

    path = template_path(template)
    nb = nbformat.read(path, as_version=4)
    _, source = _parameters_cell(nb)
    return parse_parameters(source, f"template {path.name}, parameters cell")


_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _convert(param: TemplateParameter, value: Any, from_text: bool) -> Any:
    """``value`` as the parameter's type, or ParameterError naming the parameter."""
    kind = param.type
    bad = ParameterError(f"parameter {param.name!r}: expected "
                         f"{kind.__name__ if kind else 'a literal'}, got {value!r}")
    if from_text and isinstance(value, str):
        if kind is str:
            return value
        if kind is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise bad
        if kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                raise bad from None
        if value.lower() in ("none", "null"):
            value = None
        else:
            try:  # lists, dicts and untyped values: a Python or JSON literal, else the text
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                try:
                    value = json.loads(value)
                except ValueError:
                    if kind is not None:
                        raise bad from None
    if value is None:
        if kind is None or param.required:
            if param.required:
                raise ParameterError(f"parameter {param.name!r} is required")
            return None
        raise bad
    if kind is None:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is list and isinstance(value, tuple):
        return list(value)
    if kind is int and isinstance(value, bool):
        raise bad
    if not isinstance(value, kind):
        raise bad
    return value


def validate_parameters(declared: Mapping[str, TemplateParameter], values: Mapping[str, Any],
                        text_values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check values against the declared parameters; returns the values to inject.

    Parameters
    ----------
    declared : dict
        From :func:`read_parameters`.
    values : dict
        Typed values (a YAML file, Python).
    text_values : dict, optional
        Values given as text (``-p NAME VALUE``), converted to each default's type; they win
        over ``values``.

    Raises
    ------
    ParameterError
        A name is not an identifier or is unknown, a required value is missing, a type is wrong.
    """
    merged = {**{k: (v, False) for k, v in values.items()},
              **{k: (v, True) for k, v in (text_values or {}).items()}}
    out: dict[str, Any] = {}
    for name, (value, from_text) in merged.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ParameterError(f"parameter name {name!r} is not a Python identifier")
        if name not in declared:
            raise ParameterError(f"unknown parameter {name!r}; the template declares "
                                 f"{sorted(declared)}")
        out[name] = _convert(declared[name], value, from_text)
    missing = [p.name for p in declared.values() if p.required and p.name not in out]
    if missing:
        raise ParameterError(f"missing required parameter(s): {', '.join(missing)}")
    return out


# ----------------------------------------------------------------------------- results
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
            text += " [not synced to MLflow: run `workbench sync`]"
        return text + (f"\n  {self.message}" if self.message else "")

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)


# ----------------------------------------------------------------------------- execution
def _kernel_manager_class():
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec

    class CurrentInterpreterKernelManager(AsyncKernelManager):
        """``python3`` of this interpreter, whatever kernelspecs the user has installed."""

        @property
        def kernel_spec(self):
            from ipykernel.kernelspec import RESOURCES, get_kernel_dict

            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return CurrentInterpreterKernelManager


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


def _where(cell: int, count: int | None) -> str:
    return f"cell {cell}" + (f" (execution count [{count}])" if count else "")


def _cell_error(nb) -> tuple[int | None, str, str, int | None]:
    """(template cell index, ename, evalue, execution count) of the first failed cell.

    The index counts every cell of the template from 0 (markdown too), like papermill's
    ``cell_index`` but without the injected parameters cell.
    """
    index = -1
    for cell in nb.cells:
        if _SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        index += 1
        meta = cell.get("metadata", {}).get("papermill", {})
        if meta.get("status") in ("failed", "running") or meta.get("exception"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    return index, out.get("ename", ""), out.get("evalue", ""), cell.get(
                        "execution_count")
            return index, "", "", cell.get("execution_count")
    return None, "", "", None


def _unexecuted(nb) -> int | None:
    """Template index of the first code cell that did not complete (early stop), else None."""
    index = -1
    for cell in nb.cells:
        if _SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        index += 1
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        if cell.get("metadata", {}).get("papermill", {}).get("status") != "completed" \
                or cell.get("execution_count") is None:
            return index
    return None


def _last_started(nb) -> tuple[int | None, int | None]:
    """Template index and execution count of the last code cell that started (timed out)."""
    index, found = -1, (None, None)
    for cell in nb.cells:
        if _SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        index += 1
        if cell.cell_type == "code" and cell.get("execution_count"):
            found = (index, cell.get("execution_count"))
    return found


def _kernel_did_not_start(out_path: Path) -> bool:
    """True when no cell ran at all (the kernel failed to start)."""
    import nbformat

    if not out_path.exists():
        return True
    nb = nbformat.read(out_path, as_version=4)
    return not any(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def _strip_sentinel(nb) -> None:
    nb.cells = [c for c in nb.cells if SENTINEL_TAG not in c.get("metadata", {}).get("tags", [])]


def export_html(notebook_path: Path, html_path: Path) -> Path:
    """HTML of an executed notebook with the code and prompts hidden (for stakeholders)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook_path, as_version=4))
    html_path.write_text(body, encoding="utf-8")
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
        Never raises for a failure inside the notebook; see ``status`` and ``exit_code``.

    Raises
    ------
    ParameterError
        Unknown template or invalid parameters (before any kernel starts).
    """
    import nbformat
    import papermill as pm

    path = template_path(template)
    nb = nbformat.read(path, as_version=4)
    index, source = _parameters_cell(nb)
    declared = parse_parameters(source, f"template {path.name}, parameters cell")
    values = validate_parameters(declared, dict(parameters or {}), text_parameters)
    effective = {k: p.default for k, p in declared.items()} | values
    experiment = next((str(effective[k]) for k in EXPERIMENT_PARAMETERS
                       if effective.get(k) not in (None, "")), None) or path.stem

    sentinel = nbformat.v4.new_code_cell(_SENTINEL_SOURCE)
    sentinel.metadata["tags"] = [SENTINEL_TAG]
    nb.cells.append(sentinel)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                          "language": "python"})

    tags = {}
    source_path = _fingerprint_source(effective)
    with tracking.start_run(path.stem, name or experiment, parameters=effective,
                            experiment=experiment, tags=tags, reports_dir=reports_dir,
                            tracking_uri=tracking_uri) as run:
        if source_path is not None:
            with contextlib.suppress(Exception):  # a locked or odd file must not fail the run
                run.log_fingerprint(source_path)
        out_path = run.run_dir / "notebook.ipynb"
        record = run.record()
        env = {
            tracking.ENV_RUN_DIR: str(run.run_dir.resolve()),
            "MLFLOW_RUN_ID": record.get("mlflow_run_id"),
            "MLFLOW_TRACKING_URI": record.get("tracking_uri"),
            "WORKBENCH_ROOT": str(get_settings().root),
            # inline figures in the notebook and its HTML, even under MPLBACKEND=Agg
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0"),
        }
        status, error, message = tracking.FINISHED, None, ""
        exc_info: BaseException | None = None
        with _environ(env):
            for attempt in range(3):
                exc_info = None
                try:
                    pm.execute_notebook(
                        nb, str(out_path), parameters=values, kernel_name="python3",
                        progress_bar=progress, execution_timeout=cell_timeout,
                        start_timeout=start_timeout, cwd=os.getcwd(), log_output=False,
                        request_save_on_cell_execute=True,
                        kernel_manager_class=_kernel_manager_class())
                except KeyboardInterrupt:
                    run.mark(tracking.FAILED, {"cell_index": None, "ename": "KeyboardInterrupt",
                                               "evalue": "", "message": "interrupted"})
                    raise
                except Exception as exc:  # noqa: BLE001 - cell error, timeout, dead kernel
                    exc_info = exc
                if exc_info is None or not _kernel_did_not_start(out_path):
                    break
                # another process took the kernel's ports between their choice and binding
                # ("Address already in use"): nothing ran yet, so starting again is safe
                time.sleep(1 + attempt)
        executed = nbformat.read(out_path, as_version=4) if out_path.exists() else None
        if exc_info is not None:
            status = tracking.FAILED
            cell, ename, evalue, count = (_cell_error(executed) if executed is not None
                                          else (None, "", "", None))
            if cell is None and executed is not None:  # a timeout leaves no error output
                cell, count = _last_started(executed)
            ename = ename or type(exc_info).__name__
            evalue = evalue or (str(exc_info).strip().splitlines() or [""])[0]
            where = _where(cell, count) if cell is not None else "before any cell ran"
            message = f"{path.stem}: {where} failed: {ename}: {evalue}"
            error = {"cell_index": cell, "ename": ename, "evalue": evalue, "message": message}
        elif executed is not None and _unexecuted(executed) is not None:
            status = tracking.STOPPED
            cell, ename, evalue, count = _cell_error(executed)  # sys.exit leaves a SystemExit
            if cell is None:
                cell = max(0, _unexecuted(executed) - 1)
            message = (f"{path.stem}: the notebook stopped early at {_where(cell, count)} "
                       f"({ename or 'no error raised'}{': ' + evalue if evalue else ''}); "
                       "the cells after it did not run")
            error = {"cell_index": cell, "ename": ename or "StoppedEarly", "evalue": evalue,
                     "message": message}
        if executed is not None:
            _strip_sentinel(executed)
            nbformat.write(executed, out_path)
            with contextlib.suppress(Exception):  # a report that cannot render must not hide the run
                export_html(out_path, run.run_dir / "report.html")
        run.mark(status, error)
    record = tracking.read_run(run.run_dir)
    return RunResult(template=path.stem, name=record.get("name", ""), status=status,
                     exit_code=EXIT_CODES[status], run_dir=run.run_dir,
                     mlflow_run_id=record.get("mlflow_run_id"), synced=bool(record.get("synced")),
                     message=message, record=record)


# ----------------------------------------------------------------------------- jobs
def load_jobs(path: str | os.PathLike) -> list[dict]:
    """Read and check a jobs YAML file: a list of ``{template, name, parameters, cell_timeout}``
    (or a mapping with a ``jobs`` list). Every job's parameters are validated here, so a typo
    fails the whole file before any kernel starts."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"jobs file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML ({exc})") from exc
    if isinstance(data, dict):
        data = data.get("jobs")
    if not isinstance(data, list) or not data:
        raise ParameterError(f"{path}: expected a list of jobs (template, name, parameters)")
    jobs = []
    for i, job in enumerate(data):
        if isinstance(job, str):
            job = {"template": job}
        if not isinstance(job, dict) or "template" not in job:
            raise ParameterError(f"{path}: job {i} needs a `template`")
        unknown = set(job) - {"template", "name", "parameters", "cell_timeout"}
        if unknown:
            raise ParameterError(f"{path}: job {i} has unknown keys {sorted(unknown)}")
        template = str(job["template"])
        tpl = Path(template)
        if not tpl.is_absolute() and (path.parent / tpl).suffix == ".ipynb" \
                and (path.parent / tpl).is_file():
            template = str((path.parent / tpl).resolve())
        params = job.get("parameters") or {}
        if not isinstance(params, dict):
            raise ParameterError(f"{path}: job {i} `parameters` must be a mapping")
        try:
            validate_parameters(read_parameters(template), params)
        except ParameterError as exc:
            raise ParameterError(f"{path}: job {i} ({template}): {exc}") from exc
        jobs.append({"template": template, "name": job.get("name"), "parameters": params,
                     "cell_timeout": job.get("cell_timeout")})
    return jobs


def _run_job(job: dict, progress: bool, env: dict | None = None) -> dict:
    """One job in a fresh process (papermill kernels started from threads of one process collide)."""
    if env:
        os.environ.update(env)
    try:
        result = run_template(job["template"], job["parameters"], name=job.get("name"),
                              cell_timeout=job.get("cell_timeout"), progress=progress)
    except ParameterError as exc:
        return {"template": job["template"], "name": job.get("name"), "status": "REFUSED",
                "exit_code": EXIT_BAD_INPUT, "run_dir": None, "synced": False, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - report it as a failed job, keep the others going
        return {"template": job["template"], "name": job.get("name"), "status": tracking.FAILED,
                "exit_code": EXIT_FAILED, "run_dir": None, "synced": False,
                "message": f"{type(exc).__name__}: {exc}"}
    return {"template": result.template, "name": result.name, "status": result.status,
            "exit_code": result.exit_code, "run_dir": str(result.run_dir),
            "synced": result.synced, "message": result.message,
            "mlflow_run_id": result.mlflow_run_id}


def run_jobs(jobs: list[dict] | str | os.PathLike, parallel: int = 1,
             progress: bool = True) -> list[dict]:
    """Run jobs, each in its own process, at most ``parallel`` at once.

    Returns one dict per job (``template, name, status, exit_code, run_dir, synced, message``),
    in the order of the jobs.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    if not isinstance(jobs, list):
        jobs = load_jobs(jobs)
    if parallel < 1:
        raise ParameterError(f"--parallel must be at least 1, got {parallel}")
    # children must see the same settings even if they were changed in this process
    env = {k: v for k, v in os.environ.items() if k.startswith(("WORKBENCH_", "MLFLOW_"))}
    results: list[dict | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="jobs", unit="run", disable=not progress)
    ctx = mp.get_context("spawn")  # a clean interpreter per job: no inherited kernel state
    with ProcessPoolExecutor(max_workers=parallel, mp_context=ctx,
                             max_tasks_per_child=1) as pool:
        futures = {pool.submit(_run_job, job, progress and parallel == 1, env): i
                   for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # noqa: BLE001 - the worker died (killed, out of memory)
                results[i] = {"template": jobs[i]["template"], "name": jobs[i].get("name"),
                              "status": tracking.FAILED, "exit_code": EXIT_FAILED,
                              "run_dir": None, "synced": False,
                              "message": f"worker died: {type(exc).__name__}: {exc}"}
            bar.set_postfix_str(f"{results[i]['template']}: {results[i]['status']}")
            bar.update()
    bar.close()
    return results  # type: ignore[return-value]


def jobs_exit_code(results: list[dict]) -> int:
    """2 if a job was refused, else 1 if one failed, else 3 if one stopped early, else 0."""
    codes = {r["exit_code"] for r in results}
    for code in (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_STOPPED):
        if code in codes:
            return code
    return EXIT_OK


# ----------------------------------------------------------------------------- CLI
def _load_parameter_file(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ParameterError(f"parameters file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{file}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ParameterError(f"{file}: expected a mapping of parameter names to values")
    return data


def main(args) -> int:
    """``workbench run TEMPLATE [-p NAME VALUE ...] [-f params.yml]``; returns the exit code."""
    values = _load_parameter_file(args.parameters_file)
    text_values = dict(args.parameter or [])
    result = run_template(args.template, values, text_parameters=text_values, name=args.name,
                          cell_timeout=args.cell_timeout, progress=not args.no_progress)
    stream = sys.stdout if result.ok else sys.stderr
    print(result.summary(), file=stream)
    if result.run_dir and (result.run_dir / "report.html").exists():
        print(f"report: {result.run_dir / 'report.html'}", file=stream)
    return result.exit_code


def main_jobs(args) -> int:
    """``workbench run-jobs jobs.yml [--parallel N]``; returns the worst exit code."""
    results = run_jobs(args.jobs, parallel=args.parallel,
                       progress=not getattr(args, "no_progress", False))
    for r in results:
        line = f"{r['status']:9s} exit {r['exit_code']}  {r['template']}/{r.get('name') or ''}"
        if r.get("run_dir"):
            line += f"  {r['run_dir']}"
        if r.get("run_dir") and not r.get("synced"):
            line += "  [not synced: `workbench sync`]"
        print(line)
        if r.get("message"):
            print(f"          {r['message']}")
    return jobs_exit_code(results)
