"""Model experiments (scikit-learn, xgboost) and uplift models for experiment data.

- :func:`compare_models` cross-validates a few models on a declared target and features and
  refits them on all the data: a :class:`ModelComparison` with scores, out-of-fold predictions
  and fitted models (logging to MLflow is :mod:`workbench.tracking`'s job; this module only gives
  it an input example for the model signature).
- :class:`UpliftModel` is a T- or X-learner with xgboost base learners estimating each unit's
  treatment effect (CATE); :func:`qini_curve` / :func:`uplift_curve` evaluate it, and
  :func:`uplift_frame` builds per-user features, treatment and outcome from an experiment source
  with one SQL query in DuckDB.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor

from workbench.errors import DataError, ModelError, SourceError

CLASSIFICATION_METRICS = ("roc_auc", "log_loss", "accuracy", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Metrics where a lower value is better (to pick the best model).
LOWER_IS_BETTER = {"log_loss", "brier", "rmse", "mae"}
MISSING_CATEGORY = "(missing)"


# --------------------------------------------------------------------------------------------
# model experiments


def _to_object(X):
    """Categorical columns as plain objects with a missing marker (one-hot branch).

    Module-level (not a lambda) so that fitted pipelines pickle, e.g. for MLflow.
    """
    X = pd.DataFrame(X).astype(object)
    return X.where(X.notna(), MISSING_CATEGORY)


def default_models(task: str, numeric: Sequence[str], categorical: Sequence[str],
                   seed: int = 0, n_jobs: int | None = 1) -> dict[str, BaseEstimator]:
    """The models :func:`compare_models` compares by default.

    A regularised linear model with one-hot encoding (logistic regression or ridge), scikit-learn's
    HistGradientBoosting with native categorical support, and xgboost (``tree_method="hist"``,
    ``enable_categorical=True`` on pandas ``category`` columns).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from xgboost import XGBClassifier, XGBRegressor

    parts = []
    if numeric:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                      list(numeric)))
    if categorical:
        parts.append(("categorical", make_pipeline(
            FunctionTransformer(_to_object, feature_names_out="one-to-one"),
            OneHotEncoder(handle_unknown="ignore")), list(categorical)))
    encode = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    xgb = dict(n_estimators=200, max_depth=4, learning_rate=0.1, subsample=1.0,
               tree_method="hist", enable_categorical=True, max_cat_to_onehot=1,
               random_state=seed, n_jobs=n_jobs)
    if task == "binary":
        return {
            "logistic_regression": Pipeline([("encode", encode),
                                             ("model", LogisticRegression(max_iter=2000))]),
            "hist_gradient_boosting": HistGradientBoostingClassifier(
                categorical_features="from_dtype", random_state=seed),
            "xgboost": XGBClassifier(eval_metric="logloss", **xgb),
        }
    return {
        "ridge": Pipeline([("encode", encode), ("model", Ridge(alpha=1.0))]),
        "hist_gradient_boosting": HistGradientBoostingRegressor(
            categorical_features="from_dtype", random_state=seed),
        "xgboost": XGBRegressor(**xgb),
    }


