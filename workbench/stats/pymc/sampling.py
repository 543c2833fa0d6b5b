"""Model programs, their compile cache and MCMC sampling (nutpie first, else PyMC's NUTS).

Each model kind is built once per shape (number of arms or segments) with its data and prior
parameters as ``pm.Data``; nutpie compiles it once and later fits pass new data through
``CompiledPyMCModel.with_data``. PyMC, PyTensor and nutpie are imported here, on first use only.
Compiled code persists across processes through :mod:`.cache` (PyTensor's compile dir and numba's
cache under ``WORKBENCH_CACHE``, one locked entry per model kind and shape).
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.errors import StatsInputError, WorkbenchWarning

__all__ = ["SAMPLERS", "Sampling", "settings", "sample", "prior_draws", "seeds", "relabel",
           "clear_model_cache"]

SAMPLERS = ("nutpie", "pymc")


# --------------------------------------------------------------------------------------------
# model programs (data and prior parameters are pm.Data, so one build serves every fit)
# --------------------------------------------------------------------------------------------
def _data(pm, dim: str, **values):
    """A ``pm.Data`` of each value (arrays along ``dim``): placeholders later fits set."""
    return [pm.Data(name, v, dims=dim if np.ndim(v) else None) for name, v in values.items()]


def _beta_binomial(pm, size: int):
    with pm.Model(coords={"arm": np.arange(size)}) as model:
        successes, trials, a, b = _data(pm, "arm", successes=np.zeros(size, dtype="int64"),
                                        trials=np.ones(size, dtype="int64"), prior_alpha=1.0,
                                        prior_beta=1.0)
        p = pm.Beta("p", a, b, dims="arm")
        pm.Binomial("y", n=trials, p=p, observed=successes, dims="arm")
    return model


def _gaussian(pm, size: int):
    # Standardised units (the caller maps back): the sampler sees posteriors of unit scale.
    with pm.Model(coords={"arm": np.arange(size)}) as model:
        mean, se, m0, s0 = _data(pm, "arm", mean=np.zeros(size), se=np.ones(size),
                                 prior_mean=0.0, prior_sd=10.0)
        mu = pm.Normal("mu", m0, s0, dims="arm")
        pm.Normal("y", mu, se, observed=mean, dims="arm")
    return model


def _effects(pm, mu_sd, tau_scale):
    """Non-centred segment effects ``theta = mu + tau * z`` of the hierarchical models."""
    mu = pm.Normal("mu", 0.0, mu_sd)
    tau = pm.HalfNormal("tau", tau_scale)
    z = pm.Normal("z", 0.0, 1.0, dims="segment")
    return mu, tau, z


def _hier_normal(pm, size: int):
    with pm.Model(coords={"segment": np.arange(size)}) as model:
        effect, se, scale, mu_sd, tau_scale = _data(pm, "segment", effect=np.zeros(size),
                                                    se=np.ones(size), scale=1.0, mu_sd=0.3,
                                                    tau_scale=0.2)
        mu, tau, z = _effects(pm, mu_sd, tau_scale)
        theta = pm.Deterministic("theta", mu + tau * z, dims="segment")
        pm.Normal("y", scale * theta, se, observed=effect, dims="segment")
    return model


def _hier_binomial(pm, size: int):
    with pm.Model(coords={"segment": np.arange(size)}) as model:
        y_c, n_c, y_t, n_t, base_mu, base_sd, mu_sd, tau_scale = _data(
            pm, "segment", y_control=np.zeros(size, dtype="int64"),
            n_control=np.ones(size, dtype="int64"), y_variant=np.zeros(size, dtype="int64"),
            n_variant=np.ones(size, dtype="int64"), baseline_mu=0.0, baseline_sd=2.0, mu_sd=0.3,
            tau_scale=0.2)
        mu, tau, z = _effects(pm, mu_sd, tau_scale)
        alpha = pm.Normal("alpha", base_mu, base_sd, dims="segment")
        theta = pm.Deterministic("theta", mu + tau * z, dims="segment")
        p_c = pm.Deterministic("p_control", pm.math.invlogit(alpha), dims="segment")
        p_t = pm.Deterministic("p_variant", pm.math.invlogit(alpha + theta), dims="segment")
        pm.Binomial("y_c", n=n_c, p=p_c, observed=y_c, dims="segment")
        pm.Binomial("y_t", n=n_t, p=p_t, observed=y_t, dims="segment")
    return model


def _hurdle(pm, size: int):
    with pm.Model(coords={"arm": np.arange(size)}) as model:
        # m: positive_n as float.
        n, pos, m, log_mean, log_ss, a, b, m0, s0, sig_scale = _data(
            pm, "arm", n=np.full(size, 2, dtype="int64"), positive_n=np.ones(size, dtype="int64"),
            m=np.full(size, 2.0), log_mean=np.zeros(size), log_ss=np.ones(size), prior_alpha=1.0,
            prior_beta=1.0, prior_log_mean=0.0, prior_log_mean_sd=2.0, prior_log_sd_scale=2.0)
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
    return model


_PROGRAMS = {"beta_binomial": _beta_binomial, "gaussian": _gaussian, "hier_normal": _hier_normal,
             "hier_binomial": _hier_binomial, "hurdle": _hurdle}


def _build(kind: str, size: int):
    from workbench.stats.pymc import cache

    cache.use_cache_dirs()  # before PyTensor's first import: its compile dir is shared and kept
    import pymc as pm

    return _PROGRAMS[kind](pm, size)


# --------------------------------------------------------------------------------------------
# compile cache
# --------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    kind: str
    size: int
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
            entry = _CACHE[(kind, size)] = _Entry(kind, size, _build(kind, size))
        return entry


def _nutpie_model(entry: _Entry):
    """The compiled nutpie model of an entry, compiled on first use; None if nutpie fails."""
    with entry.lock:
        if entry.compiled is None and entry.nutpie_error is None:
            try:
                entry.compiled = _compile(entry)
            except Exception as exc:  # noqa: BLE001 - any failure means: use PyMC's sampler
                entry.nutpie_error = f"{type(exc).__name__}: {exc}"
        return entry.compiled


def _compile(entry: _Entry):
    """nutpie's compiled model of ``entry``, under the disk cache's lock for its key.

    Holding the per-key lock, a second job waits for the first and then loads the code it left in
    the compile dirs; the entry records the compiled graph's fingerprint and compile time. The
    model is compiled by :func:`.native.compile_model` (nutpie's model with callbacks numba
    caches under ``<cache>/native``), else by ``nutpie.compile_pymc_model``.
    """
    import nutpie

    from workbench.stats.pymc import cache

    key = cache.model_key(entry.kind, entry.size)
    with cache.locked(key):
        known = cache.read(key)
        start = time.perf_counter()
        try:  # callbacks numba caches on disk (what makes a warm process fast) ...
            from workbench.stats.pymc import native

            compiled = native.compile_model(entry.model, cache.cache_dir() / "native")
        except Exception:  # noqa: BLE001 - ... else nutpie's own compile (same model and draws)
            compiled = nutpie.compile_pymc_model(entry.model)
        seconds = time.perf_counter() - start
        # the fingerprint is a record of what was compiled, not a check: PyTensor's printed
        # graph is not byte-stable across processes (measured), so it cannot invalidate entries
        if known is None:
            cache.write(key, fingerprint=cache.fingerprint(compiled),
                        compile_seconds=round(seconds, 3))
    return compiled


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """Sampler settings of one model call (checked when built)."""

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


def settings(draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat,
             min_ess) -> Sampling:
    """:class:`Sampling` from a model function's keyword arguments, coerced to their types."""
    return Sampling(int(draws), int(tune), int(chains), random_seed, sampler, bool(progressbar),
                    float(target_accept), float(max_r_hat), float(min_ess))


