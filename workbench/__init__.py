"""workbench: did this change work, for whom, and why?

A/B experiment analyses (frequentist, sequential, Bayesian), model experiments, SHAP, drift,
MLflow tracking and Voilà dashboards, aggregating inside the data engine.
"""
from __future__ import annotations

__version__ = "0.1.0"

from workbench.errors import WorkbenchError, WorkbenchWarning  # noqa: E402

__all__ = ["__version__", "WorkbenchError", "WorkbenchWarning"]


def __getattr__(name: str):
    # Lazy: `import workbench` stays instant; ibis loads on first use of wb.Experiment.
    if name == "Experiment":
        from workbench.readout.experiment import Experiment

        return Experiment
    if name in ("mean", "proportion", "ratio", "quantile"):  # per-unit metrics (Experiment.from_units)
        from workbench.metrics import definition

        return getattr(definition, name)
    if name == "plan":  # wb.plan(...): planning on historical data (workbench/plan.py)
        from workbench.plan import plan

        return plan
    if name == "plots":  # wb.plots.plot_forest(res) without importing matplotlib at import time
        import importlib

        return importlib.import_module("workbench.plots")
    if name == "assign":  # deterministic hash assignment (numpy; assign_expr for the engine)
        from workbench.data.assignment import assign

        return assign
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