def _scores(task: str, y_true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    if task == "binary":
        p = np.clip(pred, 1e-15, 1 - 1e-15)
        return {"roc_auc": metrics.roc_auc_score(y_true, p),
                "log_loss": metrics.log_loss(y_true, p, labels=[0, 1]),
                "accuracy": metrics.accuracy_score(y_true, p >= 0.5),
                "brier": metrics.brier_score_loss(y_true, p)}
    return {"rmse": float(np.sqrt(metrics.mean_squared_error(y_true, pred))),
            "mae": metrics.mean_absolute_error(y_true, pred),
            "r2": metrics.r2_score(y_true, pred)}


@dataclass(frozen=True, eq=False)
class ModelComparison:
    """Cross-validated comparison of models on one dataset.

    Attributes
    ----------
    task : str
        ``"binary"`` or ``"regression"``.
    target : str
        Target column.
    features, categorical : list of str
        Features used, and those treated as categorical (pandas ``category`` dtype).
    classes : list
        Binary task: the two target values, the second being the positive class (empty for
        regression).
    cv : int
        Folds (stratified for classification, shuffled with ``seed``).
    seed : int
        Seed of the folds and of the models.
    scores : DataFrame
        One row per model: ``model``, ``<metric>_mean``, ``<metric>_sd`` (sd across folds),
        ``fit_seconds`` (mean per fold).
    fold_scores : DataFrame
        Long table ``model, fold, metric, value``.
    oof_predictions : DataFrame
        Out-of-fold prediction of each model for every row (probability of the positive class,
        or the predicted value); one column per model.
    oof_target : ndarray
        The target aligned with ``oof_predictions`` (0/1 for binary).
    models : dict
        Each model refitted on all rows.
    categories : dict
        Categories of each categorical feature, as fixed at training (see :meth:`prepare`).
    input_example : DataFrame
        A few rows of prepared features, for model signatures (MLflow).
    """

    task: str
    target: str
    features: list
    categorical: list
    classes: list
    cv: int
    seed: int
    scores: pd.DataFrame
    fold_scores: pd.DataFrame
    oof_predictions: pd.DataFrame
    oof_target: np.ndarray
    models: dict
    categories: dict
    input_example: pd.DataFrame = field(repr=False)

    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "binary" else REGRESSION_METRICS

    @property
    def primary_metric(self) -> str:
        """ROC AUC for classification, RMSE for regression."""
        return "roc_auc" if self.task == "binary" else "rmse"

    @property
    def best_(self) -> str:
        """Name of the best model by the primary metric's CV mean."""
        col = self.scores[f"{self.primary_metric}_mean"]
        idx = col.idxmin() if self.primary_metric in LOWER_IS_BETTER else col.idxmax()
        return str(self.scores.loc[idx, "model"])

    @property
    def best_model_(self):
        """The best model, refitted on all rows."""
        return self.models[self.best_]

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """The feature frame a fitted model expects: same columns, categories fixed at training.

        Unseen categories become missing values.
        """
        return _prepare_features(df, self.features, self.categories)

    def predict(self, df: pd.DataFrame, model: str | None = None) -> np.ndarray:
        """Predictions of ``model`` (default: the best) on new data: P(positive) or value."""
        est = self.models[model or self.best_]
        X = self.prepare(df)
        return est.predict_proba(X)[:, 1] if self.task == "binary" else est.predict(X)

    def signature_example(self, n: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
        """``(input_example, output_example)`` for ``mlflow.models.infer_signature``."""
        X = self.input_example.head(n)
        est = self.best_model_
        out = est.predict_proba(X)[:, 1] if self.task == "binary" else est.predict(X)
        return X, np.asarray(out)

    def to_frame(self) -> pd.DataFrame:
        """One row per model with CV means and sds of every metric."""
        return self.scores.copy()

    def headline(self) -> str:
        m = self.primary_metric
        row = self.scores.set_index("model").loc[self.best_]
        return (f"{self.task} target '{self.target}', {len(self.features)} features, "
                f"{len(self.oof_target):,} rows, {self.cv}-fold CV: best model {self.best_} "
                f"({m} {row[f'{m}_mean']:.4f} +/- {row[f'{m}_sd']:.4f})")

    def summary(self) -> str:
        with pd.option_context("display.width", 200, "display.precision", 4):
            return self.headline() + "\n" + self.scores.to_string(index=False)

    def _repr_html_(self) -> str:
        return (f"<p><b>{self.headline()}</b></p>"
                + self.scores.to_html(index=False, float_format=lambda v: f"{v:.4f}"))

    def __repr__(self) -> str:
        return f"ModelComparison({self.headline()})"

    def plot(self, kind: str = "scores", ax=None, metric: str | None = None):
        """``kind="scores"`` (CV score per model) or ``"roc"`` (out-of-fold ROC curves)."""
        from workbench.plots import model as plots

        if kind == "scores":
            return plots.plot_scores(self, metric=metric, ax=ax)
        if kind == "roc":
            return plots.plot_roc(self, ax=ax)
        raise ValueError(f"plot: kind must be 'scores' or 'roc', got {kind!r}")


def _prepare_features(df: pd.DataFrame, features: Sequence[str],
                      categories: Mapping[str, Sequence]) -> pd.DataFrame:
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ModelError(f"feature columns {missing} not found in the data")
    X = df[list(features)].copy()
    for col, cats in categories.items():
        values = X[col].astype(object)
        values = values.where(values.isna(), values.astype(str))
        X[col] = pd.Categorical(values, categories=list(cats))
    return X


def _check_inputs(df, target, features, categorical, task, cv):
    if not isinstance(df, pd.DataFrame):
        raise ModelError(f"data must be a pandas DataFrame, got {type(df).__name__}")
    if target not in df.columns:
        raise ModelError(f"target column {target!r} not found; columns: {list(df.columns)}")
    features = [c for c in df.columns if c != target] if features is None else list(features)
    if not features:
        raise ModelError("no feature columns")
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ModelError(f"feature columns {missing} not found in the data")
    if target in features:
        raise ModelError(f"target column {target!r} is also listed as a feature")
    if len(set(features)) != len(features):
        raise ModelError("feature columns are listed twice")
    y = df[target]
    n_nan = int(y.isna().sum())
    if n_nan:
        first = y.index[y.isna()][0]
        raise ModelError(f"target column {target!r} has {n_nan} missing values (first at row "
                         f"{first!r}); drop or impute them first")
    n_unique = y.nunique()
    if n_unique < 2:
        raise ModelError(f"target column {target!r} is constant ({y.iloc[0]!r}): nothing to model")
    if task == "auto":
        task = "binary" if n_unique == 2 else "regression"
    if task not in ("binary", "regression"):
        raise ModelError(f"task must be 'auto', 'binary' or 'regression', got {task!r}")
    if task == "binary" and n_unique != 2:
        raise ModelError(f"task 'binary' needs exactly 2 target values, {target!r} has {n_unique}"
                         " (multiclass targets are not supported)")
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise ModelError(f"regression target {target!r} must be numeric, got {y.dtype}")
    if task == "regression" and not np.isfinite(y.to_numpy(dtype=float)).all():
        raise ModelError(f"target column {target!r} has infinite values")
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ModelError(f"cv must be an integer >= 2, got {cv!r}")
    if task == "binary":
        smallest = int(y.value_counts().min())
        if smallest < cv:
            raise ModelError(f"target {target!r}: the rarer class has {smallest} rows, fewer than "
                             f"cv={cv} folds")
    elif len(y) < 2 * cv:
        raise ModelError(f"{len(y)} rows are too few for cv={cv}")
    if categorical is None:
        categorical = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])
                       or pd.api.types.is_bool_dtype(df[c])
                       or isinstance(df[c].dtype, pd.CategoricalDtype)]
    else:
        categorical = list(categorical)
        bad = [c for c in categorical if c not in features]
        if bad:
            raise ModelError(f"categorical columns {bad} are not among the features")
    for c in features:
        if c not in categorical and not pd.api.types.is_numeric_dtype(df[c]):
            raise ModelError(f"feature {c!r} has dtype {df[c].dtype}: declare it categorical")
        if df[c].isna().all():
            raise ModelError(f"feature {c!r} has no values (all missing)")
    return features, categorical, task


