"""SHAP explanations: the fastest exact path for each kind of model.

- xgboost: the booster's own contributions (``Booster.predict(..., pred_contribs=True)``),
  exact TreeSHAP, in margin space (log-odds for classifiers).
- scikit-learn trees: ``shap.TreeExplainer`` (margin space).
- scikit-learn ``Pipeline(encoder, linear model)`` (the one-hot models of
  :func:`workbench.modeling.compare_models`): ``shap.LinearExplainer`` on the encoded columns,
  then the SHAP values of the one-hot columns of a feature are summed into that feature (SHAP
  values are additive, so the sum is the feature's attribution), in margin space.
- anything else: ``shap.PermutationExplainer`` on ``predict_proba[:, 1]`` / ``predict`` with a
  background sample (``shap.sample``), in the model's output space.

:func:`explain_uplift` says which features drive an :class:`~workbench.modeling.UpliftModel`'s
treatment effect.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench.errors import ModelError
from workbench.summary import Summary

AGNOSTIC_MAX_ROWS = 300  # rows explained by the permutation path when max_samples is set


@dataclass(frozen=True, eq=False)
class Explanation:
    """SHAP values of a model on some rows, computed once.

    Attributes
    ----------
    values : ndarray, shape (n_rows, n_features)
        SHAP value of each feature for each row; ``values.sum(1) + base_values`` is the model's
        output in ``output_space``.
    base_values : ndarray, shape (n_rows,)
        Expected output over the background (the same for every row for tree models).
    feature_names : list of str
    data : DataFrame
        The explained rows (original features), for colouring and dependence plots.
    output_space : str
        What the values add up to, e.g. ``"log-odds"``, ``"probability"``, ``"prediction"``.
    method : str
        How they were computed (``"xgboost pred_contribs"``, ``"shap.TreeExplainer"``, ...).
    title : str
        Default plot title.
    """

    values: np.ndarray
    base_values: np.ndarray
    feature_names: list
    data: pd.DataFrame
    output_space: str
    method: str
    title: str = ""

    def importance(self) -> pd.DataFrame:
        """Features by mean |SHAP value| (global importance), with the mean signed value."""
        frame = pd.DataFrame({"feature": self.feature_names,
                              "mean_abs_shap": np.abs(self.values).mean(axis=0),
                              "mean_shap": self.values.mean(axis=0)})
        frame = frame.sort_values("mean_abs_shap", ascending=False, kind="stable")
        total = frame["mean_abs_shap"].sum()
        frame["share"] = frame["mean_abs_shap"] / total if total > 0 else np.nan
        return frame.reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """The importance table (logged as ``shap_importance`` by the templates)."""
        return self.importance()

    def values_frame(self) -> pd.DataFrame:
        """SHAP values as a DataFrame indexed like ``data``."""
        return pd.DataFrame(self.values, columns=self.feature_names, index=self.data.index)

    def headline(self) -> str:
        top = ", ".join(self.importance()["feature"].head(3))
        return (f"SHAP ({self.method}, {self.output_space}) on {len(self.data):,} rows; "
                f"top features: {top}")

    def summary(self) -> Summary:
        """The headline and the importance table, as text and HTML."""
        with pd.option_context("display.width", 200, "display.precision", 4):
            text = self.headline() + "\n" + self.importance().to_string(index=False)
        html_text = (f"<p><b>{html.escape(self.headline())}</b></p>"
                     + fmt.table_html(self.importance(), title=(
                         f"{self.title or 'Feature importance'}: mean |SHAP value| per feature "
                         f"({self.output_space}), mean signed value, share of the total"),
                         formats={"share": fmt.percent}))
        return Summary(text, html_text)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return f"Explanation({self.headline()})"

    def plot(self, kind: str = "bar", feature: str | None = None, ax=None,
             max_features: int = 15):
        """``kind``: ``"bar"`` (global importance), ``"beeswarm"`` or ``"dependence"``
        (``feature``, default the most important)."""
        from workbench.plots import model as plots

        if kind == "bar":
            return plots.plot_importance(self, max_features=max_features, ax=ax)
        if kind == "beeswarm":
            return plots.plot_beeswarm(self, max_features=max_features, ax=ax)
        if kind == "dependence":
            return plots.plot_dependence(self, feature or self.importance()["feature"].iloc[0],
                                         ax=ax)
        raise ValueError(f"plot: kind must be 'bar', 'beeswarm' or 'dependence', got {kind!r}")


# -------------------------------------------------------------------------- which model


MODEL_EXPERIMENT = "model_experiment"  # the template whose winner is explained by default


@dataclass(frozen=True)
class ModelChoice:
    """Which model an explanation explains, and why (shown in the report).

    Attributes
    ----------
    model : str or None
        A model name of :func:`workbench.modeling.default_models`; None: the best of a
        comparison made now (no comparison run was found).
    reason : str
        The sentence the report shows.
    best : str or None
        The winner of the comparison run, when one was found.
    run_dir : Path or None
        That ``model_experiment`` run.
    """

    model: str | None
    reason: str
    best: str | None = None
    run_dir: Any = None

    def __repr__(self) -> str:
        return self.reason

    def _repr_html_(self) -> str:
        return f"<p><b>Model explained.</b> {html.escape(self.reason)}</p>"


def _comparison_run(task, source, table, target, reports_dir) -> tuple[dict, Any] | None:
    """The newest finished ``model_experiment`` run of the same task and data, or None."""
    from workbench.tracking import store

    # source None is the default warehouse (compared); table or target None: any
    wanted = {"task": task, "source": source, "table": table, "target": target}
    wanted = {k: v for k, v in wanted.items() if v is not None or k == "source"}
    for run_dir in reversed(store.find_runs(reports_dir)):  # newest first (folder names)
        record = store.read_run(run_dir)
        params = record.get("parameters") or {}
        if record.get("template") != MODEL_EXPERIMENT or record.get("status") != store.FINISHED:
            continue
        if not (record.get("summary") or {}).get("best_model"):
            continue
        if all(params.get(k) == v for k, v in wanted.items() if k in params):
            return record, run_dir
    return None


def choose_model(task: str, model: str | None = None, *, source: str | None = None,
                 table: str | None = None, target: str | None = None,
                 reports_dir: str | os.PathLike | None = None) -> ModelChoice:
    """The model to explain: the winner of the newest ``model_experiment`` run of the same
    task and data unless ``model`` names another, with the reason in words.

    Parameters
    ----------
    task : str
        The ``task`` parameter shared by the templates (names the MLflow experiment).
    model : str, optional
        A model name to explain anyway (the reason then names the comparison's winner too).
    source, table, target : optional
        The data of the comparison; a run on other data is not used (``source`` None is the
        default warehouse; ``table`` or ``target`` None match any).
    reports_dir : optional
        Where runs are (default: the settings).
    """
    found = _comparison_run(task, source, table, target, reports_dir)
    if found is None:
        if model:
            return ModelChoice(model, f"{model}, as the `model` parameter asks (no "
                                      f"{MODEL_EXPERIMENT} run of task {task!r} on this data "
                                      "was found to compare it with).")
        return ModelChoice(None, f"No {MODEL_EXPERIMENT} run of task {task!r} on this data was "
                                 "found: the default models are compared here (2-fold "
                                 "cross-validation) and the best is explained.")
    record, run_dir = found
    best = str(record["summary"]["best_model"])
    metrics = record.get("metrics") or {}
    score = next((f"{m.replace('_', ' ')} {fmt.number(metrics[f'{best}.{m}'])}"
                  for m in ("roc_auc", "rmse") if fmt.finite(metrics.get(f"{best}.{m}"))), "")
    when = str(record.get("started_at") or "")[:16].replace("T", " ")
    run = f"{MODEL_EXPERIMENT} run {str(record.get('run_id') or '')[:8]}" + (
        f" of {when} UTC" if when else "")
    crowned = f"the best model{f' ({score})' if score else ''} of the model comparison ({run})"
    if model and model != best:
        return ModelChoice(model, f"{model}, as the `model` parameter asks; note that "
                                  f"{best} is {crowned}.", best, run_dir)
    return ModelChoice(best, f"{best}: {crowned}, refitted here on the same rows with the same "
                             "seed.", best, run_dir)


# --------------------------------------------------------------------------------------------


def _is_xgboost(model) -> bool:
    return type(model).__module__.startswith("xgboost")


def _xgb_space(booster) -> str:
    import json

    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective.startswith("binary:logistic") or objective.startswith("multi:"):
        return "log-odds"
    if objective in ("reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror"):
        return "prediction"
    return f"margin ({objective})"


def xgboost_contributions(model, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str]:
    """Exact TreeSHAP from xgboost itself: ``(values, base_values, output_space)``."""
    import xgboost as xgb

    booster = model if isinstance(model, xgb.Booster) else model.get_booster()
    dm = xgb.DMatrix(X, enable_categorical=True)
    contribs = booster.predict(dm, pred_contribs=True)
    if contribs.ndim == 3:
        raise ModelError("explain: multiclass xgboost models are not supported")
    return contribs[:, :-1], contribs[:, -1], _xgb_space(booster)


def _sample(X: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or len(X) <= n:
        return X
    return X.sample(n, random_state=seed).sort_index()


def _encoded_names_to_features(names, features) -> list[str]:
    """Map each encoded column name (e.g. ``device_mobile``) to its original feature."""
    out = []
    ordered = sorted(features, key=len, reverse=True)
    for name in names:
        if name in features:
            out.append(name)
            continue
        match = next((f for f in ordered if name.startswith(f"{f}_")), None)
        if match is None:
            raise ModelError(f"explain: cannot map encoded column {name!r} to a feature")
        out.append(match)
    return out


def _pipeline_linear(model, X, background, seed, background_size):
    import shap

    encoder, final = model[:-1], model[-1]
    Z = encoder.transform(X)
    Zb = encoder.transform(_sample(background, background_size, seed))
    Z, Zb = [np.asarray(z.toarray() if hasattr(z, "toarray") else z, dtype=float) for z in (Z, Zb)]
    explainer = shap.LinearExplainer(final, shap.maskers.Independent(Zb, max_samples=len(Zb)))
    sv = explainer(Z)
    vals = np.asarray(sv.values, dtype=float)
    if vals.ndim == 3:
        vals = vals[:, :, -1]
    owners = _encoded_names_to_features(list(encoder.get_feature_names_out()), list(X.columns))
    agg = np.zeros((len(X), X.shape[1]))
    for j, owner in enumerate(owners):
        agg[:, list(X.columns).index(owner)] += vals[:, j]
    base = np.broadcast_to(np.asarray(sv.base_values, dtype=float).reshape(-1)[:1]
                           if np.ndim(sv.base_values) else sv.base_values, (len(X),)).copy()
    space = "log-odds" if hasattr(final, "predict_proba") else "prediction"
    return agg, base, space


def _agnostic(func, X, background, seed, background_size, space):
    """PermutationExplainer on a function of the original frame (categories as integer codes)."""
    import shap

    cat_cols = {c: X[c].dtype for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)}

    def encode(df):
        df = df.copy()
        for c in cat_cols:
            df[c] = df[c].cat.codes.replace(-1, np.nan).astype(float)
        return df.astype(float).to_numpy()

    def decode(Z):
        df = pd.DataFrame(np.asarray(Z, dtype=float), columns=X.columns)
        for c, dtype in cat_cols.items():
            codes = np.nan_to_num(df[c].to_numpy(), nan=-1).astype(int)
            df[c] = pd.Categorical.from_codes(codes, dtype=dtype)
        return df

    bg = shap.sample(encode(background), min(background_size, len(background)), random_state=seed)
    explainer = shap.PermutationExplainer(lambda Z: func(decode(Z)), shap.maskers.Independent(bg),
                                          seed=seed)
    from threadpoolctl import threadpool_limits

    # Thousands of small predict calls: OpenMP thread start-up (HistGradientBoosting) costs
    # far more than the work, and on a busy machine it stalls; one thread is much faster.
    with threadpool_limits(1):
        # Two permutations (each run forward and backward by shap): efficiency holds exactly,
        # the attribution itself is an estimate; enough for importance and plots.
        sv = explainer(encode(X), max_evals=2 * (2 * X.shape[1] + 1), silent=True)
    return np.asarray(sv.values, dtype=float), np.asarray(sv.base_values, dtype=float), space


def explain(model, X: pd.DataFrame, background: pd.DataFrame | None = None,
            max_samples: int | None = 2000, background_size: int = 50, seed: int = 0,
            title: str = "") -> Explanation:
    """SHAP values of ``model`` on the rows of ``X``.

    Parameters
    ----------
    model : estimator or ModelComparison
        A fitted xgboost model or Booster, scikit-learn tree model, ``Pipeline`` ending in a
        linear model, or any model with ``predict_proba``/``predict``. A
        :class:`~workbench.modeling.ModelComparison` means its best model, with ``X`` prepared
        by :meth:`~workbench.modeling.ModelComparison.prepare`.
    X : DataFrame
        Rows to explain (the features the model was fitted on).
    background : DataFrame, optional
        Reference rows for the linear and model-agnostic paths (default: ``X``); sampled down to
        ``background_size`` with ``shap.sample``.
    max_samples : int or None
        Explain at most this many rows of ``X`` (a random sample, ``seed``; at most
        ``AGNOSTIC_MAX_ROWS`` on the model-agnostic path); None for all.
    background_size : int
        Background rows for the non-tree paths.
    seed : int
    title : str
        Default plot title.
    """
    if hasattr(model, "best_model_") and hasattr(model, "prepare"):
        X = model.prepare(X)
        background = None if background is None else model.prepare(background)
        model = model.best_model_
    if not isinstance(X, pd.DataFrame):
        raise ModelError(f"explain: X must be a DataFrame, got {type(X).__name__}")
    if len(X) == 0:
        raise ModelError("explain: X has no rows")
    Xs = _sample(X, max_samples, seed)
    background = X if background is None else background
    from sklearn.pipeline import Pipeline

    # The model-agnostic path costs ~ rows x background x features model calls.
    agnostic_rows = None if max_samples is None else min(max_samples, AGNOSTIC_MAX_ROWS)

    if _is_xgboost(model):
        values, base, space = xgboost_contributions(model, Xs)
        method = "xgboost pred_contribs"
    elif isinstance(model, Pipeline) and hasattr(model[-1], "coef_"):
        values, base, space = _pipeline_linear(model, Xs, background, seed, background_size)
        method = "shap.LinearExplainer (one-hot summed per feature)"
    else:
        values = None
        if type(model).__module__.startswith("sklearn.ensemble") or \
                type(model).__module__.startswith("sklearn.tree"):
            try:
                import shap

                sv = shap.TreeExplainer(model)(Xs, check_additivity=False)
                values = np.asarray(sv.values, dtype=float)
                if values.ndim == 3:
                    values = values[:, :, -1]
                base = np.asarray(sv.base_values, dtype=float).reshape(len(Xs), -1)[:, -1]
                # Boosted trees are explained in their raw (log-odds) space, forests in theirs.
                boosted = "GradientBoosting" in type(model).__name__
                space = ("prediction" if not hasattr(model, "predict_proba")
                         else "log-odds" if boosted else "probability")
                method = "shap.TreeExplainer"
                if any(isinstance(Xs[c].dtype, pd.CategoricalDtype) for c in Xs.columns):
                    values = None  # TreeExplainer ignores native categorical splits
            except Exception:  # noqa: BLE001 - unsupported tree model: fall back below
                values = None
        if values is None:
            if hasattr(model, "predict_proba"):
                def func(df):
                    return model.predict_proba(df)[:, 1]
                space = "probability"
            elif hasattr(model, "predict"):
                func, space = model.predict, "prediction"
            else:
                raise ModelError(f"explain: {type(model).__name__} has no predict method")
            Xs = _sample(Xs, agnostic_rows, seed)
            values, base, space = _agnostic(func, Xs, background, seed, background_size, space)
            method = "shap.PermutationExplainer"
    return Explanation(values=values, base_values=np.broadcast_to(base, (len(Xs),)).astype(float),
                       feature_names=list(Xs.columns), data=Xs, output_space=space,
                       method=method, title=title)


def explain_uplift(uplift_model, X: pd.DataFrame, max_samples: int | None = 2000,
                   background_size: int = 100, seed: int = 0) -> Explanation:
    """Which features drive the treatment effect estimated by an ``UpliftModel``.

    - T-learner with xgboost outcome models: SHAP of the difference of the two models' margins
      = difference of their SHAP values on the same rows (exact, TreeSHAP is additive). For a
      0/1 outcome this explains the effect on the **log-odds** scale,
      ``logit mu1(x) - logit mu0(x)``, not the probability difference that ``predict`` returns.
    - X-learner with xgboost effect models: ``g * SHAP(tau0) + (1 - g) * SHAP(tau1)``, exact in
      the space of ``predict`` (the effect itself, a probability difference for a 0/1 outcome).
    - Other base learners: ``shap.PermutationExplainer`` on ``uplift_model.predict`` (the effect).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(uplift_model, "outcome_models_")
    Xp = uplift_model.transform_features(X)
    Xs = _sample(Xp, max_samples, seed)
    title = "What drives the treatment effect"
    if uplift_model.learner == "t" and all(_is_xgboost(m) for m in uplift_model.outcome_models_.values()):
        v1, b1, space = xgboost_contributions(uplift_model.outcome_models_["treatment"], Xs)
        v0, b0, _ = xgboost_contributions(uplift_model.outcome_models_["control"], Xs)
        values, base = v1 - v0, b1 - b0
        space = f"difference in {space} (treatment - control)"
        method = "xgboost pred_contribs (T-learner difference)"
    elif uplift_model.learner == "x" and all(_is_xgboost(m) for m in uplift_model.effect_models_.values()):
        g = uplift_model.propensity_
        v0, b0, _ = xgboost_contributions(uplift_model.effect_models_["control"], Xs)
        v1, b1, _ = xgboost_contributions(uplift_model.effect_models_["treatment"], Xs)
        values, base = g * v0 + (1 - g) * v1, g * b0 + (1 - g) * b1
        space = "treatment effect" + (" (probability difference)" if uplift_model.binary_outcome_ else "")
        method = "xgboost pred_contribs (X-learner blend)"
    else:
        values, base, space = _agnostic(uplift_model.predict, Xs, Xp, seed, background_size,
                                        "treatment effect")
        method = "shap.PermutationExplainer on the effect"
    return Explanation(values=values, base_values=np.broadcast_to(base, (len(Xs),)).astype(float),
                       feature_names=list(Xs.columns), data=Xs, output_space=space,
                       method=method, title=title)


__all__: list[Any] = ["Explanation", "explain", "explain_uplift", "xgboost_contributions"]
