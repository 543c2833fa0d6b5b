"""Figures of an A/A simulation: the QQ plot of null p-values against Uniform(0, 1)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.plots.experiment import _axes, _colour


def plot_qq(sim, ax=None, metric: str | None = None, band: bool = True):
    """Sorted null p-values of each metric x variant against the uniform quantiles
    ``(i - 0.5) / k``, with the diagonal and a pointwise 95 % band (Beta order statistics).

    Parameters
    ----------
    sim : SimulationResult or DataFrame
        A :class:`~workbench.readout.simulation.SimulationResult` or its ``runs`` frame
        (``metric, variant, p_value``).
    ax : matplotlib Axes, optional
    metric : str, optional
        One metric only (default: all).
    band : bool
        Draw the band a calibrated test stays in (95 % of the time, pointwise).

    Returns
    -------
    matplotlib Axes
    """
    from scipy import stats as sps

    runs = sim if isinstance(sim, pd.DataFrame) else sim.runs
    if metric is not None:
        runs = runs[runs["metric"] == metric]
    ax = _axes(ax, (5, 5))
    groups = list(runs.groupby(["metric", "variant"], sort=False))
    colours = _colour([k for k, _ in groups])
    k_max = 0
    for key, g in groups:
        p = np.sort(g["p_value"].to_numpy(float))
        p = p[np.isfinite(p)]
        if not p.size:
            continue
        k_max = max(k_max, p.size)
        q = (np.arange(1, p.size + 1) - 0.5) / p.size
        ax.plot(q, p, ".", ms=3, color=colours[key], label=f"{key[0]} / {key[1]}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    if band and k_max:
        i = np.arange(1, k_max + 1)
        q = (i - 0.5) / k_max
        ax.fill_between(q, sps.beta.ppf(0.025, i, k_max + 1 - i),
                        sps.beta.ppf(0.975, i, k_max + 1 - i), color="grey", alpha=0.15,
                        lw=0, label="95 % band (calibrated)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("A/A p-value")
    ax.set_title("p-values under re-randomisation (A/A)")
    if groups:
        ax.legend(fontsize="small", loc="upper left")
    return ax