def compare_models(df: pd.DataFrame, target: str, features: Sequence[str] | None = None,
                   categorical: Sequence[str] | None = None,
                   models: Mapping[str, BaseEstimator] | Sequence[str] | None = None,
                   cv: int = 5, seed: int = 0, task: str = "auto",
                   progress: bool = True, n_jobs: int | None = 1) -> ModelComparison:
    """Cross-validate models on ``df`` and refit them on all rows.

    Parameters
    ----------
    df : DataFrame
        One row per unit.
    target : str
        Target column: two values (binary classification) or numeric (regression).
    features : sequence of str, optional
        Feature columns (default: every other column).
    categorical : sequence of str, optional
        Categorical features (default: non-numeric, bool and ``category`` columns). They are
        given pandas ``category`` dtype with categories fixed on all of ``df``, so xgboost and
        HistGradientBoosting use them natively and the linear model one-hot encodes them.
    models : dict or list of str, optional
        ``{name: unfitted estimator}`` taking the prepared frame, or names among
        :func:`default_models` (default: all of them).
    cv : int
        Folds: stratified for classification, shuffled with ``seed``.
    seed : int
        Seed of the folds and models: two runs with the same seed give the same scores.
    task : {"auto", "binary", "regression"}
    progress : bool
        Show a progress bar over folds.
    n_jobs : int or None
        Threads for the native code of the models (OpenMP/BLAS, via threadpoolctl; None: no
        limit). 1 by default: on a shared machine the models' many short OpenMP regions stall
        when cores are busy, and small data gains little from threads.

    Returns
    -------
    ModelComparison

    Raises
    ------
    ModelError
        Missing target or feature column, missing or constant target, multiclass target,
        non-numeric feature not declared categorical, too few rows for ``cv``, unknown model.
    """
    from sklearn.model_selection import KFold, StratifiedKFold
    from tqdm.auto import tqdm

    features, categorical, task = _check_inputs(df, target, features, categorical, task, cv)
    categories = {}
    for c in categorical:
        values = df[c].dropna()
        cats = (list(df[c].cat.categories) if isinstance(df[c].dtype, pd.CategoricalDtype)
                else sorted(values.unique(), key=str))
        categories[c] = [str(v) for v in cats]
    X = _prepare_features(df, features, categories)
    y_raw = df[target]
    classes: list = []
    if task == "binary":
        classes = sorted(y_raw.unique().tolist(), key=lambda v: (str(type(v)), v))
        y = (y_raw == classes[1]).to_numpy(dtype=int)
    else:
        y = y_raw.to_numpy(dtype=float)
    numeric = [c for c in features if c not in categorical]
    defaults = default_models(task, numeric, categorical, seed, n_jobs=n_jobs)
    if models is None:
        chosen = defaults
    elif isinstance(models, Mapping):
        chosen = dict(models)
    else:
        unknown = [m for m in models if m not in defaults]
        if unknown:
            raise ModelError(f"unknown models {unknown}; defaults are {list(defaults)}")
        chosen = {m: defaults[m] for m in models}
    if not chosen:
        raise ModelError("no models to compare")
    for name, est in chosen.items():
        if not hasattr(est, "fit"):
            raise ModelError(f"model {name!r} is not an estimator (no fit method)")
        if task == "binary" and not hasattr(est, "predict_proba"):
            raise ModelError(f"model {name!r} has no predict_proba, needed for classification")

    splitter = (StratifiedKFold(cv, shuffle=True, random_state=seed) if task == "binary"
                else KFold(cv, shuffle=True, random_state=seed))
    folds = list(splitter.split(X, y))
    oof = pd.DataFrame(index=df.index, columns=list(chosen), dtype=float)
    rows, fit_times = [], {name: [] for name in chosen}
    bar = tqdm(total=len(chosen) * (cv + 1), desc="compare_models", disable=not progress)
    fitted = {}
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(n_jobs) if n_jobs is not None else None
    try:
        _cross_validate(chosen, folds, X, y, task, oof, rows, fit_times, fitted, bar)
    finally:
        if limits is not None:
            limits.restore_original_limits()
    bar.close()
    return _comparison(df, target, features, categorical, task, classes, cv, seed, chosen, rows,
                       fit_times, oof, y, fitted, categories, X)


