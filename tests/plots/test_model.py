"""Model figures: what they draw equals the result objects' numbers, recomputed independently."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from workbench.drift import drift_table  # noqa: E402
from workbench.explain import explain  # noqa: E402
from workbench.modeling import compare_models, qini_curve  # noqa: E402
from workbench.plots.model import (  # noqa: E402
    plot_dependence,
    plot_drift,
    plot_importance,
    plot_scores,
    plot_uplift_curve,
)


@pytest.fixture(scope="module")
def comparison():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=600), "g": rng.choice(list("xyz"), 600)})
    df["label"] = np.where(rng.random(600) < 1 / (1 + np.exp(-2 * df["a"])), "yes", "no")
    return compare_models(df, "label", models=["logistic_regression", "xgboost"], cv=3,
                          progress=False), df


def test_scores_are_the_cv_means_and_sds(comparison):
    comp, _ = comparison
    ax = plot_scores(comp)
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, comp.scores["roc_auc_mean"])
    assert [t.get_text() for t in ax.get_yticklabels()] == list(comp.scores["model"])
    assert plot_scores(comp, metric="brier").patches[0].get_width() == pytest.approx(
        comp.scores["brier_mean"].iloc[0])
    with pytest.raises(ValueError, match="unknown metric"):
        plot_scores(comp, metric="rmse")
    plt.close("all")


def test_roc_curves_are_sklearns_on_the_out_of_fold_predictions(comparison):
    comp, df = comparison
    ax = comp.plot("roc")
    y = (df["label"] == "yes").to_numpy()
    for line, name in zip(ax.get_lines(), comp.oof_predictions.columns):
        fpr, tpr, _ = roc_curve(y, comp.oof_predictions[name])
        np.testing.assert_allclose(line.get_xdata(), fpr)
        np.testing.assert_allclose(line.get_ydata(), tpr)
        auc = roc_auc_score(y, comp.oof_predictions[name])
        assert f"{name} (AUC {auc:.3f})" == line.get_label()
    plt.close("all")


def test_uplift_curve_and_importance_and_dependence(comparison):
    comp, df = comparison
    rng = np.random.default_rng(1)
    curve = qini_curve(rng.integers(0, 2, 200), rng.integers(0, 2, 200), rng.random(200))
    ax = plot_uplift_curve(curve)
    model_line, random_line = ax.get_lines()[:2]
    np.testing.assert_allclose(model_line.get_ydata(), curve.gain)
    np.testing.assert_allclose(random_line.get_ydata(), curve.fraction * curve.gain[-1])
    e = explain(comp.models["xgboost"], comp.prepare(df), max_samples=200)
    ax = plot_importance(e)
    imp = np.abs(e.values).mean(axis=0)
    order = np.argsort(-imp, kind="stable")
    np.testing.assert_allclose([p.get_width() for p in ax.patches], imp[order])
    ax = plot_dependence(e, "a")
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1],
                               e.values[:, e.feature_names.index("a")])
    with pytest.raises(ValueError, match="unknown feature"):
        plot_dependence(e, "nope")
    plt.close("all")


def test_drift_bars_are_score_over_threshold():
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "y": rng.normal(size=2000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, size=2000), "y": rng.normal(size=2000)})
    result = drift_table(ref, cur)
    ax = plot_drift(result)
    t = result.table.set_index("column")
    for patch, label in zip(ax.patches, ax.get_yticklabels()):
        col = label.get_text().split(" ")[0]
        stat, thr = t.loc[col, "statistic"], t.loc[col, "threshold"]
        expected = (np.log10(stat) / np.log10(thr) if "p_value" in t.loc[col, "method"]
                    else stat / thr)
        assert patch.get_width() == pytest.approx(expected)
        assert (patch.get_width() >= 1) == bool(t.loc[col, "drifted"])
    plt.close("all")
