"""Statistics engine: A/B comparisons on sufficient statistics, vectorised over all rows.

``analyze`` compares every treatment with the control for every metric (and segment/date) in
one call: frequentist (Welch t / z), sequential (always-valid confidence sequences) or Bayesian
(closed form), with CUPED, ratio metrics (delta method), multiple-testing corrections and SRM.
``srm`` and the power helpers stand alone. Pure numpy/scipy; the PyMC models live apart in
:mod:`workbench.stats.pymc` (``from workbench.stats import pymc``), which imports PyMC only when a
model is fitted.
"""
from __future__ import annotations

import importlib

# ``srm`` is bound here, not lazily: the function must win over the submodule of that name.
from workbench.stats.srm import SRMResult, srm

# The rest is lazy (PEP 562), as ``workbench``'s own: importing one module of the package,
# such as ``workbench.stats.srm`` for its threshold, loads neither the others nor scipy.
_NAMES = {"analyze": "analysis", "StatsResult": "result", "duration": "power", "mde": "power",
          "power_table": "power", "sample_size": "power"}
__all__ = ["analyze", "StatsResult", "srm", "SRMResult", "power", "sample_size", "mde",
           "power_table", "duration"]


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"workbench.stats.{_NAMES[name]}"), name)
    if name == "power":
        return importlib.import_module("workbench.stats.power")
    raise AttributeError(f"module 'workbench.stats' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so that tab completion of ``wb.stats.`` lists them."""
    return sorted(set(globals()) | set(__all__))
