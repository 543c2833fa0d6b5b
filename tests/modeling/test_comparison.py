"""Model comparison: checked against scikit-learn's own cross-validation and closed forms."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_validate

from workbench.errors import ModelError
from workbench.modeling import ModelComparison, compare_models
from workbench.summary import Summary

FAST = ["logistic_regression", "xgboost"]


def html_rows(html: str) -> list[list[str]]:
    """The cells of each row of the HTML tables (header rows included)."""
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


def _data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                       "device": rng.choice(["desktop", "mobile", "tablet"], n),
                       "flag": rng.random(n) < 0.5})
    logit = -0.5 + df["a"] - 0.5 * df["b"] + np.where(df["device"] == "mobile", 0.8, 0.0)
    df["label"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    df.loc[df.index[:20], "a"] = np.nan                 # imputed / handled natively
    return df


def test_scores_equal_sklearn_cross_validate():
    df = _data()
    result = compare_models(df, "label", models=FAST, cv=3, seed=4, progress=False)
    assert isinstance(result, ModelComparison) and result.task == "binary"
    assert result.classes == ["no", "yes"] and result.categorical == ["device", "flag"]
    X, y = result.prepare(df), (df["label"] == "yes").astype(int)
    folds = StratifiedKFold(3, shuffle=True, random_state=4)
    for name in FAST:
        ref = cross_validate(clone(result.models[name]), X, y, cv=folds,
                             scoring=["roc_auc", "neg_log_loss", "accuracy", "neg_brier_score"])
        row = result.scores.set_index("model").loc[name]
        assert row["roc_auc_mean"] == pytest.approx(ref["test_roc_auc"].mean(), rel=1e-9)
        assert row["roc_auc_sd"] == pytest.approx(ref["test_roc_auc"].std(ddof=1), rel=1e-6)
        assert row["log_loss_mean"] == pytest.approx(-ref["test_neg_log_loss"].mean(), rel=1e-6)
        assert row["accuracy_mean"] == pytest.approx(ref["test_accuracy"].mean(), rel=1e-9)
        assert row["brier_mean"] == pytest.approx(-ref["test_neg_brier_score"].mean(), rel=1e-6)
    assert result.best_ in FAST and 0.65 < result.scores["roc_auc_mean"].max() < 0.9
    assert result.oof_predictions.notna().all().all()
    summary = result.summary()
    assert isinstance(summary, Summary) and "best model" in summary
    assert f"best model {result.best_}" in summary
    # the HTML table holds one row per model with its CV mean AUC (4 decimals)
    rows = {r[0]: r for r in html_rows(result._repr_html_())[1:]}
    assert set(rows) == set(FAST)
    header = html_rows(result._repr_html_())[0]
    for name in FAST:
        shown = float(rows[name][header.index("roc_auc_mean")])
        assert shown == pytest.approx(result.scores.set_index("model").loc[name, "roc_auc_mean"],
                                      abs=5e-5)
    X_ex, out = result.signature_example()
    assert list(X_ex.columns) == result.features and len(out) == len(X_ex)
    assert isinstance(X_ex["device"].dtype, pd.CategoricalDtype)


def test_reproducible_with_seed_and_default_models():
    df = _data(600, seed=1)
    one = compare_models(df, "label", cv=3, seed=7, progress=False)
    two = compare_models(df, "label", cv=3, seed=7, progress=False)
    assert set(one.models) == {"logistic_regression", "hist_gradient_boosting", "xgboost"}
    pd.testing.assert_frame_equal(one.fold_scores, two.fold_scores)
    pd.testing.assert_frame_equal(one.oof_predictions, two.oof_predictions)
    new = df.head(50).copy()
    new.loc[new.index[0], "device"] = "smart_tv"        # unseen category -> missing
    assert np.array_equal(one.predict(new), two.predict(new))


def test_regression_metrics():
    from sklearn.metrics import mean_squared_error

    rng = np.random.default_rng(2)
    df = pd.DataFrame({"x": rng.normal(size=600), "g": rng.choice(list("ab"), 600)})
    df["y"] = 2 * df["x"] + (df["g"] == "a") + rng.normal(size=600)
    result = compare_models(df, "y", models=["ridge"], cv=4, progress=False)
    assert result.task == "regression" and result.primary_metric == "rmse"
    fold_rmse = result.fold_scores.query("metric == 'rmse'")["value"]
    assert result.scores.loc[0, "rmse_mean"] == pytest.approx(fold_rmse.mean())
    # pooled out-of-fold RMSE is close to the mean fold RMSE, and near the noise sd of 1
    pooled = np.sqrt(mean_squared_error(df["y"], result.oof_predictions["ridge"]))
    assert pooled == pytest.approx(fold_rmse.mean(), rel=0.05) and 0.9 < pooled < 1.15


@pytest.mark.parametrize("change, match", [
    (lambda d: d.drop(columns="label"), "target column 'label' not found"),
    (lambda d: d.assign(label=np.where(d.index == 5, None, d["label"])), "missing values"),
    (lambda d: d.assign(label="yes"), "constant"),
    (lambda d: d.assign(label=d.index % 3), "multiclass"),
])
def test_bad_target_raises(change, match):
    with pytest.raises(ModelError, match=match):
        compare_models(change(_data(200)), "label", task="binary" if "multi" in match else "auto",
                       progress=False)


def test_bad_features_raise():
    df = _data(200)
    with pytest.raises(ModelError, match="not found"):
        compare_models(df, "label", features=["a", "nope"], progress=False)
    with pytest.raises(ModelError, match="declare it categorical"):
        compare_models(df, "label", categorical=[], progress=False)
    with pytest.raises(ModelError, match="unknown models"):
        compare_models(df, "label", models=["svm"], progress=False)
    with pytest.raises(ModelError, match="cv"):
        compare_models(df, "label", cv=1, progress=False)
