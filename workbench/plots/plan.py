"""Figure of an experiment plan: power against duration, one line per metric."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.plots.experiment import _axes, _colour


def power_curve_frame(plan, days: int | None = None, method: str = "fixed") -> pd.DataFrame:
    """Power to detect each metric's planned MDE after 1..``days`` days
    (:func:`workbench.stats.power.power_curve`).

    Parameters
    ----------
    plan : Plan or DataFrame
        A :class:`~workbench.plan.Plan` or its table (``metric, cuped, se1, mde,
        units_per_day``, e.g. read back from a run).
    days : int, optional
        Last day (default: twice the longest fixed-horizon duration, capped to 120).
    method : {"fixed", "sequential"}

    Returns
    -------
    DataFrame
        ``metric, cuped, day, power``.
    """
    from workbench.stats.power import power_curve

    t = plan if isinstance(plan, pd.DataFrame) else plan.table
    params = {} if isinstance(plan, pd.DataFrame) else plan.parameters
    t = t[np.isfinite(t["se1"].to_numpy(float))]
    if days is None:
        longest = t["days_fixed"].max() if len(t) else np.nan
        days = int(min(120, max(7, 2 * longest))) if np.isfinite(longest) else 28
    dayv = np.arange(1, int(days) + 1, dtype=float)
    rows = []
    for _, r in t.iterrows():
        p = power_curve(r["se1"], r["mde"], r["units_per_day"] * dayv,
                        alpha=params.get("alpha", 0.05),
                        alternative=params.get("alternative", "two-sided"), method=method,
                        tuning=params.get("sequential_tuning"))
        rows.append(pd.DataFrame({"metric": r["metric"], "cuped": bool(r["cuped"]),
                                  "day": dayv.astype(int), "power": p}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["metric", "cuped", "day", "power"])


def plot_power_curve(plan, days: int | None = None, method: str = "fixed", ax=None):
    """Power against days of traffic: solid without CUPED, dashed with it (the measured
    correlation), a dotted line at the target power.

    Returns
    -------
    matplotlib Axes
    """
    from workbench import format as fmt

    curve = power_curve_frame(plan, days, method)
    ax = _axes(ax, (7, 4.5))
    metrics = list(dict.fromkeys(curve["metric"]))
    colours = _colour(metrics)
    for (m, cup), g in curve.groupby(["metric", "cuped"], sort=False):
        ax.plot(g["day"], g["power"], color=colours[m], linestyle="--" if cup else "-",
                label=f"{m} (CUPED)" if cup else m)
    target = 0.8 if isinstance(plan, pd.DataFrame) else plan.parameters.get("power", 0.8)
    ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("days of traffic")
    ax.set_ylabel(f"power ({method}, target {fmt.percent(target, 0)})")
    ax.set_ylim(0, 1.02)
    ax.set_title("Power to detect the planned MDE")
    if metrics:
        ax.legend(fontsize="small", loc="lower right")
    return ax