def _cross_validate(chosen, folds, X, y, task, oof, rows, fit_times, fitted, bar):
    for name, est in chosen.items():
        for k, (train, test) in enumerate(folds):
            model = clone(est)
            t0 = time.perf_counter()
            model.fit(X.iloc[train], y[train])
            fit_times[name].append(time.perf_counter() - t0)
            pred = (model.predict_proba(X.iloc[test])[:, 1] if task == "binary"
                    else model.predict(X.iloc[test]))
            oof.iloc[test, oof.columns.get_loc(name)] = pred
            for metric, value in _scores(task, y[test], pred).items():
                rows.append({"model": name, "fold": k, "metric": metric, "value": float(value)})
            bar.update()
        fitted[name] = clone(est).fit(X, y)
        bar.update()


def _comparison(df, target, features, categorical, task, classes, cv, seed, chosen, rows,
                fit_times, oof, y, fitted, categories, X) -> ModelComparison:
    fold_scores = pd.DataFrame(rows)
    agg = fold_scores.groupby(["model", "metric"], sort=False)["value"].agg(["mean", "std"])
    table = []
    for name in chosen:
        row: dict[str, Any] = {"model": name}
        for metric in (CLASSIFICATION_METRICS if task == "binary" else REGRESSION_METRICS):
            row[f"{metric}_mean"] = agg.loc[(name, metric), "mean"]
            row[f"{metric}_sd"] = agg.loc[(name, metric), "std"]
        row["fit_seconds"] = float(np.mean(fit_times[name]))
        table.append(row)
    return ModelComparison(
        task=task, target=target, features=list(features), categorical=list(categorical),
        classes=classes, cv=int(cv), seed=int(seed), scores=pd.DataFrame(table),
        fold_scores=fold_scores, oof_predictions=oof, oof_target=y, models=fitted,
        categories=categories, input_example=X.head(5).copy())


