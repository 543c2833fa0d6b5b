"""Figures for model experiments, uplift, SHAP explanations and drift.

Each function takes a computed result object and an optional matplotlib ``ax`` and returns the
Axes; nothing is recomputed here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import format as fmt


def _axes(ax, figsize=(7, 4)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_scores(comparison, metric: str | None = None, ax=None):
    """Cross-validated score of each model, mean with +/- 1 sd across folds.

    Bars start at a meaningful origin, never at a zoomed range that makes 0.77 against 0.78
    look like a rout: ROC AUC from 0.5 (a model that ranks at random, said on the axis),
    every other metric from 0. Each bar carries its value.
    """
    frame = comparison.to_frame()
    metric = metric or comparison.primary_metric
    if f"{metric}_mean" not in frame:
        raise ValueError(f"plot_scores: unknown metric {metric!r}; have {comparison.metrics}")
    ax = _axes(ax, (6, 0.6 * len(frame) + 1.5))
    means = frame[f"{metric}_mean"].to_numpy(dtype=float)
    sds = frame[f"{metric}_sd"].fillna(0).to_numpy(dtype=float)
    lo, hi = float(np.nanmin(means - sds)), float(np.nanmax(means + sds))
    label = f"{metric} ({comparison.cv}-fold CV, mean +/- sd)"
    if metric == "roc_auc":  # bars of the whole value, seen from 0.5 on
        limits = (min(0.5, lo), 1.0)
        label = (f"ROC AUC ({comparison.cv}-fold CV, mean +/- sd); the axis starts at 0.5, "
                 "a model that ranks at random")
    else:
        limits = (min(0.0, 1.1 * lo), max(0.0, 1.1 * hi))
        if limits[0] == limits[1]:
            limits = (limits[0], limits[0] + 1)
    y = np.arange(len(frame))
    ax.barh(y, means, xerr=sds, color="#4C72B0", alpha=0.85, capsize=4)
    ax.set_yticks(y, frame["model"])
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_title("Model comparison")
    ax.set_xlim(*limits)
    for i, value in enumerate(means):
        ax.annotate(fmt.number(value), (value, i), xytext=(4, 9), textcoords="offset points",
                    fontsize="small")
    return ax


def plot_roc(comparison, ax=None):
    """ROC curves of the out-of-fold predictions of each model (binary classification)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if comparison.task != "binary":
        raise ValueError("plot_roc: ROC curves need a binary classification comparison")
    ax = _axes(ax, (5, 5))
    y = comparison.oof_target  # already 0/1, 1 the positive class (not the raw labels)
    for name in comparison.oof_predictions.columns:
        p = comparison.oof_predictions[name].to_numpy()
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves (out-of-fold)")
    ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_uplift_curve(curve, ax=None, label: str | None = None):
    """A Qini or uplift curve against the random-targeting line."""
    ax = _axes(ax, (6, 4))
    ax.plot(curve.fraction, curve.gain, label=label or f"model ({curve.kind} coef {curve.coefficient:.4f})")
    ax.plot(curve.fraction, curve.random, ls="--", color="grey", label="random targeting")
    ax.set_xlabel("share of population targeted (by predicted uplift, descending)")
    ax.set_ylabel("incremental outcomes per unit of population")
    ax.set_title(f"{curve.kind.capitalize()} curve")
    ax.legend(fontsize="small")
    return ax


def plot_importance(explanation, max_features: int = 15, ax=None):
    """Global importance: mean |SHAP value| per feature."""
    imp = explanation.importance().head(max_features)
    ax = _axes(ax, (6, 0.35 * len(imp) + 1.2))
    ax.barh(imp["feature"], imp["mean_abs_shap"], color="#4C72B0")
    ax.invert_yaxis()
    ax.set_xlabel(f"mean |SHAP value| ({explanation.output_space})")
    ax.set_title(explanation.title or "Feature importance")
    return ax


