"""Model comparison and uplift: checked against scikit-learn, hand computations and known truth."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, cross_validate

from workbench.errors import ModelError
from workbench.modeling import (
    UPLIFT_FEATURES,
    ModelComparison,
    UpliftModel,
    compare_models,
    qini_curve,
    uplift_curve,
    uplift_frame,
)

FAST = ["logistic_regression", "xgboost"]


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
    assert "best model" in result.summary() and "<table" in result._repr_html_()
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


# ------------------------------------------------------------------------------------ uplift


def test_qini_by_hand():
    # Sorted by uplift: (y, t) = (1,1), (0,1), (1,0), (0,0); N = 4.
    # Qini Q(k) = Y_t - Y_c * N_t / N_c (Y_t while no control yet): 1, 1, 1 - 1*2/1 = -1, 0.
    curve = qini_curve([0, 1, 0, 1], [0, 1, 1, 0], [0.1, 0.4, 0.3, 0.2])
    assert np.allclose(curve.fraction, [0, .25, .5, .75, 1])
    assert np.allclose(curve.gain, np.array([0, 1, 1, -1, 0]) / 4)
    assert np.allclose(curve.random, 0)
    # trapezoids of width 1/4: (0 + .25)/2 + (.25 + .25)/2 + (.25 - .25)/2 + (-.25 + 0)/2
    assert curve.coefficient == pytest.approx(0.25 * (0.125 + 0.25 + 0 - 0.125))
    # Uplift curve: (mean_t - mean_c) * k / N, 0 while an arm is empty: 0, 0, (0.5-1)*3/4, 0.
    up = uplift_curve([0, 1, 0, 1], [0, 1, 1, 0], [0.1, 0.4, 0.3, 0.2])
    assert np.allclose(up.gain, np.array([0, 0, 0, (0.5 - 1) * 3, 0]) / 4)
    # ties are evaluated as one group: all-equal scores give just the end point
    flat = qini_curve([0, 1, 0, 1], [0, 1, 1, 0], [0.5] * 4)
    assert np.allclose(flat.fraction, [0, 1]) and flat.coefficient == 0


def test_qini_random_baseline_and_oracle():
    rng = np.random.default_rng(3)
    n = 40_000
    x = rng.random(n)
    t = rng.integers(0, 2, n)
    tau = 0.2 * x                                        # effect grows with x
    y = (rng.random(n) < 0.2 + tau * t).astype(int)
    oracle = qini_curve(y, t, tau).coefficient
    randoms = [qini_curve(y, t, rng.random(n)).coefficient for _ in range(5)]
    # Oracle by closed form: targeting the top share s by x, the treated half of them gain
    # 0.2 (1 - s/2) each: gain/N = 0.1 s (1 - s/2), random line 0.05 s, area 0.05/2 - 0.05/3.
    assert oracle == pytest.approx(0.05 / 6, abs=0.002)
    assert max(abs(r) for r in randoms) < 0.004


def test_uplift_estimator_conventions():
    model = UpliftModel(learner="x", random_state=3)
    assert model.get_params() == {"learner": "x", "base_estimator": None, "random_state": 3}
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(pd.DataFrame({"a": [1.0]}))
    X = pd.DataFrame({"a": np.arange(40.0)})
    with pytest.raises(ModelError, match="learner"):
        UpliftModel(learner="s").fit(X, np.arange(40) % 2, np.zeros(40))
    with pytest.raises(ModelError, match="treatment"):
        UpliftModel().fit(X, np.arange(40) % 3, np.zeros(40))


@pytest.fixture(scope="module")
def uplift_data(small_warehouse):
    df = uplift_frame(small_warehouse, "checkout_redesign", "treatment_a")
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        truth = con.execute("SELECT user_id, tau_conversion_a FROM truth_users").df()
    return df.merge(truth, on="user_id", how="left")


def test_uplift_frame_matches_pandas(small_warehouse, uplift_data):
    with duckdb.connect(str(small_warehouse), read_only=True) as con:
        a = con.execute("SELECT * FROM assignments WHERE experiment_id='checkout_redesign'").df()
        e = con.execute("SELECT user_id, event_time FROM events WHERE event_type='order'").df()
        end = con.execute("SELECT MAX(end_date) FROM experiments "
                          "WHERE experiment_id='checkout_redesign'").fetchone()[0]
    once = a.groupby("user_id")["variant"].nunique() == 1
    a = a[a["user_id"].isin(once[once].index) & a["variant"].isin(["control", "treatment_a"])]
    m = e.merge(a[["user_id", "assigned_at"]], on="user_id")
    m = m[(m["event_time"] >= m["assigned_at"])
          & (m["event_time"] < pd.Timestamp(end) + pd.Timedelta(days=1))]
    users = a["user_id"].drop_duplicates()
    expected = pd.Series(users.isin(m["user_id"]).astype(int).to_numpy(), index=users).sort_index()
    got = uplift_data.set_index("user_id")["conversion"].sort_index()
    assert got.index.equals(expected.index)
    assert (got == expected).all()
    assert set(uplift_data.columns) >= set(UPLIFT_FEATURES) | {"treatment", "conversion"}
    assert uplift_data["treatment"].mean() == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("learner", ["t", "x"])
def test_uplift_recovers_the_generators_effect(uplift_data, learner):
    df = uplift_data
    model = UpliftModel(learner=learner, random_state=0).fit(
        df[UPLIFT_FEATURES], df["treatment"], df["conversion"])
    cate = model.predict(df[UPLIFT_FEATURES])
    # The generator lifts conversion by 10% on mobile, 2% on desktop, 0 on tablet
    # (workbench.data.sample.P_LIFT), so the true per-user effect is known.
    rho = stats.spearmanr(cate, df["tau_conversion_a"]).statistic
    # Under no relation, Spearman's sd is 1/sqrt(n) ~ 0.009 here: 0.1 is > 10 sd away, and
    # well under what both learners reach (~0.2-0.25) with 13k users and effects of ~1 point.
    assert rho > 0.1
    by_device = pd.Series(cate).groupby(df["device"].to_numpy()).mean()
    assert by_device.idxmax() == "mobile"
    truth_by_device = df.groupby("device", observed=True)["tau_conversion_a"].mean()
    assert truth_by_device.idxmax() == "mobile"           # the generator's choice, checked
