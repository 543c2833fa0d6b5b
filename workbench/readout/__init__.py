"""The A/B readout: the Experiment facade, its decision, its result and the record runs log.

- :mod:`~workbench.readout.experiment` - :class:`Experiment` (source -> checks -> statistics
  -> results).
- :mod:`~workbench.readout.decision` - verdicts, the significance rule, the decision.
- :mod:`~workbench.readout.result` - :class:`AnalysisResult`.
- :mod:`~workbench.readout.record` - :class:`ReadoutRecord`, what templates log and dashboards
  load.
"""
from __future__ import annotations

__all__ = ["Experiment", "AnalysisResult", "ReadoutRecord"]


def __getattr__(name: str):
    # Lazy: the record (read by dashboards) does not need ibis or the metrics compiler.
    if name == "Experiment":
        from workbench.readout.experiment import Experiment

        return Experiment
    if name == "AnalysisResult":
        from workbench.readout.result import AnalysisResult

        return AnalysisResult
    if name == "ReadoutRecord":
        from workbench.readout.record import ReadoutRecord

        return ReadoutRecord
    raise AttributeError(f"module 'workbench.readout' has no attribute {name!r}")