def _colour_values(col: pd.Series) -> np.ndarray:
    """Feature values scaled to [0, 1] for colouring (ranks, so outliers do not wash out)."""
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        codes = pd.Series(pd.Categorical(col.astype("object")).codes, index=col.index).astype(float)
        codes[codes < 0] = np.nan
        col = codes
    ranks = col.astype(float).rank(pct=True).to_numpy()
    return ranks


def plot_beeswarm(explanation, max_features: int = 15, ax=None, seed: int = 0):
    """SHAP value of every row for the most important features, coloured by the feature value."""
    imp = explanation.importance().head(max_features)
    ax = _axes(ax, (7, 0.4 * len(imp) + 1.5))
    rng = np.random.default_rng(seed)
    values = explanation.values
    names = list(explanation.feature_names)
    sc = None
    for row, feature in enumerate(imp["feature"]):
        j = names.index(feature)
        shap_j = values[:, j]
        jitter = rng.normal(0, 0.08, size=shap_j.size).clip(-0.3, 0.3)
        colour = (_colour_values(explanation.data[feature]) if explanation.data is not None
                  and feature in explanation.data else np.full(shap_j.size, 0.5))
        sc = ax.scatter(shap_j, row + jitter, c=colour, cmap="coolwarm", s=6, alpha=0.6,
                        vmin=0, vmax=1, linewidths=0)
    ax.set_yticks(np.arange(len(imp)), imp["feature"])
    ax.invert_yaxis()
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"SHAP value ({explanation.output_space})")
    ax.set_title(explanation.title or "SHAP values")
    if sc is not None:
        cbar = ax.figure.colorbar(sc, ax=ax, ticks=[0, 1], pad=0.01)
        cbar.ax.set_yticklabels(["low", "high"])
        cbar.set_label("feature value (rank)")
    return ax


def plot_dependence(explanation, feature: str, ax=None):
    """SHAP value of one feature against its value."""
    names = list(explanation.feature_names)
    if feature not in names:
        raise ValueError(f"plot_dependence: unknown feature {feature!r}; have {names}")
    ax = _axes(ax, (6, 4))
    shap_j = explanation.values[:, names.index(feature)]
    x = explanation.data[feature] if explanation.data is not None else None
    if x is None:
        raise ValueError("plot_dependence: the explanation holds no feature values")
    if isinstance(x.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(x):
        frame = pd.DataFrame({"x": x.astype(str).to_numpy(), "shap": shap_j})
        groups = frame.groupby("x")["shap"]
        labels = list(groups.groups)
        ax.boxplot([groups.get_group(k).to_numpy() for k in labels], showfliers=False)
        ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=30)
    else:
        ax.scatter(x, shap_j, s=6, alpha=0.5, color="#4C72B0", linewidths=0)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(feature)
    ax.set_ylabel(f"SHAP value ({explanation.output_space})")
    ax.set_title(f"Dependence: {feature}")
    return ax


def plot_drift(result, ax=None):
    """Each column's drift score relative to its threshold; bars past 1 are drifted.

    Distances are shown as ``score / threshold``; p-values as ``log10(p) / log10(threshold)``
    (so ``p = threshold`` is 1 and smaller p-values are larger bars).
    """
    t = result.table[result.table["drifted"].notna()].copy()
    ax = _axes(ax, (7, 0.35 * max(len(t), 1) + 1.5))
    if t.empty:
        ax.text(0.5, 0.5, "no column could be compared", ha="center", va="center")
        return ax
    is_p = t["method"].str.contains("p_value")
    with np.errstate(divide="ignore"):
        ratio = np.where(is_p, np.log10(t["statistic"].clip(lower=1e-300)) / np.log10(t["threshold"]),
                         t["statistic"] / t["threshold"])
    colours = np.where(t["drifted"].astype(bool), "#C44E52", "#4C72B0")
    y = np.arange(len(t))
    ax.barh(y, ratio, color=colours)
    ax.set_yticks(y, [f"{c} ({m.split(' ')[0]})" for c, m in zip(t["column"], t["method"])])
    ax.invert_yaxis()
    ax.axvline(1, color="black", ls="--", lw=1)
    ax.set_xlabel("drift score / threshold (>= 1: drift)")
    ax.set_title(result.verdict())
    return ax
