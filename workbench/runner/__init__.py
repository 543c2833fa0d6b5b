"""Run template notebooks with papermill: validated parameters, one tracked run each.

``workbench run ab_test -p experiment_id checkout_redesign`` (or :func:`run_template`) checks the
parameters against the template's ``parameters`` cell, starts a run with
:func:`workbench.tracking.start_run`, executes the notebook in a kernel of the current
interpreter with papermill, writes the executed notebook and an HTML export with the code
hidden into the run folder, and ends the run (pushed to MLflow, or kept unsynced).

- :mod:`~workbench.runner.parameters` - the ``parameters`` cell and checking values.
- :mod:`~workbench.runner.execution` - :func:`run_template`, :class:`RunResult`, exit codes.
- :mod:`~workbench.runner.jobs` - :func:`run_jobs` (``workbench run-jobs``).
"""
from __future__ import annotations

from workbench.runner.execution import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    SENTINEL_TAG,
    RunInterrupted,
    RunResult,
    export_html,
    notebook_failure,
    run_template,
)
from workbench.runner.jobs import jobs_exit_code, load_jobs, run_jobs
from workbench.runner.parameters import (
    TemplateParameter,
    parse_parameters,
    read_parameter_file,
    read_parameters,
    template_path,
    validate_parameters,
)

__all__ = [
    "EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_FAILED", "EXIT_OK", "EXIT_STOPPED", "SENTINEL_TAG",
    "RunInterrupted", "RunResult", "TemplateParameter", "export_html", "jobs_exit_code", "load_jobs",
    "notebook_failure", "parse_parameters", "read_parameter_file", "read_parameters",
    "run_jobs", "run_template", "template_path", "validate_parameters",
]
