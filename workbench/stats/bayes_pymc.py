"""Bayesian models in PyMC on sufficient statistics: hierarchical segments, hurdle revenue, multi-arm.

Kept apart from the numpy core: ``import workbench.stats`` never imports PyMC; this module does.
Every model works from the per-variant (and per-segment) sufficient statistics of
:mod:`workbench.stats.schema`, so its cost grows with the number of arms or segments, never users.

Models
------
:func:`hierarchical`
    Treatment effect across the segments of a dimension with partial pooling (non-centred
    "8 schools"): ``theta_j = mu + tau * z_j``. Proportions use a binomial likelihood on the counts
    (effect on the log-odds scale); means a normal likelihood on each segment's observed difference
    with its standard error.
:func:`revenue_hurdle`
    Zero-inflated, heavy-tailed revenue: conversion ~ Beta-Binomial, log order value ~ Normal per
    variant (exact likelihood of the sufficient statistics); revenue per user
    ``p * exp(mu + sigma^2 / 2)``.
:func:`beta_binomial`, :func:`gaussian`
    Multi-arm conjugate models written as PyMC programs (they agree with the closed form).

Results are :class:`BayesResult` objects: a tidy table in the statistics engine's
``OUTPUT_COLUMNS`` plus diagnostics columns, the ArviZ ``InferenceData`` of every fit, and
:meth:`BayesResult.mlflow_tags`. Sampling uses nutpie (compiled once per model kind and shape, then
re-used with new data through ``CompiledPyMCModel.with_data``), else PyMC's own NUTS.
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import ConvergenceWarning, StatsInputError, WorkbenchError, WorkbenchWarning
from workbench.stats.schema import GROUP_COLUMNS, OUTPUT_COLUMNS

__all__ = [
    "BetaPrior",
    "NormalPrior",
    "HierarchicalPriors",
    "HurdlePriors",
    "Diagnostics",
    "BayesResult",
    "beta_binomial",
    "gaussian",
    "hierarchical",
    "revenue_hurdle",
    "prior_predictive",
    "diagnose",
    "clear_model_cache",
    "DIAGNOSTIC_COLUMNS",
]

#: Extra columns of the tidy table, after ``OUTPUT_COLUMNS`` (and ``dimension, segment``).
DIAGNOSTIC_COLUMNS = ("r_hat_max", "ess_bulk_min", "ess_tail_min", "divergences")
OVERALL = "(all)"
DIFFERENCES = ("relative", "absolute")
SAMPLERS = ("nutpie", "pymc")


# --------------------------------------------------------------------------------------------
# priors
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BetaPrior:
    """Beta(alpha, beta) prior on a conversion probability. Default: uniform, Beta(1, 1)."""

    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self):
        if not (self.alpha > 0 and self.beta > 0):
            raise StatsInputError(f"BetaPrior needs alpha > 0 and beta > 0, got {self}")


@dataclass(frozen=True)
class NormalPrior:
    """Normal prior on each arm's mean.

    Attributes
    ----------
    mean : float or None
        Prior mean; None: the pooled observed mean of the metric (all arms).
    sd : float or None
        Prior standard deviation; None: 10 pooled standard deviations of the metric (weak: far
        wider than any standard error, so the posterior is the likelihood's).
    """

    mean: float | None = None
    sd: float | None = None

    def __post_init__(self):
        if self.sd is not None and not self.sd > 0:
            raise StatsInputError(f"NormalPrior.sd must be > 0, got {self.sd}")


@dataclass(frozen=True)
class HierarchicalPriors:
    """Priors of :func:`hierarchical`, on the model's effect scale.

    The effect scale is the log odds ratio for proportions (binomial likelihood), the relative lift
    for ``difference='relative'`` and the absolute difference in units of the control's standard
    deviation for ``difference='absolute'`` (normal likelihood).

    Attributes
    ----------
    mu_sd : float
        ``mu ~ Normal(0, mu_sd)``: the population mean effect. Default 0.3 (the industry's proper
        prior on relative lift, N(0, 0.3^2)).
    tau_scale : float
        ``tau ~ HalfNormal(tau_scale)``: the between-segment standard deviation of the effect.
        Default 0.2.
    baseline_sd : float
        Binomial likelihood only: ``logit(p_control_j) ~ Normal(logit(pooled rate), baseline_sd)``,
        independent per segment. Default 2.0 (weak).
    """

    mu_sd: float = 0.3
    tau_scale: float = 0.2
    baseline_sd: float = 2.0

    def __post_init__(self):
        for name in ("mu_sd", "tau_scale", "baseline_sd"):
            if not getattr(self, name) > 0:
                raise StatsInputError(f"HierarchicalPriors.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class HurdlePriors:
    """Priors of :func:`revenue_hurdle`, the same for every variant.

    Attributes
    ----------
    conversion : BetaPrior
        Prior on the share of users with revenue > 0. Default Beta(1, 1).
    log_mean : float or None
        Mean of ``mu ~ Normal(log_mean, log_mean_sd)``, the mean of log order value. None: the
        pooled mean of log revenue over converting users of all variants.
    log_mean_sd : float
        Default 2.0 (a factor e^2 ~ 7 either way).
    log_sd_scale : float
        ``sigma ~ HalfNormal(log_sd_scale)``, the sd of log order value. Default 2.0.
    """

    conversion: BetaPrior = field(default_factory=BetaPrior)
    log_mean: float | None = None
    log_mean_sd: float = 2.0
    log_sd_scale: float = 2.0

    def __post_init__(self):
        for name in ("log_mean_sd", "log_sd_scale"):
            if not getattr(self, name) > 0:
                raise StatsInputError(f"HurdlePriors.{name} must be > 0, got {getattr(self, name)}")


# --------------------------------------------------------------------------------------------
# model programs (built once per kind and shape; data and prior parameters are pm.Data)
# --------------------------------------------------------------------------------------------
def _build(kind: str, size: int):
    import pymc as pm

    if kind == "beta_binomial":
        with pm.Model(coords={"arm": np.arange(size)}) as model:
            successes = pm.Data("successes", np.zeros(size, dtype="int64"), dims="arm")
            trials = pm.Data("trials", np.ones(size, dtype="int64"), dims="arm")
            a = pm.Data("prior_alpha", 1.0)
            b = pm.Data("prior_beta", 1.0)
            p = pm.Beta("p", a, b, dims="arm")
            pm.Binomial("y", n=trials, p=p, observed=successes, dims="arm")
    elif kind == "gaussian":
        # Standardised units (the caller maps back): the sampler sees posteriors of unit scale.
        with pm.Model(coords={"arm": np.arange(size)}) as model:
            mean = pm.Data("mean", np.zeros(size), dims="arm")
            se = pm.Data("se", np.ones(size), dims="arm")
            m0 = pm.Data("prior_mean", 0.0)
            s0 = pm.Data("prior_sd", 10.0)
            mu = pm.Normal("mu", m0, s0, dims="arm")
            pm.Normal("y", mu, se, observed=mean, dims="arm")
    elif kind == "hier_normal":
        with pm.Model(coords={"segment": np.arange(size)}) as model:
            effect = pm.Data("effect", np.zeros(size), dims="segment")
            se = pm.Data("se", np.ones(size), dims="segment")
            scale = pm.Data("scale", 1.0)
            mu_sd = pm.Data("mu_sd", 0.3)
            tau_scale = pm.Data("tau_scale", 0.2)
            mu = pm.Normal("mu", 0.0, mu_sd)
            tau = pm.HalfNormal("tau", tau_scale)
            z = pm.Normal("z", 0.0, 1.0, dims="segment")
            theta = pm.Deterministic("theta", mu + tau * z, dims="segment")
            pm.Normal("y", scale * theta, se, observed=effect, dims="segment")
    elif kind == "hier_binomial":
        with pm.Model(coords={"segment": np.arange(size)}) as model:
            y_c = pm.Data("y_control", np.zeros(size, dtype="int64"), dims="segment")
            n_c = pm.Data("n_control", np.ones(size, dtype="int64"), dims="segment")
            y_t = pm.Data("y_variant", np.zeros(size, dtype="int64"), dims="segment")
            n_t = pm.Data("n_variant", np.ones(size, dtype="int64"), dims="segment")
            base_mu = pm.Data("baseline_mu", 0.0)
            base_sd = pm.Data("baseline_sd", 2.0)
            mu_sd = pm.Data("mu_sd", 0.3)
            tau_scale = pm.Data("tau_scale", 0.2)
            mu = pm.Normal("mu", 0.0, mu_sd)
            tau = pm.HalfNormal("tau", tau_scale)
            z = pm.Normal("z", 0.0, 1.0, dims="segment")
            alpha = pm.Normal("alpha", base_mu, base_sd, dims="segment")
            theta = pm.Deterministic("theta", mu + tau * z, dims="segment")
            p_c = pm.Deterministic("p_control", pm.math.invlogit(alpha), dims="segment")
            p_t = pm.Deterministic("p_variant", pm.math.invlogit(alpha + theta), dims="segment")
            pm.Binomial("y_c", n=n_c, p=p_c, observed=y_c, dims="segment")
            pm.Binomial("y_t", n=n_t, p=p_t, observed=y_t, dims="segment")
    elif kind == "hurdle":
        with pm.Model(coords={"arm": np.arange(size)}) as model:
            n = pm.Data("n", np.full(size, 2, dtype="int64"), dims="arm")
            pos = pm.Data("positive_n", np.ones(size, dtype="int64"), dims="arm")
            m = pm.Data("m", np.full(size, 2.0), dims="arm")  # positive_n as float
            log_mean = pm.Data("log_mean", np.zeros(size), dims="arm")
            log_ss = pm.Data("log_ss", np.ones(size), dims="arm")
            a = pm.Data("prior_alpha", 1.0)
            b = pm.Data("prior_beta", 1.0)
            m0 = pm.Data("prior_log_mean", 0.0)
            s0 = pm.Data("prior_log_mean_sd", 2.0)
            sig_scale = pm.Data("prior_log_sd_scale", 2.0)
            p = pm.Beta("p", a, b, dims="arm")
            mu = pm.Normal("mu", m0, s0, dims="arm")
            sigma = pm.HalfNormal("sigma", sig_scale, dims="arm")
            pm.Binomial("conversions", n=n, p=p, observed=pos, dims="arm")
            # Exact likelihood of (mean, centred sum of squares) of the m log values: it is
            # proportional in (mu, sigma) to the product of the m normal densities.
            pm.Normal("log_value_mean", mu, sigma / pm.math.sqrt(m), observed=log_mean, dims="arm")
            pm.Gamma("log_value_ss", alpha=(m - 1.0) / 2.0, beta=1.0 / (2.0 * sigma**2),
                     observed=log_ss, dims="arm")
            pm.Deterministic("order_value", pm.math.exp(mu + sigma**2 / 2.0), dims="arm")
            pm.Deterministic("revenue_per_user", p * pm.math.exp(mu + sigma**2 / 2.0), dims="arm")
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    return model


@dataclass
class _Entry:
    model: Any
    compiled: Any = None  # nutpie CompiledPyMCModel, or None
    nutpie_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[tuple[str, int], _Entry] = {}
_CACHE_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget every built and compiled model (the next fit of each shape compiles again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _entry(kind: str, size: int) -> _Entry:
    with _CACHE_LOCK:
        entry = _CACHE.get((kind, size))
        if entry is None:
            entry = _CACHE[(kind, size)] = _Entry(model=_build(kind, size))
        return entry


def _nutpie_model(entry: _Entry):
    """The compiled nutpie model of an entry, compiled on first use; None if nutpie fails."""
    with entry.lock:
        if entry.compiled is None and entry.nutpie_error is None:
            try:
                import nutpie

                entry.compiled = nutpie.compile_pymc_model(entry.model)
            except Exception as exc:  # noqa: BLE001 - any failure means: use PyMC's sampler
                entry.nutpie_error = f"{type(exc).__name__}: {exc}"
        return entry.compiled


@dataclass(frozen=True)
class _Sampling:
    draws: int
    tune: int
    chains: int
    random_seed: int | None
    sampler: str
    progressbar: bool
    target_accept: float
    max_r_hat: float
    min_ess: float

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise StatsInputError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("draws", "chains"):
            if int(getattr(self, name)) < 1:
                raise StatsInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.tune) < 0:
            raise StatsInputError(f"tune must be >= 0, got {self.tune}")
        if not 0 < self.target_accept < 1:
            raise StatsInputError(f"target_accept must be in (0, 1), got {self.target_accept}")


def _sample(kind: str, size: int, data: dict, cfg: _Sampling, seed: int | None):
    """Sample the cached model of ``(kind, size)`` with ``data``; returns (idata, sampler used)."""
    entry = _entry(kind, size)
    if cfg.sampler == "nutpie":
        compiled = _nutpie_model(entry)
        problem = f"could not compile the {kind} model ({entry.nutpie_error})"
        if compiled is not None:
            import nutpie

            try:
                return nutpie.sample(
                    compiled.with_data(**data), draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                    cores=min(cfg.chains, os.cpu_count() or 1), seed=seed, save_warmup=False,
                    progress_bar=cfg.progressbar, target_accept=cfg.target_accept,
                ), "nutpie"
            except Exception as exc:  # noqa: BLE001 - e.g. no valid initial point: try PyMC's NUTS
                problem = f"failed to sample the {kind} model ({type(exc).__name__}: {exc})"
        warnings.warn(f"nutpie {problem}; using PyMC's default sampler", WorkbenchWarning, stacklevel=4)
    import pymc as pm

    with entry.lock, entry.model:
        pm.set_data(data)
        idata = pm.sample(draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                          cores=min(cfg.chains, os.cpu_count() or 1), random_seed=seed,
                          progressbar=cfg.progressbar, target_accept=cfg.target_accept,
                          compute_convergence_checks=False, return_inferencedata=True)
    return idata, "pymc"


def _relabel(idata, dim: str, labels) -> Any:
    return idata.assign_coords({dim: list(labels)})


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Diagnostics:
    """MCMC convergence diagnostics of one fit.

    Attributes
    ----------
    r_hat_max : float
        Largest rank-normalised split r-hat over all posterior quantities (NaN with one chain).
    ess_bulk_min, ess_tail_min : float
        Smallest bulk and tail effective sample sizes.
    divergences : int
        Divergent transitions after tuning.
    max_r_hat, min_ess : float
        Thresholds applied.
    """

    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    max_r_hat: float = 1.01
    min_ess: float = 400.0

    @property
    def problems(self) -> tuple[str, ...]:
        """Human-readable list of failed checks (empty when all pass)."""
        out = []
        if np.isfinite(self.r_hat_max) and self.r_hat_max > self.max_r_hat:
            out.append(f"r_hat {self.r_hat_max:.3f} > {self.max_r_hat:g}")
        if not np.isfinite(self.ess_bulk_min) or self.ess_bulk_min < self.min_ess:
            out.append(f"ess_bulk {self.ess_bulk_min:.0f} < {self.min_ess:g}")
        if not np.isfinite(self.ess_tail_min) or self.ess_tail_min < self.min_ess:
            out.append(f"ess_tail {self.ess_tail_min:.0f} < {self.min_ess:g}")
        if self.divergences > 0:
            out.append(f"{self.divergences} divergent transition{'s' if self.divergences > 1 else ''}")
        return tuple(out)

    @property
    def ok(self) -> bool:
        """True when r-hat, ESS and divergences all pass their thresholds."""
        return not self.problems

    @property
    def message(self) -> str:
        """``messages.NOT_CONVERGED`` filled in, or '' when the checks pass."""
        return messages.NOT_CONVERGED.format(detail="; ".join(self.problems)) if self.problems else ""


def diagnose(idata, var_names=None, *, max_r_hat: float = 1.01, min_ess: float = 400.0) -> Diagnostics:
    """Convergence diagnostics of an InferenceData (r-hat, bulk/tail ESS, divergences).

    Parameters
    ----------
    idata : arviz.InferenceData
        With a ``posterior`` group and, for divergences, ``sample_stats.diverging``.
    var_names : list of str, optional
        Posterior variables to check; default all.
    max_r_hat, min_ess : float
        Thresholds (defaults 1.01 and 400, after Vehtari et al. 2021).
    """
    import arviz as az

    post = idata.posterior if var_names is None else idata.posterior[list(var_names)]
    # Quantities that do not vary (e.g. a deterministic of data only) have undefined r-hat/ESS.
    keep = [v for v in post.data_vars if float(post[v].std()) > 0]
    post = post[keep]

    def _extreme(ds, fn):
        values = [np.asarray(ds[v]).ravel() for v in ds.data_vars]
        values = np.concatenate(values) if values else np.array([np.nan])
        values = values[~np.isnan(values)]
        return float(fn(values)) if values.size else float("nan")

    chains = post.sizes.get("chain", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r_hat = _extreme(az.rhat(post), np.max) if chains > 1 and keep else float("nan")
        ess_bulk = _extreme(az.ess(post, method="bulk"), np.min) if keep else float("nan")
        ess_tail = _extreme(az.ess(post, method="tail"), np.min) if keep else float("nan")
    divergences = 0
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        divergences = int(np.asarray(stats["diverging"]).sum())
    return Diagnostics(r_hat, ess_bulk, ess_tail, divergences, max_r_hat, min_ess)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
class _Summary:
    """Text and HTML rendering of a result (what ``.summary()`` returns)."""

    def __init__(self, title: str, table: pd.DataFrame, notes: list[str]):
        self.title, self.table, self.notes = title, table, notes

    def __str__(self) -> str:
        with pd.option_context("display.width", 200, "display.max_columns", 50):
            body = self.table.to_string(index=False)
        return "\n".join([self.title, "=" * len(self.title), body, *self.notes])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (f"<div><h4>{escape(self.title)}</h4>"
                f"{self.table.to_html(index=False, float_format=lambda x: f'{x:.4g}', na_rep='')}"
                f"<ul>{notes}</ul></div>")


@dataclass(frozen=True)
class BayesResult:
    """Result of a PyMC model: tidy table, InferenceData per fit, diagnostics.

    Attributes
    ----------
    model : str
        'hierarchical', 'revenue_hurdle', 'beta_binomial' or 'gaussian'.
    table : DataFrame
        ``OUTPUT_COLUMNS``, then the grouping columns present (``dimension, segment, date``),
        then ``DIAGNOSTIC_COLUMNS`` (the fit's worst r-hat, ESS, and its divergences). p-values and SRM are NaN. ``segment == '(all)'`` rows of a
        hierarchical fit hold the population effect (segments weighted by their units).
        ``error_message`` holds ``messages.NOT_CONVERGED`` when the fit's diagnostics fail.
    idatas : dict
        ``InferenceData`` per fit, keyed by a tuple naming the block
        (metric[, dimension][, variant] or metric plus grouping values).
    diagnostics : DataFrame
        One row per fit: key, sampler, r_hat_max, ess_bulk_min, ess_tail_min, divergences, ok.
    hyper : DataFrame
        Hierarchical fits: posterior of ``mu`` (mean effect of a segment) and ``tau``
        (between-segment sd) on the model's effect scale; empty otherwise.
    difference : str
        'relative' or 'absolute'.
    ci_level : float
        Probability of the equal-tailed credible intervals.
    priors : object
        The prior dataclass used.
    sampler : str
        'nutpie', 'pymc', or 'nutpie+pymc' when some fits fell back.
    """

    model: str
    table: pd.DataFrame
    idatas: Mapping[tuple, Any]
    diagnostics: pd.DataFrame
    hyper: pd.DataFrame
    difference: str
    ci_level: float
    priors: Any
    sampler: str

    @property
    def idata(self):
        """The InferenceData of the only fit (see ``idatas`` when there are several)."""
        if len(self.idatas) != 1:
            raise WorkbenchError(f"this result holds {len(self.idatas)} fits; use .idatas[key] "
                                 f"with one of {list(self.idatas)}")
        return next(iter(self.idatas.values()))

    @property
    def diagnostics_ok(self) -> bool:
        """True when every fit passed its r-hat, ESS and divergence checks."""
        return bool(self.diagnostics["ok"].all()) if len(self.diagnostics) else True

    def to_frame(self) -> pd.DataFrame:
        """The tidy table (a copy)."""
        return self.table.copy()

    def mlflow_tags(self) -> dict[str, str]:
        """Tags for MLflow: ``workbench.mcmc.ok`` ('true'/'false'), worst r-hat/ESS, divergences."""
        d = self.diagnostics

        def fmt(x):
            return "nan" if not np.isfinite(x) else f"{x:.4g}"

        return {
            "workbench.mcmc.ok": "true" if self.diagnostics_ok else "false",
            "workbench.mcmc.model": self.model,
            "workbench.mcmc.sampler": self.sampler,
            "workbench.mcmc.fits": str(len(d)),
            "workbench.mcmc.r_hat_max": fmt(d["r_hat_max"].max()) if len(d) else "nan",
            "workbench.mcmc.ess_bulk_min": fmt(d["ess_bulk_min"].min()) if len(d) else "nan",
            "workbench.mcmc.divergences": str(int(d["divergences"].sum())) if len(d) else "0",
        }

    def summary(self) -> _Summary:
        """Decision table (text and HTML) with the convergence verdict first."""
        cols = [c for c in ("metric", "variant", "dimension", "segment", "date") if c in self.table]
        cols += ["control_mean", "variant_mean", "effect", "ci_lower", "ci_upper", "chance_to_win",
                 "risk_variant", "r_hat_max", "ess_bulk_min", "divergences", "error_message"]
        notes = []
        if self.diagnostics_ok:
            notes.append(f"MCMC diagnostics OK for {len(self.diagnostics)} fit(s) (sampler: {self.sampler}).")
        else:
            bad = self.diagnostics[~self.diagnostics["ok"]]
            notes.append(f"WARNING: MCMC diagnostics FAILED for {len(bad)} of {len(self.diagnostics)} "
                         "fit(s); do not trust those rows:")
            notes += [f"  {k}: {m}" for k, m in zip(bad["key"], bad["message"])]
        notes.append(f"effect: {self.difference}; {self.ci_level:.0%} equal-tailed credible intervals; "
                     f"priors: {self.priors}")
        title = f"Bayesian {self.model} model (PyMC)"
        return _Summary(title, self.table[cols], notes)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------
def _check_table(stats, control: str, need: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(stats, pd.DataFrame):
        raise StatsInputError(f"stats must be a pandas DataFrame, got {type(stats).__name__}")
    if stats.empty:
        raise StatsInputError("the statistics table has no rows")
    missing = [c for c in ("metric", "variant", "kind", "n", "sum", *need) if c not in stats.columns]
    if missing:
        raise StatsInputError(f"the statistics table lacks column(s) {missing}")
    frame = stats.reset_index(drop=True).copy()
    for col in ("n", "sum", *need):
        try:
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            raise StatsInputError(f"column {col!r} of the statistics table must be numeric: {exc}") from None
        bad = np.flatnonzero(~np.isfinite(frame[col].to_numpy()))
        if bad.size:
            r = frame.iloc[bad[0]]
            raise StatsInputError(f"column {col!r} is not finite in row {bad[0]} "
                                  f"(metric={r['metric']!r}, variant={r['variant']!r})")
    bad = np.flatnonzero(frame["n"].to_numpy() < 0)
    if bad.size:
        r = frame.iloc[bad[0]]
        raise StatsInputError(f"column 'n' is negative in row {bad[0]} (metric={r['metric']!r}, "
                              f"variant={r['variant']!r})")
    if control not in set(frame["variant"]):
        raise StatsInputError(f"control variant {control!r} not found in column 'variant' "
                              f"(variants: {sorted(map(str, frame['variant'].unique()))})")
    return frame


def _check_args(difference: str, alpha: float):
    if difference not in DIFFERENCES:
        raise StatsInputError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must be in (0, 1), got {alpha!r}")


def _select_metrics(frame: pd.DataFrame, metrics, kinds: tuple[str, ...], model: str) -> pd.DataFrame:
    if metrics is not None:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = sorted(set(metrics) - set(frame["metric"]))
        if unknown:
            raise StatsInputError(f"metric(s) {unknown} not in column 'metric'")
        frame = frame[frame["metric"].isin(metrics)]
        wrong = frame.loc[~frame["kind"].isin(kinds), "metric"].unique()
        if len(wrong):
            raise StatsInputError(f"the {model} model takes metrics of kind {kinds}; "
                                  f"metric(s) {sorted(wrong)} are not")
    else:
        frame = frame[frame["kind"].isin(kinds)]
        if frame.empty:
            raise StatsInputError(f"no metric of kind {kinds} in the statistics table for the {model} model")
    return frame


def _check_unique(block: pd.DataFrame, key_cols: list[str]):
    dup = block.duplicated(key_cols)
    if dup.any():
        r = block[dup].iloc[0]
        raise StatsInputError("duplicated rows for " + ", ".join(f"{c}={r[c]!r}" for c in key_cols))


def _variance(frame: pd.DataFrame) -> np.ndarray:
    """Sample variance (n-1) of each row; p(1-p)-based for proportions."""
    n, s = frame["n"].to_numpy(), frame["sum"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        if "sum_squares" in frame:
            ss = frame["sum_squares"].to_numpy(dtype=float)
        else:
            ss = np.full(len(frame), np.nan)
        prop = frame["kind"].to_numpy() == "proportion"
        ss = np.where(prop & ~np.isfinite(ss), s, ss)
        var = (ss - n * mean**2) / (n - 1)
    return np.maximum(var, 0.0)


def _effect_stats(c, t, difference: str, alpha: float) -> dict:
    """Posterior summaries of the effect of t over c (arrays of draws)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = t / c - 1.0 if difference == "relative" else t - c
    lo, hi = np.quantile(eff, [alpha / 2, 1 - alpha / 2])
    return {
        "control_mean": float(np.mean(c)),
        "variant_mean": float(np.mean(t)),
        "effect": float(np.mean(eff)),
        "ci_lower": float(lo),
        "ci_upper": float(hi),
        "chance_to_win": float(np.mean(eff > 0)),
        # Expected loss, in the effect's units, of shipping the wrong arm.
        "risk_control": float(np.mean(np.maximum(eff, 0.0))),
        "risk_variant": float(np.mean(np.maximum(-eff, 0.0))),
    }


def _draws(idata, name: str) -> np.ndarray:
    """Posterior draws of ``name`` as (samples, ...) with chains stacked."""
    x = np.asarray(idata.posterior[name])
    return x.reshape(-1, *x.shape[2:])


def _empty_row(base: dict, message: str) -> dict:
    row = {c: np.nan for c in OUTPUT_COLUMNS}
    row.update({c: np.nan for c in DIAGNOSTIC_COLUMNS})
    row.update(base)
    row["error_message"] = message
    return row


def _diag_cols(d: Diagnostics) -> dict:
    return {"r_hat_max": d.r_hat_max, "ess_bulk_min": d.ess_bulk_min, "ess_tail_min": d.ess_tail_min,
            "divergences": d.divergences}


def _finish(model, rows, group_cols, idatas, diags, hyper, difference, alpha, priors, samplers, warn=True):
    # The statistics engine's order: OUTPUT_COLUMNS, then grouping columns, then extras.
    cols = list(OUTPUT_COLUMNS) + list(group_cols) + list(DIAGNOSTIC_COLUMNS)
    table = pd.DataFrame(rows, columns=cols)
    table["error_message"] = table["error_message"].fillna("").astype(str)
    for c in OUTPUT_COLUMNS:
        if c not in ("metric", "variant", "error_message"):
            table[c] = table[c].astype(float)
    diag = pd.DataFrame(diags, columns=["key", "sampler", "r_hat_max", "ess_bulk_min", "ess_tail_min",
                                        "divergences", "ok", "message"])
    bad = diag[~diag["ok"].astype(bool)]
    if warn and len(bad):
        warnings.warn(f"{len(bad)} of {len(diag)} {model} fit(s) failed MCMC diagnostics: "
                      + "; ".join(f"{k}: {m}" for k, m in zip(bad["key"], bad["message"])),
                      ConvergenceWarning, stacklevel=4)
    used = sorted(set(samplers))
    sampler = "+".join(used) if used else "none"
    hyper = pd.DataFrame(hyper, columns=["metric", "variant", "dimension", "parameter", "scale", "mean",
                                         "sd", "ci_lower", "ci_upper"])
    return BayesResult(model=model, table=table, idatas=dict(idatas), diagnostics=diag, hyper=hyper,
                       difference=difference, ci_level=1 - alpha, priors=priors, sampler=sampler)


def _cfg(draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess):
    return _Sampling(int(draws), int(tune), int(chains), random_seed, sampler, bool(progressbar),
                     float(target_accept), float(max_r_hat), float(min_ess))


def _seeds(random_seed, count: int) -> list:
    if random_seed is None:
        return [None] * count
    return [int(s) for s in np.random.SeedSequence(random_seed).generate_state(max(count, 1))[:count]]


# --------------------------------------------------------------------------------------------
# multi-arm models
# --------------------------------------------------------------------------------------------
def _multi_arm(model_name, stats, control, metrics, difference, alpha, prior, cfg, kinds, need, prep,
               extract, *, prior_only=False, prior_draws=500):
    _check_args(difference, alpha)
    frame = _check_table(stats, control, need)
    frame = _select_metrics(frame, metrics, kinds, model_name)
    group_cols = [c for c in GROUP_COLUMNS if c in frame.columns]
    blocks = list(frame.groupby(["metric", *group_cols], sort=False, dropna=False))
    seeds = _seeds(cfg.random_seed, len(blocks))
    rows, idatas, diags, samplers = [], {}, [], []
    for (key, block), seed in zip(blocks, seeds):
        key = key if isinstance(key, tuple) else (key,)
        metric = key[0]
        base = {"metric": metric, **dict(zip(group_cols, key[1:]))}
        _check_unique(block, ["variant"])
        if control not in set(block["variant"]):
            raise StatsInputError(f"control variant {control!r} has no row for "
                                  + ", ".join(f"{k}={v!r}" for k, v in base.items()))
        block = pd.concat([block[block["variant"] == control], block[block["variant"] != control]])
        names = list(block["variant"])
        data, bad, block_error = prep(block, prior, difference)
        meta = {k: data.pop(k) for k in [k for k in data if k.startswith("_")]}
        if prior_only:
            return _prior_predictive(model_name, len(names), data, prior_draws, seed, "arm", names)
        if block_error:
            rows += [_empty_row({**base, "variant": v}, block_error) for v in names[1:]]
            continue
        idata, used = _sample(model_name, len(names), data, cfg, seed)
        idata = _relabel(idata, "arm", names)
        samplers.append(used)
        d = diagnose(idata, max_r_hat=cfg.max_r_hat, min_ess=cfg.min_ess)
        idatas[key] = idata
        diags.append((key, used, d.r_hat_max, d.ess_bulk_min, d.ess_tail_min, d.divergences, d.ok, d.message))
        arms = extract(idata, meta)  # (draws, arms)
        for j, v in enumerate(names[1:], start=1):
            if bad[j]:
                rows.append(_empty_row({**base, "variant": v}, bad[j]))
                continue
            row = {**base, "variant": v, **_effect_stats(arms[:, 0], arms[:, j], difference, alpha),
                   **_diag_cols(d), "error_message": d.message}
            rows.append(row)
    return _finish(model_name, rows, group_cols, idatas, diags, [], difference, alpha, prior, samplers)


def _prep_beta(block, prior: BetaPrior, difference):
    n, s = block["n"].to_numpy(), block["sum"].to_numpy()
    over = np.flatnonzero((s < 0) | (s > n) | (np.round(s) != s) | (np.round(n) != n))
    if over.size:
        r = block.iloc[over[0]]
        raise StatsInputError(f"proportion metric {r['metric']!r}, variant {r['variant']!r}: 'sum' must be "
                              f"an integer count in [0, n], got sum={r['sum']}, n={r['n']}")
    bad = ["" for _ in range(len(block))]
    for j in range(1, len(block)):
        if n[j] == 0:
            bad[j] = messages.NO_UNITS_VARIANT
    error = ""
    if n[0] == 0:
        error = messages.NO_UNITS_CONTROL
    elif difference == "relative" and s[0] == 0 and prior.alpha <= 1:
        # With no control conversion the lift's posterior has no mean.
        error = messages.ZERO_BASELINE
    data = {"successes": s.astype("int64"), "trials": n.astype("int64"),
            "prior_alpha": float(prior.alpha), "prior_beta": float(prior.beta)}
    return data, bad, error


def _prep_gauss(block, prior: NormalPrior, difference):
    n, s = block["n"].to_numpy(), block["sum"].to_numpy()
    var = _variance(block)
    bad = ["" for _ in range(len(block))]
    for j in range(len(block)):
        if n[j] == 0:
            bad[j] = messages.NO_UNITS_CONTROL if j == 0 else messages.NO_UNITS_VARIANT
        elif n[j] < 2:
            bad[j] = messages.TOO_FEW_UNITS
        elif var[j] == 0:
            bad[j] = messages.ZERO_VARIANCE
    error = bad[0]
    ok = np.array([not b for b in bad])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ok, s / n, 0.0)
        se = np.where(ok, np.sqrt(var / n), 1.0)
    if not error and difference == "relative" and mean[0] == 0:
        error = messages.ZERO_BASELINE
    total_n = n[ok].sum()
    pooled_mean = float(s[ok].sum() / total_n) if total_n > 0 else 0.0
    pooled_sd = float(np.sqrt(np.sum((n[ok] - 1) * var[ok]) / max(total_n - ok.sum(), 1))) if total_n else 1.0
    m0 = pooled_mean if prior.mean is None else float(prior.mean)
    s0 = 10.0 * pooled_sd if prior.sd is None else float(prior.sd)
    # Sample in standardised units (centre: pooled mean, unit: the smallest standard error), so the
    # sampler sees unit-scale posteriors whatever the metric's units.
    unit = float(np.min(se[ok])) if ok.any() and np.min(se[ok]) > 0 else 1.0
    unit = unit if unit > 0 else 1.0
    data = {"mean": (mean - pooled_mean) / unit, "se": np.where(ok, se / unit, 1e6),
            "prior_mean": (m0 - pooled_mean) / unit, "prior_sd": max(s0, 1e-300) / unit}
    # How to map back to the metric's units (popped by _multi_arm, given to _extract_gauss).
    data["_centre"], data["_unit"] = pooled_mean, unit
    return data, bad, error


def beta_binomial(stats: pd.DataFrame, *, control: str = "control", metrics=None,
                  difference: str = "relative", alpha: float = 0.05, prior: BetaPrior = BetaPrior(),
                  draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int | None = None,
                  sampler: str = "nutpie", progressbar: bool = True, target_accept: float = 0.8,
                  max_r_hat: float = 1.01, min_ess: float = 400.0) -> BayesResult:
    """Multi-arm Beta-Binomial model of proportion metrics, sampled with MCMC.

    ``p_k ~ Beta(prior.alpha, prior.beta)``, ``sum_k ~ Binomial(n_k, p_k)`` per arm, for every
    proportion metric (and every ``dimension, segment, date`` block) of ``stats``. Agrees with the
    closed form Beta(alpha + sum, beta + n - sum) up to Monte Carlo error.

    Parameters
    ----------
    stats : DataFrame
        Sufficient statistics, columns of ``workbench.stats.schema.INPUT_COLUMNS``.
    control : str
        Control variant.
    metrics : str or list of str, optional
        Metrics to analyse; default every proportion metric.
    difference : {'relative', 'absolute'}
        Effect reported: lift ``p_t / p_c - 1`` or ``p_t - p_c``.
    alpha : float
        Credible intervals cover ``1 - alpha``.
    prior : BetaPrior
        Default Beta(1, 1).
    draws, tune, chains, random_seed, sampler, progressbar, target_accept
        Sampling settings; ``sampler='nutpie'`` (default, falls back to PyMC's NUTS if it fails)
        or ``'pymc'``.
    max_r_hat, min_ess : float
        Diagnostic thresholds; fits beyond them get ``messages.NOT_CONVERGED`` in
        ``error_message`` and a :class:`~workbench.errors.ConvergenceWarning`.

    Returns
    -------
    BayesResult
    """
    cfg = _cfg(draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess)
    return _multi_arm("beta_binomial", stats, control, metrics, difference, alpha, prior, cfg,
                      ("proportion",), (), _prep_beta, lambda idata, meta: _draws(idata, "p"))


def gaussian(stats: pd.DataFrame, *, control: str = "control", metrics=None,
             difference: str = "relative", alpha: float = 0.05, prior: NormalPrior = NormalPrior(),
             draws: int = 1000, tune: int = 1000, chains: int = 4, random_seed: int | None = None,
             sampler: str = "nutpie", progressbar: bool = True, target_accept: float = 0.8,
             max_r_hat: float = 1.01, min_ess: float = 400.0) -> BayesResult:
    """Multi-arm Gaussian model of mean metrics, sampled with MCMC.

    ``mu_k ~ Normal(prior.mean, prior.sd)``, observed mean ``ybar_k ~ Normal(mu_k, s_k / sqrt(n_k))``
    (sample sd ``s_k`` plugged in, as the closed-form engines do). Agrees with the conjugate normal
    posterior up to Monte Carlo error. The posterior of each arm's mean is stored in
    ``idata.posterior['arm_mean']`` (``mu`` is in standardised units).

    Parameters are those of :func:`beta_binomial`, with ``prior`` a :class:`NormalPrior` and
    ``metrics`` defaulting to every mean metric (``sum_squares`` required).
    """
    cfg = _cfg(draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess)
    return _multi_arm("gaussian", stats, control, metrics, difference, alpha, prior, cfg,
                      ("mean",), ("sum_squares",), _prep_gauss, _extract_gauss)


def _extract_gauss(idata, meta):
    # Store the arm means in the metric's units next to the standardised parameter.
    idata.posterior["arm_mean"] = meta["_centre"] + meta["_unit"] * idata.posterior["mu"]
    return _draws(idata, "arm_mean")


# --------------------------------------------------------------------------------------------
# revenue hurdle model
# --------------------------------------------------------------------------------------------
def _prep_hurdle(block, priors: HurdlePriors, difference):
    n = block["n"].to_numpy()
    pos = block["positive_n"].to_numpy()
    ls, lss = block["log_sum"].to_numpy(), block["log_sum_squares"].to_numpy()
    bad_rows = np.flatnonzero((pos < 0) | (pos > n) | (np.round(pos) != pos))
    if bad_rows.size:
        r = block.iloc[bad_rows[0]]
        raise StatsInputError(f"metric {r['metric']!r}, variant {r['variant']!r}: 'positive_n' must be an "
                              f"integer in [0, n], got {r['positive_n']} (n={r['n']})")
    bad = ["" for _ in range(len(block))]
    for j in range(len(block)):
        if n[j] == 0:
            bad[j] = messages.NO_UNITS_CONTROL if j == 0 else messages.NO_UNITS_VARIANT
        elif pos[j] < 2:
            bad[j] = messages.TOO_FEW_UNITS
    error = bad[0]
    ok = np.array([not b for b in bad])
    m = np.where(ok, pos, 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(ok, ls / np.maximum(pos, 1), 0.0)
        ss = np.where(ok, lss - ls**2 / np.maximum(pos, 1), 1.0)
    # Floating error can make a tiny centred sum of squares negative.
    ss = np.maximum(ss, 1e-12 * np.maximum(m, 1.0))
    pooled = float(ls[ok].sum() / pos[ok].sum()) if ok.any() and pos[ok].sum() > 0 else 0.0
    m0 = pooled if priors.log_mean is None else float(priors.log_mean)
    data = {"n": np.where(ok, n, 2).astype("int64"), "positive_n": np.where(ok, pos, 2).astype("int64"),
            "m": m.astype(float), "log_mean": mean, "log_ss": ss,
            "prior_alpha": float(priors.conversion.alpha), "prior_beta": float(priors.conversion.beta),
            "prior_log_mean": m0, "prior_log_mean_sd": float(priors.log_mean_sd),
            "prior_log_sd_scale": float(priors.log_sd_scale)}
    return data, bad, error


def revenue_hurdle(stats: pd.DataFrame, *, control: str = "control", metrics=None,
                   difference: str = "relative", alpha: float = 0.05,
                   priors: HurdlePriors = HurdlePriors(), draws: int = 1000, tune: int = 1000,
                   chains: int = 4, random_seed: int | None = None, sampler: str = "nutpie",
                   progressbar: bool = True, target_accept: float = 0.8, max_r_hat: float = 1.01,
                   min_ess: float = 400.0) -> BayesResult:
    """Hurdle model of revenue per user: conversion x log-normal order value, per variant.

    Per arm ``k``: ``p_k ~ Beta``, ``positive_n_k ~ Binomial(n_k, p_k)``; the log revenue of a
    converting user ``~ Normal(mu_k, sigma_k)``, whose likelihood is written exactly in terms of
    ``positive_n, log_sum, log_sum_squares``. Revenue per user is ``p_k * exp(mu_k + sigma_k^2/2)``;
    the table reports its effect, chance to win and expected losses (``control_mean`` and
    ``variant_mean`` are the model's posterior means of revenue per user).

    Parameters are those of :func:`beta_binomial`, with ``priors`` a :class:`HurdlePriors`;
    ``stats`` needs columns ``positive_n, log_sum, log_sum_squares`` (mean metrics with
    ``log_stats: true``); ``metrics`` defaults to every mean metric that has them.
    """
    cfg = _cfg(draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess)
    stats = _hurdle_rows(stats, metrics)
    return _hurdle_fit(stats, control, metrics, difference, alpha, priors, cfg)


def _hurdle_rows(stats, metrics):
    need = ("positive_n", "log_sum", "log_sum_squares")
    if isinstance(stats, pd.DataFrame):
        missing = [c for c in need if c not in stats.columns]
        if missing:
            raise StatsInputError(f"the revenue hurdle model needs column(s) {missing} (mean metrics "
                                  "with `log_stats: true`)")
        if metrics is None:
            stats = stats[stats[list(need)].notna().all(axis=1)]
    return stats


def _hurdle_fit(stats, control, metrics, difference, alpha, priors, cfg, prior_only=False, prior_draws=500):
    need = ("positive_n", "log_sum", "log_sum_squares")
    _check_args(difference, alpha)
    frame = _check_table(stats, control, need)
    frame = _select_metrics(frame, metrics, ("mean",), "revenue_hurdle")
    group_cols = [c for c in GROUP_COLUMNS if c in frame.columns]
    blocks = list(frame.groupby(["metric", *group_cols], sort=False, dropna=False))
    seeds = _seeds(cfg.random_seed, len(blocks))
    rows, idatas, diags, samplers = [], {}, [], []
    for (key, block), seed in zip(blocks, seeds):
        key = key if isinstance(key, tuple) else (key,)
        base = {"metric": key[0], **dict(zip(group_cols, key[1:]))}
        _check_unique(block, ["variant"])
        if control not in set(block["variant"]):
            raise StatsInputError(f"control variant {control!r} has no row for "
                                  + ", ".join(f"{k}={v!r}" for k, v in base.items()))
        block = pd.concat([block[block["variant"] == control], block[block["variant"] != control]])
        _, bad, error = _prep_hurdle(block, priors, difference)
        names = list(block["variant"])
        if prior_only:
            data, _, _ = _prep_hurdle(block, priors, difference)
            return _prior_predictive("hurdle", len(names), data, prior_draws, seed, "arm", names)
        if error:
            rows += [_empty_row({**base, "variant": v}, error) for v in names[1:]]
            continue
        keep = [j for j in range(len(names)) if not bad[j]]
        sub = block.iloc[keep]
        data, _, _ = _prep_hurdle(sub, priors, difference)
        idata, used = _sample("hurdle", len(keep), data, cfg, seed)
        idata = _relabel(idata, "arm", [names[j] for j in keep])
        samplers.append(used)
        d = diagnose(idata, max_r_hat=cfg.max_r_hat, min_ess=cfg.min_ess)
        idatas[key] = idata
        diags.append((key, used, d.r_hat_max, d.ess_bulk_min, d.ess_tail_min, d.divergences, d.ok, d.message))
        rev = _draws(idata, "revenue_per_user")
        for pos_in_model, j in enumerate(keep[1:], start=1):
            rows.append({**base, "variant": names[j],
                         **_effect_stats(rev[:, 0], rev[:, pos_in_model], difference, alpha),
                         **_diag_cols(d), "error_message": d.message})
        rows += [_empty_row({**base, "variant": names[j]}, bad[j]) for j in range(1, len(names)) if bad[j]]
    return _finish("revenue_hurdle", rows, group_cols, idatas, diags, [], difference, alpha, priors, samplers)


# --------------------------------------------------------------------------------------------
# hierarchical model across segments
# --------------------------------------------------------------------------------------------
def _segment_effects(c: pd.DataFrame, t: pd.DataFrame, difference: str):
    """Observed per-segment effect and its standard error (delta method for the lift)."""
    nc, nt = c["n"].to_numpy(), t["n"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        mc, mt = c["sum"].to_numpy() / nc, t["sum"].to_numpy() / nt
        vc, vt = _variance(c) / nc, _variance(t) / nt  # variances of the means
        if difference == "relative":
            eff = mt / mc - 1.0
            se = np.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
        else:
            eff = mt - mc
            se = np.sqrt(vt + vc)
    return mc, mt, eff, se


def hierarchical(stats: pd.DataFrame, *, control: str = "control", metrics=None, dimensions=None,
                 difference: str = "relative", alpha: float = 0.05, likelihood: str = "auto",
                 priors: HierarchicalPriors = HierarchicalPriors(), draws: int = 1000, tune: int = 1000,
                 chains: int = 4, random_seed: int | None = None, sampler: str = "nutpie",
                 progressbar: bool = True, target_accept: float = 0.99, max_r_hat: float = 1.01,
                 min_ess: float = 400.0) -> BayesResult:
    """Treatment effect across the segments of a dimension, with partial pooling.

    For each metric x dimension x treatment variant, segment effects are
    ``theta_j = mu + tau * z_j`` (non-centred), ``z_j ~ Normal(0, 1)``:

    * ``likelihood='binomial'`` (default for proportions): ``logit p_c_j = a_j``,
      ``logit p_t_j = a_j + theta_j`` and binomial counts per arm; ``theta`` is a log odds ratio.
    * ``likelihood='normal'`` (default for means): the observed segment effect
      ``d_j ~ Normal(s * theta_j, se_j)`` (lift by the delta method, or difference of means; ``s`` is
      the control's pooled sd for absolute differences, else 1) - the "8 schools" model.

    Each segment row reports the shrunk effect, its credible interval, chance to win and expected
    losses; a ``segment='(all)'`` row reports the population effect, the segments weighted by their
    units. ``result.hyper`` holds ``mu`` (effect of a typical segment) and ``tau`` (between-segment
    sd). Segments with no units in an arm, or (normal) fewer than 2 units or zero variance, are left
    out of the fit with ``error_message`` set.

    Parameters
    ----------
    stats : DataFrame
        Sufficient statistics with ``dimension, segment`` columns: one row per metric x dimension x
        segment x variant. Rows whose dimension is missing or ``'(all)'`` are ignored.
    control, metrics, difference, alpha
        As in :func:`beta_binomial` (``metrics`` default: every proportion and mean metric).
    dimensions : str or list of str, optional
        Dimensions to analyse; default all.
    likelihood : {'auto', 'binomial', 'normal'}
        'binomial' needs proportion metrics.
    priors : HierarchicalPriors
        ``mu_sd`` (0.3), ``tau_scale`` (0.2), ``baseline_sd`` (2.0).
    draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess
        As in :func:`beta_binomial`. ``target_accept`` defaults to 0.99: with few segments the
        posterior of ``tau`` reaches zero (a funnel) and 0.8-0.95 left a few divergences on the
        sample data; the models are small, so the smaller steps cost little.

    Returns
    -------
    BayesResult
        ``idatas`` keyed by ``(metric, dimension, variant)``.
    """
    cfg = _cfg(draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess)
    return _hier(stats, control, metrics, dimensions, difference, alpha, likelihood, priors, cfg)


def _hier(stats, control, metrics, dimensions, difference, alpha, likelihood, priors, cfg,
          prior_only=False, prior_draws=500):
    _check_args(difference, alpha)
    if likelihood not in ("auto", "binomial", "normal"):
        raise StatsInputError(f"likelihood must be 'auto', 'binomial' or 'normal', got {likelihood!r}")
    if isinstance(stats, pd.DataFrame) and not {"dimension", "segment"} <= set(stats.columns):
        raise StatsInputError("the hierarchical model needs columns 'dimension' and 'segment' "
                              "(a segment breakdown of the statistics table)")
    frame = _check_table(stats, control, ())
    if "date" in frame.columns and frame["date"].nunique(dropna=True) > 1:
        raise StatsInputError("the hierarchical model takes one period: filter column 'date' to one value")
    frame = frame[frame["dimension"].notna() & (frame["dimension"].astype(str) != OVERALL)]
    frame = frame[frame["segment"].notna() & (frame["segment"].astype(str) != OVERALL)]
    if frame.empty:
        raise StatsInputError("no segment rows (dimension and segment set, not '(all)') in the statistics table")
    if dimensions is not None:
        dimensions = [dimensions] if isinstance(dimensions, str) else list(dimensions)
        unknown = sorted(set(dimensions) - set(frame["dimension"]))
        if unknown:
            raise StatsInputError(f"dimension(s) {unknown} not in column 'dimension'")
        frame = frame[frame["dimension"].isin(dimensions)]
    frame = _select_metrics(frame, metrics, ("proportion", "mean"), "hierarchical")
    if likelihood == "binomial" and (frame["kind"] != "proportion").any():
        raise StatsInputError("likelihood='binomial' needs proportion metrics; "
                              f"{sorted(frame.loc[frame['kind'] != 'proportion', 'metric'].unique())} are not")
    if likelihood == "normal" or (frame["kind"] == "mean").any():
        if "sum_squares" not in frame.columns and (frame["kind"] == "mean").any():
            raise StatsInputError("mean metrics need column 'sum_squares'")
    if "sum_squares" in frame.columns:
        frame["sum_squares"] = pd.to_numeric(frame["sum_squares"], errors="coerce")

    blocks = []
    for (metric, dim), block in frame.groupby(["metric", "dimension"], sort=False):
        _check_unique(block, ["segment", "variant"])
        for v in [v for v in block["variant"].unique() if v != control]:
            blocks.append((metric, dim, v, block))
    seeds = _seeds(cfg.random_seed, len(blocks))
    rows, idatas, diags, hyper, samplers = [], {}, [], [], []
    for (metric, dim, variant, block), seed in zip(blocks, seeds):
        base = {"metric": metric, "variant": variant, "dimension": dim}
        c = block[block["variant"] == control].set_index("segment")
        t = block[block["variant"] == variant].set_index("segment")
        segs = [s for s in c.index if s in t.index]
        missing = [s for s in list(c.index) + list(t.index) if s not in segs]
        for s in dict.fromkeys(missing):
            msg = messages.NO_UNITS_VARIANT if s in c.index else messages.NO_UNITS_CONTROL
            rows.append(_empty_row({**base, "segment": s}, msg))
        c, t = c.loc[segs], t.loc[segs]
        kind = c["kind"].iloc[0] if len(c) else "mean"
        lik = likelihood if likelihood != "auto" else ("binomial" if kind == "proportion" else "normal")
        nc, nt = c["n"].to_numpy(), t["n"].to_numpy()
        mc, mt, eff, se = _segment_effects(c.reset_index(), t.reset_index(), difference)
        bad = np.where(nc == 0, messages.NO_UNITS_CONTROL, np.where(nt == 0, messages.NO_UNITS_VARIANT, ""))
        if lik == "normal":
            bad = np.where((bad == "") & ((nc < 2) | (nt < 2)), messages.TOO_FEW_UNITS, bad)
            bad = np.where((bad == "") & ~(se > 0), messages.ZERO_VARIANCE, bad)
            if difference == "relative":
                bad = np.where((bad == "") & (mc == 0), messages.ZERO_BASELINE, bad)
        for j in np.flatnonzero(bad != ""):
            rows.append(_empty_row({**base, "segment": segs[j]}, str(bad[j])))
        ok = np.flatnonzero(bad == "")
        if ok.size == 0:
            continue
        names = [segs[j] for j in ok]
        weights = (nc + nt)[ok] / (nc + nt)[ok].sum()
        if lik == "binomial":
            yc, yt = c["sum"].to_numpy()[ok], t["sum"].to_numpy()[ok]
            pooled = (yc.sum() + 0.5) / (nc[ok].sum() + 1.0)
            data = {"y_control": yc.astype("int64"), "n_control": nc[ok].astype("int64"),
                    "y_variant": yt.astype("int64"), "n_variant": nt[ok].astype("int64"),
                    "baseline_mu": float(np.log(pooled / (1 - pooled))),
                    "baseline_sd": float(priors.baseline_sd), "mu_sd": float(priors.mu_sd),
                    "tau_scale": float(priors.tau_scale)}
            model_kind, scale, scale_name = "hier_binomial", 1.0, "log odds ratio"
        else:
            if difference == "absolute":
                vc = _variance(c.reset_index())[ok]
                scale = float(np.sqrt(np.sum((nc[ok] - 1) * vc) / max(np.sum(nc[ok] - 1), 1)))
                scale = scale if scale > 0 else 1.0
                scale_name = "absolute difference / control sd"
            else:
                scale, scale_name = 1.0, "relative lift"
            data = {"effect": eff[ok], "se": se[ok], "scale": scale, "mu_sd": float(priors.mu_sd),
                    "tau_scale": float(priors.tau_scale)}
            model_kind = "hier_normal"
        if prior_only:
            return _prior_predictive(model_kind, len(ok), data, prior_draws, seed, "segment", names)
        idata, used = _sample(model_kind, len(ok), data, cfg, seed)
        idata = _relabel(idata, "segment", names)
        samplers.append(used)
        d = diagnose(idata, max_r_hat=cfg.max_r_hat, min_ess=cfg.min_ess)
        key = (metric, dim, variant)
        idatas[key] = idata
        diags.append((key, used, d.r_hat_max, d.ess_bulk_min, d.ess_tail_min, d.divergences, d.ok, d.message))
        for pname in ("mu", "tau"):
            x = _draws(idata, pname) * scale
            lo, hi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
            hyper.append({**base, "parameter": pname, "scale": scale_name.replace(" / control sd", ""),
                          "mean": float(x.mean()), "sd": float(x.std()), "ci_lower": float(lo),
                          "ci_upper": float(hi)})
        diag_cols = _diag_cols(d)
        if lik == "binomial":
            pc, pt = _draws(idata, "p_control"), _draws(idata, "p_variant")
            for i, s in enumerate(names):
                rows.append({**base, "segment": s, **_effect_stats(pc[:, i], pt[:, i], difference, alpha),
                             **diag_cols, "error_message": d.message})
            row = _effect_stats(pc @ weights, pt @ weights, difference, alpha)
        else:
            th = _draws(idata, "theta") * scale
            for i, s in enumerate(names):
                j = ok[i]
                st = _effect_stats(np.zeros(1), th[:, i], "absolute", alpha)
                st.update(control_mean=float(mc[j]), variant_mean=float(mt[j]))
                rows.append({**base, "segment": s, **st, **diag_cols, "error_message": d.message})
            # Population effect: segments weighted by units (and, for the lift, control means).
            w = weights * (mc[ok] if difference == "relative" else 1.0)
            st = _effect_stats(np.zeros(1), th @ (w / w.sum()), "absolute", alpha)
            st.update(control_mean=float(np.sum(weights * mc[ok])), variant_mean=float(np.sum(weights * mt[ok])))
            row = st
        rows.append({**base, "segment": OVERALL, **row, **diag_cols, "error_message": d.message})
    return _finish("hierarchical", rows, ["dimension", "segment"], idatas, diags, hyper, difference,
                   alpha, priors, samplers)


# --------------------------------------------------------------------------------------------
# prior predictive
# --------------------------------------------------------------------------------------------
def _prior_predictive(kind, size, data, draws, seed, dim, labels):
    import pymc as pm

    entry = _entry(kind, size)
    with entry.lock, entry.model:
        pm.set_data(data)
        idata = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    return _relabel(idata, dim, labels)


def prior_predictive(stats: pd.DataFrame, model: str, *, control: str = "control", metric: str | None = None,
                     dimension: str | None = None, variant: str | None = None,
                     difference: str = "relative", priors=None, likelihood: str = "auto",
                     draws: int = 500, random_seed: int | None = None):
    """Prior predictive draws of one model fit (parameters and simulated data under the priors).

    Parameters
    ----------
    stats : DataFrame
        As given to the model's function; only its first block (metric, and for the hierarchical
        model dimension and variant) is used - narrow it with ``metric``, ``dimension``, ``variant``.
    model : {'beta_binomial', 'gaussian', 'revenue_hurdle', 'hierarchical'}
    priors : prior dataclass, optional
        The model's default when None.
    draws : int
        Number of prior draws.

    Returns
    -------
    arviz.InferenceData
        Groups ``prior`` (parameters) and ``prior_predictive`` (simulated observations, in the
        model's data units: counts; standardised means for 'gaussian'; the observed segment effects
        for the normal hierarchical model).
    """
    if not isinstance(stats, pd.DataFrame):
        raise StatsInputError(f"stats must be a pandas DataFrame, got {type(stats).__name__}")
    if metric is not None:
        if metric not in set(stats["metric"]):
            raise StatsInputError(f"metric {metric!r} not in column 'metric'")
        stats = stats[stats["metric"] == metric]
    if variant is not None:
        stats = stats[stats["variant"].isin([control, variant])]
    cfg = _cfg(1, 0, 1, random_seed, "nutpie", False, 0.8, 1.01, 400.0)
    common = dict(control=control, metrics=None, difference=difference, alpha=0.05, cfg=cfg,
                  extract=None, prior_only=True, prior_draws=int(draws))
    if model == "beta_binomial":
        return _multi_arm("beta_binomial", stats, prior=priors or BetaPrior(), kinds=("proportion",),
                          need=(), prep=_prep_beta, **common)
    if model == "gaussian":
        return _multi_arm("gaussian", stats, prior=priors or NormalPrior(), kinds=("mean",),
                          need=("sum_squares",), prep=_prep_gauss, **common)
    if model == "revenue_hurdle":
        return _hurdle_fit(_hurdle_rows(stats, None), control, None, difference, 0.05,
                           priors or HurdlePriors(), cfg, prior_only=True, prior_draws=int(draws))
    if model == "hierarchical":
        return _hier(stats, control, None, dimension, difference, 0.05, likelihood,
                     priors or HierarchicalPriors(), cfg, prior_only=True, prior_draws=int(draws))
    raise StatsInputError("model must be 'beta_binomial', 'gaussian', 'revenue_hurdle' or 'hierarchical', "
                          f"got {model!r}")
