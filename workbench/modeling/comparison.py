"""Model experiments: cross-validated comparison of scikit-learn and xgboost models.

:func:`compare_models` cross-validates a few models on a declared target and features and refits
them on all the data: a :class:`ModelComparison` with scores, out-of-fold predictions and fitted
models (logging to MLflow is :mod:`workbench.tracking`'s job; this module only gives it an input
example for the model signature).
"""
from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from workbench import format as fmt
from workbench.errors import ModelError
from workbench.modeling.features import (
    fixed_categories,
    is_categorical,
    prepare_features,
    to_object,
)
from workbench.summary import Summary

CLASSIFICATION_METRICS = ("roc_auc", "log_loss", "accuracy", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
# Metrics where a lower value is better (to pick the best model).
LOWER_IS_BETTER = {"log_loss", "brier", "rmse", "mae"}


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
            FunctionTransformer(to_object, feature_names_out="one-to-one"),
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
        return prepare_features(df, self.features, self.categories)

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

    def summary(self) -> Summary:
        """The headline and the scores table, as text and HTML."""
        with pd.option_context("display.width", 200, "display.precision", 4):
            text = self.headline() + "\n" + self.scores.to_string(index=False)
        html_text = (f"<p><b>{html.escape(self.headline())}</b></p>"
                     + fmt.table_html(self.scores, title=f"Cross-validated scores "
                                      f"({self.cv} folds: mean and sd across folds; "
                                      "fit_seconds: mean per fold)"))
        return Summary(text, html_text)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

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
        categorical = [c for c in features if is_categorical(df[c])]
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
    categories = fixed_categories(df, categorical)
    X = prepare_features(df, features, categories)
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