def sample(kind: str, size: int, data: dict, cfg: Sampling, seed: int | None):
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
        warnings.warn(f"nutpie {problem}; using PyMC's default sampler", WorkbenchWarning,
                      stacklevel=5)
    import pymc as pm

    with entry.lock, entry.model:
        pm.set_data(data)
        idata = pm.sample(draws=cfg.draws, tune=cfg.tune, chains=cfg.chains,
                          cores=min(cfg.chains, os.cpu_count() or 1), random_seed=seed,
                          progressbar=cfg.progressbar, target_accept=cfg.target_accept,
                          compute_convergence_checks=False, return_inferencedata=True)
    return idata, "pymc"


def prior_draws(kind: str, size: int, data: dict, draws: int, seed: int | None, dim: str, labels):
    """Prior predictive draws of the cached model of ``(kind, size)``, ``dim`` relabelled."""
    import pymc as pm

    entry = _entry(kind, size)
    with entry.lock, entry.model:
        pm.set_data(data)
        idata = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    return relabel(idata, dim, labels)


def relabel(idata, dim: str, labels) -> Any:
    """``idata`` with the integer coordinates of ``dim`` replaced by ``labels``."""
    return idata.assign_coords({dim: list(labels)})


def seeds(random_seed: int | None, count: int) -> list:
    """One independent seed per fit, derived from ``random_seed`` (all None when it is None)."""
    if random_seed is None:
        return [None] * count
    state = np.random.SeedSequence(random_seed).generate_state(max(count, 1))
    return [int(s) for s in state[:count]]