# --------------------------------------------------------------------------------------------
# uplift


def _default_xgb(kind: str, random_state: int):
    from xgboost import XGBClassifier, XGBRegressor

    # Shallow, slow-learning trees: effects are small next to the outcome's noise.
    params = dict(n_estimators=150, max_depth=3, learning_rate=0.05, min_child_weight=20,
                  subsample=0.8, colsample_bytree=0.8, reg_lambda=5.0, tree_method="hist",
                  enable_categorical=True, max_cat_to_onehot=1, random_state=random_state,
                  n_jobs=1)
    if kind == "classifier":
        return XGBClassifier(eval_metric="logloss", **params)
    return XGBRegressor(**params)


class UpliftModel(BaseEstimator):
    """Meta-learner of the conditional average treatment effect (CATE).

    Parameters
    ----------
    learner : {"t", "x"}
        ``"t"``: one outcome model per arm, effect = mu1(x) - mu0(x). ``"x"`` (Kuenzel et al.
        2019): imputed effects ``y1 - mu0(x)`` on treated and ``mu1(x) - y0`` on control units are
        regressed on x and blended with the share of treated units (the propensity of a
        randomised experiment).
    base_estimator : estimator, optional
        Outcome model (cloned per arm). Default: xgboost (classifier for a 0/1 outcome, else
        regressor), hist trees, native categorical support. The X-learner's effect models are
        clones of it when it is a regressor, else the default xgboost regressor.
    random_state : int
        Seed of the default learners.

    Attributes
    ----------
    outcome_models_ : dict
        ``{"control": mu0, "treatment": mu1}`` fitted outcome models.
    effect_models_ : dict
        X-learner only: ``{"control": tau0, "treatment": tau1}``.
    propensity_ : float
        Share of treated units in the training data.
    binary_outcome_ : bool
        Whether the outcome is 0/1 (then the CATE is a difference of probabilities).
    feature_names_in_ : ndarray
    n_features_in_ : int
    categories_ : dict
        Categories of the non-numeric features (as at fit; unseen ones become missing).
    """

    def __init__(self, learner: str = "t", base_estimator=None, random_state: int = 0):
        self.learner = learner
        self.base_estimator = base_estimator
        self.random_state = random_state

    # -- helpers
    def _prepare(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), columns=getattr(self, "feature_names_in_", None))
        return X

    def _outcome_estimator(self):
        if self.base_estimator is not None:
            return clone(self.base_estimator)
        return _default_xgb("classifier" if self.binary_outcome_ else "regressor",
                            self.random_state)

    def _effect_estimator(self):
        if self.base_estimator is not None and is_regressor(self.base_estimator):
            return clone(self.base_estimator)
        return _default_xgb("regressor", self.random_state)

    def _mu(self, model, X) -> np.ndarray:
        if self.binary_outcome_ and is_classifier(model):
            return model.predict_proba(X)[:, 1]
        return np.asarray(model.predict(X), dtype=float)

    def transform_features(self, X) -> pd.DataFrame:
        """Features as the fitted learners see them (categories fixed at fit)."""
        X = self._prepare(X)
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ModelError(f"UpliftModel: feature columns {missing} not found")
        return _prepare_features(X, list(self.feature_names_in_), self.categories_)

    # -- estimator API
    def fit(self, X, treatment, y):
        """Fit on features ``X``, a 0/1 (or bool) ``treatment`` and outcome ``y``."""
        if self.learner not in ("t", "x"):
            raise ModelError(f"UpliftModel: learner must be 't' or 'x', got {self.learner!r}")
        X = self._prepare(X)
        t = np.asarray(treatment)
        yv = np.asarray(y, dtype=float)
        if t.shape[0] != len(X) or yv.shape[0] != len(X):
            raise ModelError(f"UpliftModel: X has {len(X)} rows, treatment {t.shape[0]}, "
                             f"y {yv.shape[0]}")
        if pd.isna(t).any() or not np.isin(t.astype(float), [0, 1]).all():
            raise ModelError("UpliftModel: treatment must be 0/1 (or bool) without missing values")
        t = t.astype(int)
        if not np.isfinite(yv).all():
            raise ModelError("UpliftModel: the outcome y has missing or infinite values")
        for arm, label in ((1, "treated"), (0, "control")):
            if (t == arm).sum() < 10:
                raise ModelError(f"UpliftModel: fewer than 10 {label} units")
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.categories_ = {
            c: [str(v) for v in (list(X[c].cat.categories) if isinstance(X[c].dtype, pd.CategoricalDtype)
                                 else sorted(X[c].dropna().unique(), key=str))]
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])
            or isinstance(X[c].dtype, pd.CategoricalDtype)}
        Xp = _prepare_features(X, list(X.columns), self.categories_)
        self.binary_outcome_ = bool(np.isin(yv, [0, 1]).all())
        self.propensity_ = float(t.mean())
        treated, control = t == 1, t == 0
        self.outcome_models_ = {
            "control": self._outcome_estimator().fit(Xp[control], yv[control]),
            "treatment": self._outcome_estimator().fit(Xp[treated], yv[treated]),
        }
        if self.learner == "x":
            d1 = yv[treated] - self._mu(self.outcome_models_["control"], Xp[treated])
            d0 = self._mu(self.outcome_models_["treatment"], Xp[control]) - yv[control]
            self.effect_models_ = {
                "treatment": self._effect_estimator().fit(Xp[treated], d1),
                "control": self._effect_estimator().fit(Xp[control], d0),
            }
        return self

    def predict(self, X) -> np.ndarray:
        """Estimated effect of treatment for each row (difference of probabilities for 0/1 y)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "outcome_models_")
        Xp = self.transform_features(X)
        if self.learner == "x":
            g = self.propensity_
            return (g * self.effect_models_["control"].predict(Xp)
                    + (1 - g) * self.effect_models_["treatment"].predict(Xp))
        return (self._mu(self.outcome_models_["treatment"], Xp)
                - self._mu(self.outcome_models_["control"], Xp))


@dataclass(frozen=True, eq=False)
class UpliftCurve:
    """A Qini or uplift curve, evaluated after each group of tied predicted uplifts.

    Attributes
    ----------
    kind : str
        ``"qini"`` or ``"uplift"``.
    fraction : ndarray
        Share of the population targeted, from 0 to 1 (units sorted by predicted uplift,
        descending).
    gain : ndarray
        Incremental outcomes per unit of population at each fraction. Qini:
        ``(Y_t(k) - Y_c(k) * N_t(k) / N_c(k)) / N``; uplift: ``(Y_t(k)/N_t(k) - Y_c(k)/N_c(k))
        * k / N`` (0 while an arm is empty).
    random : ndarray
        Random targeting: the straight line from 0 to ``gain[-1]``.
    coefficient : float
        Area between ``gain`` and ``random`` over ``fraction`` (trapezoids): 0 for random
        ordering, positive when high predicted uplift finds high actual uplift.
    """

    kind: str
    fraction: np.ndarray
    gain: np.ndarray
    random: np.ndarray
    coefficient: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"fraction": self.fraction, "gain": self.gain, "random": self.random})

    def plot(self, ax=None, label: str | None = None):
        from workbench.plots.model import plot_uplift_curve

        return plot_uplift_curve(self, ax=ax, label=label)


def _curve(kind: str, y, treatment, uplift) -> UpliftCurve:
    y = np.asarray(y, dtype=float)
    t = np.asarray(treatment).astype(int)
    u = np.asarray(uplift, dtype=float)
    if not (y.shape == t.shape == u.shape) or y.ndim != 1:
        raise DataError(f"{kind}_curve: y, treatment and uplift must be 1-d of the same length "
                        f"(got {y.shape}, {t.shape}, {u.shape})")
    if not (np.isfinite(y).all() and np.isfinite(u).all()):
        raise DataError(f"{kind}_curve: y and uplift must be finite")
    if not np.isin(t, [0, 1]).all() or t.min() == t.max():
        raise DataError(f"{kind}_curve: treatment must be 0/1 with both arms present")
    order = np.argsort(-u, kind="stable")
    y, t, u = y[order], t[order], u[order]
    n_t, n_c = np.cumsum(t), np.cumsum(1 - t)
    y_t, y_c = np.cumsum(y * t), np.cumsum(y * (1 - t))
    # Evaluate only at the end of each group of tied scores, so ties have no arbitrary order.
    ends = np.r_[np.flatnonzero(np.diff(u) != 0), u.size - 1]
    n_t, n_c, y_t, y_c = n_t[ends], n_c[ends], y_t[ends], y_c[ends]
    k = ends + 1.0
    n = float(u.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "qini":
            gain = np.where(n_c > 0, y_t - y_c * n_t / n_c, y_t)
        else:
            gain = np.where((n_t > 0) & (n_c > 0), (y_t / n_t - y_c / n_c) * k, 0.0)
    fraction = np.r_[0.0, k / n]
    gain = np.r_[0.0, gain / n]
    random = fraction * gain[-1]
    area = np.trapezoid(gain - random, fraction)
    return UpliftCurve(kind=kind, fraction=fraction, gain=gain, random=random,
                       coefficient=float(area))


def qini_curve(y, treatment, uplift) -> UpliftCurve:
    """Qini curve (Radcliffe 2007) and Qini coefficient of predicted ``uplift``.

    Parameters
    ----------
    y : array-like
        Observed outcome.
    treatment : array-like of 0/1
    uplift : array-like
        Predicted effect per unit (higher = target first).
    """
    return _curve("qini", y, treatment, uplift)


def uplift_curve(y, treatment, uplift) -> UpliftCurve:
    """Uplift curve (difference of arm means in the top k, times k) and its area over random."""
    return _curve("uplift", y, treatment, uplift)


UPLIFT_FEATURES = ["country", "device", "channel", "tenure_days", "pre_sessions", "pre_orders",
                   "pre_revenue"]


def uplift_frame(source_path: str | Path, experiment_id: str, variant: str,
                 control: str = "control", pre_days: int = 14) -> pd.DataFrame:
    """Per-user features, treatment and conversion for one variant against control.

    One SQL query in DuckDB over the experiment tables: user attributes (``users``), pre-period
    aggregates over the ``pre_days`` days before the experiment start (``pre_sessions``,
    ``pre_orders``, ``pre_revenue``), ``treatment`` (1 for ``variant``, 0 for ``control``) and
    ``conversion`` (any order in ``[assigned_at, end_date + 1 day)``, the readout's definition).
    Users assigned to more than one variant of the experiment are left out.

    Returns
    -------
    DataFrame
        ``user_id``, :data:`UPLIFT_FEATURES`, ``treatment``, ``conversion``; one row per user.
    """
    import duckdb

    path = Path(source_path)
    if not path.exists():
        raise SourceError(f"uplift_frame: DuckDB file {str(path)!r} not found")
    if variant == control:
        raise ModelError(f"uplift_frame: variant and control are both {variant!r}")
    query = """
    WITH exp AS (
        SELECT MIN(start_date)::TIMESTAMP AS start_ts,
               (MAX(end_date) + INTERVAL 1 DAY)::TIMESTAMP AS end_ts,
               (MIN(start_date) - to_days(CAST($pre_days AS INTEGER)))::TIMESTAMP AS pre_ts
        FROM experiments WHERE experiment_id = $exp
    ), assigned AS (
        SELECT user_id, ANY_VALUE(variant) AS variant, MIN(assigned_at) AS assigned_at
        FROM assignments WHERE experiment_id = $exp
        GROUP BY user_id HAVING COUNT(DISTINCT variant) = 1
    ), arm AS (
        SELECT * FROM assigned WHERE variant IN ($variant, $control)
    ), agg AS (
        SELECT arm.user_id,
            COUNT(*) FILTER (WHERE e.event_type = 'session' AND e.event_time >= exp.pre_ts
                             AND e.event_time < exp.start_ts) AS pre_sessions,
            COUNT(*) FILTER (WHERE e.event_type = 'order' AND e.event_time >= exp.pre_ts
                             AND e.event_time < exp.start_ts) AS pre_orders,
            COALESCE(SUM(e.revenue) FILTER (WHERE e.event_type = 'order'
                     AND e.event_time >= exp.pre_ts AND e.event_time < exp.start_ts), 0)
                AS pre_revenue,
            COUNT(*) FILTER (WHERE e.event_type = 'order' AND e.event_time >= arm.assigned_at
                             AND e.event_time < exp.end_ts) AS post_orders
        FROM arm CROSS JOIN exp
        LEFT JOIN events e ON e.user_id = arm.user_id
            AND e.event_time >= exp.pre_ts AND e.event_time < exp.end_ts
        GROUP BY arm.user_id
    )
    SELECT arm.user_id, u.country, u.device, u.channel, u.tenure_days,
           agg.pre_sessions, agg.pre_orders, agg.pre_revenue::DOUBLE AS pre_revenue,
           CASE WHEN arm.variant = $variant THEN 1 ELSE 0 END AS treatment,
           CASE WHEN agg.post_orders > 0 THEN 1 ELSE 0 END AS conversion
    FROM arm JOIN agg USING (user_id) JOIN users u USING (user_id)
    ORDER BY arm.user_id
    """
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise SourceError(f"uplift_frame: cannot open {str(path)!r}: {exc}") from exc
    try:
        arms = con.execute(
            "SELECT DISTINCT variant FROM assignments WHERE experiment_id = $exp",
            {"exp": experiment_id}).fetchall()
        arms = {r[0] for r in arms}
        if not arms:
            raise ModelError(f"uplift_frame: experiment {experiment_id!r} has no assignments")
        for name in (variant, control):
            if name not in arms:
                raise ModelError(f"uplift_frame: variant {name!r} not in experiment "
                                 f"{experiment_id!r} (variants: {sorted(arms)})")
        df = con.execute(query, {"exp": experiment_id, "variant": variant, "control": control,
                                 "pre_days": int(pre_days)}).df()
    except duckdb.Error as exc:
        raise SourceError(f"uplift_frame: query failed on {str(path)!r}: {exc}") from exc
    finally:
        con.close()
    for c in ("country", "device", "channel"):
        df[c] = df[c].astype("category")
    return df
