"""SHAP explanations: checked against shap's own explainers, closed forms and additivity."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import shap
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from workbench.explain import Explanation, explain, explain_uplift
from workbench.modeling import UpliftModel, compare_models
from workbench.summary import Summary


def html_rows(html: str) -> list[list[str]]:
    """The cells of each row of the HTML tables (header rows included)."""
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S)]


def _numeric(n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["a"] - X["b"] + 0.5 * X["a"] * X["c"])))).astype(int)
    return X, y


def test_xgboost_native_equals_tree_explainer():
    X, y = _numeric()
    model = xgb.XGBClassifier(n_estimators=60, max_depth=4, tree_method="hist", random_state=0,
                              n_jobs=1).fit(X, y)
    e = explain(model, X, max_samples=None)
    assert e.method == "xgboost pred_contribs" and e.output_space == "log-odds"
    ref = shap.TreeExplainer(model)(X)
    np.testing.assert_allclose(e.values, ref.values, atol=1e-5)
    np.testing.assert_allclose(e.base_values, ref.base_values, atol=1e-5)
    margin = model.get_booster().predict(xgb.DMatrix(X), output_margin=True)
    np.testing.assert_allclose(e.values.sum(1) + e.base_values, margin, atol=1e-4)


def test_one_hot_pipeline_sums_to_the_linear_closed_form():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.normal(size=600), "dev": rng.choice(["d", "m", "t"], 600)})
    df["label"] = (rng.random(600) < np.where(df["dev"] == "m", 0.6, 0.3)).astype(int)
    comp = compare_models(df, "label", models=["logistic_regression"], cv=2, progress=False)
    model = comp.models["logistic_regression"]
    X = comp.prepare(df)
    e = explain(model, X, max_samples=None, background_size=600)
    # Linear SHAP with independent features: coef_k * (z_k - mean z_k), summed per feature.
    encoder, lr = model[:-1], model[-1]
    Z = encoder.transform(X)
    Z = Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)
    contrib = lr.coef_[0] * (Z - Z.mean(axis=0))
    names = list(encoder.get_feature_names_out())
    dev_cols = [i for i, n in enumerate(names) if n.startswith("dev_")]
    np.testing.assert_allclose(e.values[:, 0], contrib[:, names.index("a")], atol=1e-8)
    np.testing.assert_allclose(e.values[:, 1], contrib[:, dev_cols].sum(1), atol=1e-8)
    np.testing.assert_allclose(e.values.sum(1) + e.base_values, model.decision_function(X),
                               atol=1e-8)
    assert e.importance()["feature"].tolist()[0] == "dev"


def test_sklearn_forest_and_model_agnostic_paths_are_additive():
    X, y = _numeric(400, seed=2)
    forest = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    e = explain(forest, X, max_samples=100)
    assert e.method == "shap.TreeExplainer" and e.output_space == "probability"
    np.testing.assert_allclose(e.values.sum(1) + e.base_values,
                               forest.predict_proba(e.data)[:, 1], atol=1e-6)
    lr = LogisticRegression().fit(X, y)                 # not a tree, not a pipeline
    e = explain(lr, X, max_samples=40, background_size=30)
    assert e.method == "shap.PermutationExplainer" and e.output_space == "probability"
    np.testing.assert_allclose(e.values.sum(1) + e.base_values,
                               lr.predict_proba(e.data)[:, 1], atol=1e-8)
    assert set(e.importance()["feature"].head(2)) == {"a", "b"}


def test_explain_uplift_t_learner_is_the_difference_of_shap_values():
    rng = np.random.default_rng(4)
    n = 3000
    X = pd.DataFrame({"a": rng.normal(size=n), "noise": rng.normal(size=n),
                      "dev": rng.choice(["desktop", "mobile"], n)})
    t = rng.integers(0, 2, n)
    p = 0.3 + 0.25 * t * (X["dev"] == "mobile") + 0.1 * (X["a"] > 0)
    y = (rng.random(n) < p).astype(int)
    model = UpliftModel(learner="t").fit(X, t, y)
    e = explain_uplift(model, X, max_samples=500)
    Xp = model.transform_features(e.data)
    sv = {arm: shap.TreeExplainer(m)(Xp).values for arm, m in model.outcome_models_.items()}
    np.testing.assert_allclose(e.values, sv["treatment"] - sv["control"], atol=1e-5)
    assert "log-odds" in e.output_space
    assert e.importance()["feature"].iloc[0] == "dev"     # the effect lives on device
    xm = UpliftModel(learner="x").fit(X, t, y)
    ex = explain_uplift(xm, X, max_samples=500)
    np.testing.assert_allclose(ex.values.sum(1) + ex.base_values, xm.predict(ex.data), atol=1e-5)
    assert ex.importance()["feature"].iloc[0] == "dev"


def test_explanation_object_and_plots():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"a": rng.normal(size=300), "dev": pd.Categorical(rng.choice(list("xyz"), 300))})
    y = (X["a"] + (X["dev"] == "x") > 0.5).astype(int)
    model = xgb.XGBClassifier(n_estimators=20, enable_categorical=True, tree_method="hist",
                              n_jobs=1).fit(X, y)
    e = explain(model, X, max_samples=200)
    assert isinstance(e, Explanation) and e.values.shape == (200, 2)
    assert list(e.to_frame().columns) == ["feature", "mean_abs_shap", "mean_shap", "share"]
    assert e.to_frame()["share"].sum() == pytest.approx(1)
    summary = e.summary()
    assert isinstance(summary, Summary) and "top features" in summary
    # the HTML table lists the features by mean |SHAP|, recomputed here from the values
    header, *rows = html_rows(e._repr_html_())
    mean_abs = dict(zip(e.feature_names, np.abs(e.values).mean(axis=0)))
    assert [r[0] for r in rows] == sorted(mean_abs, key=mean_abs.get, reverse=True)
    for r in rows:
        assert float(r[header.index("mean_abs_shap")]) == pytest.approx(mean_abs[r[0]], rel=1e-3)
    for kind in ("bar", "beeswarm", "dependence"):
        assert e.plot(kind) is not None
    assert e.plot("dependence", feature="dev") is not None


def _comparison_run(reports, stamp, best, status="FINISHED", **parameters):
    import json

    run_id = stamp.replace("T", "").ljust(32, "a")
    folder = reports / "model_experiment" / "conversion_model" / f"2026120{stamp}Z-{run_id[:8]}"
    folder.mkdir(parents=True)
    params = {"task": "conversion_model", "source": None, "table": "model_data",
              "target": "label", **parameters}
    (folder / "run.json").write_text(json.dumps({
        "run_id": run_id, "template": "model_experiment", "status": status,
        "started_at": f"2026-12-0{stamp[0]}T{stamp[2:4]}:{stamp[4:6]}:00Z", "parameters": params,
        "summary": {"best_model": best}, "metrics": {f"{best}.roc_auc": 0.77821}}))
    return run_id


def test_choose_model_explains_the_comparisons_winner_and_says_why(tmp_path):
    from workbench.explain import choose_model

    reports = tmp_path / "reports"
    assert choose_model("conversion_model", reports_dir=reports).model is None  # none yet
    old = _comparison_run(reports, "1T100000", "xgboost")
    new = _comparison_run(reports, "2T100000", "logistic_regression")
    _comparison_run(reports, "2T110000", "hist_gradient_boosting", status="FAILED")
    _comparison_run(reports, "2T120000", "hist_gradient_boosting", table="other_table")
    choice = choose_model("conversion_model", table="model_data", target="label",
                          reports_dir=reports)
    assert choice.model == "logistic_regression" and choice.best == "logistic_regression"
    assert choice.reason.startswith("logistic_regression: the best model (roc auc 0.7782)")
    assert new[:8] in choice.reason and old[:8] not in choice.reason
    assert repr(choice) == choice.reason and "Model explained." in choice._repr_html_()
    forced = choose_model("conversion_model", "xgboost", table="model_data", reports_dir=reports)
    assert forced.model == "xgboost" and "logistic_regression is the best model" in forced.reason
    other = choose_model("conversion_model", table="third_table", reports_dir=reports)
    assert other.model is None and "compared here" in other.reason
