"""Statistics engine: A/B comparisons on sufficient statistics, vectorised over all rows.

``analyze`` compares every treatment with the control for every metric (and segment/date) in
one call: frequentist (Welch t / z), sequential (always-valid confidence sequences) or Bayesian
(closed form), with CUPED, ratio metrics (delta method), multiple-testing corrections and SRM.
``srm`` and the power helpers stand alone. Pure numpy/scipy; the PyMC models live apart in
:mod:`workbench.stats.pymc` (``from workbench.stats import pymc``), which imports PyMC only when a
model is fitted.
"""
from __future__ import annotations

from workbench.stats import power
from workbench.stats.analysis import analyze
from workbench.stats.power import duration, mde, power_table, sample_size
from workbench.stats.result import StatsResult
from workbench.stats.srm import SRMResult, srm

__all__ = ["analyze", "StatsResult", "srm", "SRMResult", "power", "sample_size", "mde",
           "power_table", "duration"]
