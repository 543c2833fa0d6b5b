"""Figures of an experiment readout: forest plot, cumulative lift, posteriors, segments.

Every function takes an :class:`~workbench.experiment.AnalysisResult` or the matching tidy frame
(``results``, ``timeseries`` or ``segments`` tables, e.g. read back from a run's parquet files)
and an optional ``ax``, and returns the matplotlib Axes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
_NEEDED = ("metric", "variant", "effect", "ci_lower", "ci_upper")


def _axes(ax, figsize):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _frame(obj, attr: str, needed=_NEEDED) -> pd.DataFrame:
    frame = obj if isinstance(obj, pd.DataFrame) else getattr(obj, attr)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"the {attr} frame lacks column(s) {missing}")
    return frame


def _percent(obj, percent):
    if percent is not None:
        return percent
    if isinstance(obj, pd.DataFrame):  # the stats engine's tables carry a `difference` column
        return "difference" not in obj or bool((obj["difference"] == "relative").all())
    return getattr(obj, "difference", "relative") == "relative"


def _format_axis(ax, percent: bool, axis: str = "x") -> None:
    if percent:
        from matplotlib.ticker import PercentFormatter

        (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(PercentFormatter(1.0))


def _colour(variants) -> dict:
    return {v: _COLOURS[i % len(_COLOURS)] for i, v in enumerate(variants)}


def _interval_rows(ax, frame, by: str, labels, variants, colours, fmt: str, percent: bool) -> None:
    """Effects with intervals, one row per value ``labels`` of column ``by`` (top to bottom), the
    variants' points dodged around it; a dashed zero line and the effect axis labelled."""
    k = len(variants)
    offsets = (np.arange(k) - (k - 1) / 2) * (0.6 / max(k, 1))
    for j, v in enumerate(variants):
        sub = frame[frame["variant"] == v].set_index(by).reindex(labels)
        y = np.arange(len(labels))[::-1] - offsets[j]
        eff = sub["effect"].to_numpy(float)
        lo = eff - sub["ci_lower"].to_numpy(float)
        hi = sub["ci_upper"].to_numpy(float) - eff
        ax.errorbar(eff, y, xerr=[lo, hi], fmt=fmt, color=colours[v], capsize=3, label=v)
    ax.axvline(0, color="0.4", lw=1, ls="--")
    ax.set_yticks(np.arange(len(labels))[::-1])
    ax.set_yticklabels(labels)
    ax.set_xlabel("lift vs control" if percent else "difference vs control")
    _format_axis(ax, percent)


def plot_forest(result, ax=None, metrics=None, percent: bool | None = None):
    """Lift of every metric x variant with its interval (a forest plot).

    Parameters
    ----------
    result : AnalysisResult or DataFrame
        The ``results`` table (``metric, variant, effect, ci_lower, ci_upper``).
    metrics : list of str, optional
        Metrics to show (default all, in table order).
    percent : bool, optional
        Format the axis as percentages (default: when the effect is relative).
    """
    frame = _frame(result, "results")
    if metrics is not None:
        frame = frame[frame["metric"].isin(metrics)]
    percent = _percent(result, percent)
    variants = list(dict.fromkeys(frame["variant"]))
    colours = _colour(variants)
    metric_names = list(dict.fromkeys(frame["metric"]))
    ax = _axes(ax, (7, 0.45 * len(frame) + 1.5))
    _interval_rows(ax, frame, "metric", metric_names, variants, colours, "o", percent)
    ax.legend(loc="best", fontsize="small")
    ax.set_title("Effects with intervals")
    return ax


def plot_cumulative_lift(result, metric: str | None = None, ax=None,
                         percent: bool | None = None):
    """Cumulative lift by day with its interval band, one line per variant.

    ``result``: an AnalysisResult or its ``timeseries`` table (``date`` column).
    """
    frame = _frame(result, "timeseries", (*_NEEDED, "date"))
    if frame.empty:
        raise ValueError("no time series to plot")
    metric = metric or frame["metric"].iloc[0]
    frame = frame[frame["metric"] == metric].sort_values("date")
    percent = _percent(result, percent)
    ax = _axes(ax, (7, 4))
    variants = list(dict.fromkeys(frame["variant"]))
    colours = _colour(variants)
    for v in variants:
        sub = frame[frame["variant"] == v]
        x = pd.to_datetime(sub["date"])
        ax.plot(x, sub["effect"], color=colours[v], label=v, marker=".")
        ax.fill_between(x, sub["ci_lower"].astype(float), sub["ci_upper"].astype(float),
                        color=colours[v], alpha=0.15, lw=0)
    ax.axhline(0, color="0.4", lw=1, ls="--")
    ax.set_ylabel("cumulative lift" if percent else "cumulative difference")
    _format_axis(ax, percent, "y")
    ax.set_title(f"{metric}: cumulative effect over time")
    ax.legend(loc="best", fontsize="small")
    for label in ax.get_xticklabels():  # not fig.autofmt_xdate: it hides other axes' labels
        label.set_rotation(30)
        label.set_horizontalalignment("right")
    return ax


