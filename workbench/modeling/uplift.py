"""Uplift: who responds to the treatment, from an experiment's own data.

:class:`UpliftModel` is a T- or X-learner with xgboost base learners estimating each unit's
treatment effect (CATE); :func:`qini_curve` / :func:`uplift_curve` evaluate it, and
:func:`uplift_frame` builds per-user features, treatment and outcome from an experiment with the
metric compiler, so it works on every source (DuckDB, files, Spark, any Ibis backend) and uses
the experiment's own metric definitions.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor

from workbench.errors import DataError, ModelError, SourceError
from workbench.modeling.features import fixed_categories, is_categorical, prepare_features

# User attributes (table ``users``) and pre-period aggregates used as uplift features.
USER_FEATURES = ("country", "device", "channel", "tenure_days")
PRE_FEATURES = {
    # name: the per-user aggregate (a metric's fields) over the pre-period
    "pre_sessions": {"event_type": "session", "aggregation": "count"},
    "pre_orders": {"event_type": "order", "aggregation": "count"},
    "pre_revenue": {"event_type": "order", "aggregation": "sum", "column": "revenue"},
}
UPLIFT_FEATURES = [*USER_FEATURES, *PRE_FEATURES]


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
        return prepare_features(X, list(self.feature_names_in_), self.categories_)

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
        self.categories_ = fixed_categories(X, [c for c in X.columns if is_categorical(X[c])])
        Xp = prepare_features(X, list(X.columns), self.categories_)
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


def _pre_period_metrics(pre_days: int):
    from workbench.metrics import parse_metric

    return [parse_metric({"name": name, "kind": "mean", "cuped": True,
                          "pre_period_days": int(pre_days), **spec})
            for name, spec in PRE_FEATURES.items()]


def _experiment(source: Any, experiment_id: str | None):
    """``source`` itself when it is an experiment (``.compiler``, ``.users``, ``.window``), else
    the experiment ``experiment_id`` opened from the source."""
    if all(hasattr(source, a) for a in ("compiler", "users", "window")):
        if experiment_id is not None and experiment_id != source.window.experiment_id:
            raise ModelError(f"uplift_frame: experiment_id {experiment_id!r} differs from the "
                             f"experiment given ({source.window.experiment_id!r})")
        return source
    from workbench import Experiment  # lazily: the readout sits above the data layers

    kwargs = {} if experiment_id is None else {"experiment_id": experiment_id}
    return Experiment.from_source(source, **kwargs)


def uplift_frame(source: Any = None, experiment_id: str | None = None,
                 variant: str | None = None, control: str | None = None, pre_days: int = 14,
                 outcomes: Sequence[str] = ("conversion",)) -> pd.DataFrame:
    """Per-user features, treatment and outcomes for one variant against the control.

    Built on the experiment's :class:`~workbench.metrics.MetricCompiler`, so the units
    (crossovers left out, by default), the outcomes (the experiment's metric definitions, caps
    included) and the engine are the readout's: user attributes from ``users``
    (:data:`USER_FEATURES`), pre-period aggregates over the ``pre_days`` days before the start
    (:data:`PRE_FEATURES`), ``treatment`` (1 for ``variant``, 0 for ``control``) and one column
    per outcome metric. Units without a ``users`` row are left out.

    Parameters
    ----------
    source : Experiment, or a source for :func:`workbench.data.sources.connect`
        An experiment (anything with ``.compiler``, ``.users`` and ``.window``, e.g.
        :class:`workbench.Experiment`) or a source it is opened from (default: the settings'
        warehouse).
    experiment_id : str, optional
        With a source: the experiment to open (default: ``Experiment.from_source``'s).
    variant : str, optional
        The treatment variant; may be omitted when the experiment has only one.
    control : str, optional
        Default: the experiment's control.
    pre_days : int
        Length of the pre-period of the ``pre_*`` features.
    outcomes : sequence of str
        Metrics of the experiment (not ratios) whose unit values become columns.

    Returns
    -------
    DataFrame
        ``user_id``, :data:`UPLIFT_FEATURES`, ``treatment``, the outcomes; one row per user,
        sorted by ``user_id``. Proportions and counts are integers; ``country``, ``device`` and
        ``channel`` are categorical.

    Raises
    ------
    ModelError
        An unknown variant or outcome, or a variant equal to the control.
    SourceError
        The source or a table cannot be read.
    """
    import ibis

    from workbench.data.sources import execute

    exp = _experiment(source, experiment_id)
    window = exp.window
    control = control or window.control
    treatments = [v for v in window.variants if v != control]
    if variant is None:
        if len(treatments) != 1:
            raise ModelError(f"uplift_frame: give the variant (one of {treatments})")
        variant = treatments[0]
    for name in (variant, control):
        if name not in window.variants:
            raise ModelError(f"uplift_frame: variant {name!r} not in experiment "
                             f"{window.experiment_id!r} (variants: {list(window.variants)})")
    if variant == control:
        raise ModelError(f"uplift_frame: variant and control are both {variant!r}")
    known = {m.name: m for m in exp.compiler.metrics}
    outcomes = [outcomes] if isinstance(outcomes, str) else list(outcomes)
    for name in outcomes:
        if name not in known or known[name].kind == "ratio":
            choices = [m for m, d in known.items() if d.kind != "ratio"]
            raise ModelError(f"uplift_frame: outcome {name!r} is not a unit-level metric of the "
                             f"experiment (metrics: {choices})")
    if exp.users is None:
        raise SourceError("uplift_frame needs a 'users' table")
    missing = [c for c in ("user_id", *USER_FEATURES) if c not in exp.users.columns]
    if missing:
        raise SourceError(f"table 'users' lacks column(s) {missing}")

    pre = _pre_period_metrics(pre_days)
    metrics = [known[n] for n in outcomes] + pre
    t = exp.compiler.with_metrics(metrics).unit_values()
    t = t.filter(t.variant.isin([variant, control]))
    u = exp.users
    j = t.join(u, t.user_id == u.user_id)
    frame = execute(j.select(
        t.user_id, *[u[c] for c in USER_FEATURES],
        **{m.name: t[f"{m.name}__x"] for m in pre},
        treatment=(t.variant == ibis.literal(variant)).cast("int64"),
        **{n: t[f"{n}__y"] for n in outcomes}))
    frame = frame.sort_values("user_id", kind="stable")  # in pandas: a sort is a shuffle on Spark
    integral = [m.name for m in metrics
                if m.kind == "proportion" or m.numerator.aggregation in ("count", "any")]
    frame[integral] = frame[integral].astype("int64")
    for c in ("country", "device", "channel"):
        frame[c] = frame[c].astype("category")
    return frame.reset_index(drop=True)
