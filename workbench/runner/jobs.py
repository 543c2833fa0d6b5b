"""Run-jobs: a YAML list of template runs, each in its own process.

``workbench run-jobs jobs.yml --parallel 2`` (or :func:`run_jobs`). Every job is checked before
any kernel starts; one failing job does not stop the others; :func:`jobs_exit_code` gives the
worst outcome as one exit code.
"""
from __future__ import annotations

import os
from pathlib import Path

from workbench import tracking
from workbench.errors import ParameterError
from workbench.runner.execution import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    run_template,
)
from workbench.runner.parameters import read_parameters, validate_parameters

_JOB_KEYS = {"template", "name", "parameters", "cell_timeout"}


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
        unknown = set(job) - _JOB_KEYS
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


def _run_job(job: dict, progress: bool, env: dict | None = None, label: str = "") -> dict:
    """One job in a fresh process (papermill kernels started from threads of one process collide)."""
    import sys

    if env:
        os.environ.update(env)
    if progress and label:  # names the cell bar that follows (papermill's says "Executing")
        print(label, file=sys.stderr, flush=True)
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
    # One job at a time: each shows its cell bar under a "[2/4] explain" line. Several at
    # once: one bar over the jobs (bars of several processes on one terminal garble).
    cell_bars = progress and parallel == 1
    bar = tqdm(total=len(jobs), desc="jobs", unit="run", disable=not progress or cell_bars)
    ctx = mp.get_context("spawn")  # a clean interpreter per job: no inherited kernel state
    with ProcessPoolExecutor(max_workers=parallel, mp_context=ctx,
                             max_tasks_per_child=1) as pool:
        futures = {pool.submit(_run_job, job, cell_bars, env,
                               f"[{i + 1}/{len(jobs)}] {Path(job['template']).stem}"
                               + (f" ({job['name']})" if job.get("name") else "")): i
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
