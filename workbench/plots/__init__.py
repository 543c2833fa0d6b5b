"""Figures (matplotlib). Each function computes nothing heavy, takes a result object or its tidy
frame (so dashboards can plot tables read back from a run) and returns the Axes.

Experiment readout plots live in :mod:`workbench.plots.experiment` (re-exported here); model
experiment plots live in :mod:`workbench.plots.model`.
"""
from __future__ import annotations

from workbench.plots.experiment import (
    plot_cumulative_lift,
    plot_forest,
    plot_phases,
    plot_posteriors,
    plot_segments,
)

__all__ = ["plot_forest", "plot_cumulative_lift", "plot_posteriors", "plot_segments",
           "plot_phases"]