def plot_posteriors(result, metric: str | None = None, ax=None, alpha: float | None = None,
                    percent: bool | None = None):
    """Densities of the effect per variant, normal approximations read off the intervals.

    The density of variant ``v`` is ``N(effect, se^2)`` with ``se = (upper - lower) / (2 z)``
    and ``z`` the normal quantile of the interval level (``1 - alpha``): the posterior of the
    Bayesian closed form, or the sampling distribution of a frequentist estimate.
    """
    from scipy import stats

    frame = _frame(result, "results")
    metric = metric or frame["metric"].iloc[0]
    frame = frame[frame["metric"] == metric]
    alpha = alpha if alpha is not None else getattr(result, "alpha", 0.05)
    z = stats.norm.ppf(1 - alpha / 2)
    percent = _percent(result, percent)
    ax = _axes(ax, (7, 4))
    colours = _colour(list(dict.fromkeys(frame["variant"])))
    for _, row in frame.iterrows():
        mu = float(row["effect"])
        se = (float(row["ci_upper"]) - float(row["ci_lower"])) / (2 * z)
        if not (np.isfinite(mu) and np.isfinite(se) and se > 0):
            continue
        x = np.linspace(mu - 4 * se, mu + 4 * se, 300)
        dens = stats.norm.pdf(x, mu, se)
        c = colours[row["variant"]]
        ax.plot(x, dens, color=c, label=row["variant"])
        ax.fill_between(x, dens, where=x > 0, color=c, alpha=0.2, lw=0)
    ax.axvline(0, color="0.4", lw=1, ls="--")
    ax.set_xlabel("lift vs control" if percent else "difference vs control")
    ax.set_ylabel("density")
    _format_axis(ax, percent)
    ax.set_title(f"{metric}: distribution of the effect (shaded: > 0)")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_segments(result, metric: str | None = None, dimension: str | None = None, ax=None,
                  percent: bool | None = None):
    """Effect per segment of a dimension with (corrected) intervals, one colour per variant.

    ``result``: an AnalysisResult or its ``segments`` table (``dimension, segment`` columns).
    """
    frame = _frame(result, "segments", (*_NEEDED, "dimension", "segment"))
    if frame.empty:
        raise ValueError("no segments to plot: analyze(..., segments=[...]) first")
    metric = metric or frame["metric"].iloc[0]
    dimension = dimension or frame["dimension"].iloc[0]
    frame = frame[(frame["metric"] == metric) & (frame["dimension"] == dimension)]
    percent = _percent(result, percent)
    segs = list(dict.fromkeys(frame["segment"]))
    variants = list(dict.fromkeys(frame["variant"]))
    colours = _colour(variants)
    ax = _axes(ax, (7, 0.5 * len(segs) * max(len(variants), 1) / 1.5 + 1.5))
    _interval_rows(ax, frame, "segment", segs, variants, colours, "s", percent)
    ax.set_title(f"{metric} by {dimension}")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_phases(result, metric: str | None = None, truth: float | None = None, ax=None,
                percent: bool | None = None):
    """Effect of each phase of a staged rollout, then the ``(stratified)`` combination and the
    naive ``(pooled)`` estimate, with their intervals (one colour per variant); ``truth``, when
    known (generated data), is drawn as a vertical line.

    ``result``: an AnalysisResult or its ``phases`` table (``phase`` column).
    """
    frame = _frame(result, "phases", (*_NEEDED, "phase"))
    if frame.empty:
        raise ValueError("no phases to plot: the experiment has no phases")
    metric = metric or frame["metric"].iloc[0]
    frame = frame[frame["metric"] == metric]
    percent = _percent(result, percent)
    labels = list(dict.fromkeys(frame["phase"]))
    variants = list(dict.fromkeys(frame["variant"]))
    colours = _colour(variants)
    ax = _axes(ax, (7, 0.45 * len(labels) * max(len(variants), 1) + 1.5))
    _interval_rows(ax, frame, "phase", labels, variants, colours, "o", percent)
    if truth is not None and np.isfinite(truth):
        ax.axvline(truth, color="#2E8B57", lw=1.5, label="truth")
    ax.set_title(f"{metric}: per phase, stratified and naive pooled")
    ax.legend(loc="best", fontsize="small")
    return ax
