"""Bayesian models in PyMC on sufficient statistics: hierarchical segments, hurdle revenue, multi-arm.

Kept apart from the numpy core: ``import workbench.stats`` (and this package) never imports PyMC;
fitting a model does. Every model works from the per-variant (and per-segment) sufficient
statistics of :mod:`workbench.stats.schema`, so its cost grows with the number of arms or
segments, never users.

>>> from workbench.stats import pymc
>>> res = pymc.revenue_hurdle(stats, random_seed=0)       # doctest: +SKIP
>>> res.summary(); res.to_frame(); res.idata               # doctest: +SKIP

Models (:mod:`.models`)
-----------------------
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
:func:`prior_predictive`
    Draws from any of them under the priors alone.

Results are :class:`BayesResult` objects (:mod:`.result`): a tidy table in the statistics engine's
``OUTPUT_COLUMNS`` plus :data:`DIAGNOSTIC_COLUMNS` (from :mod:`.diagnostics`), the ArviZ
``InferenceData`` of every fit, and ``summary()``. Priors are dataclasses (:mod:`.priors`).
Sampling (:mod:`.sampling`) uses nutpie (compiled once per model kind and shape, then re-used with
new data through ``CompiledPyMCModel.with_data``), else PyMC's own NUTS.
"""
from __future__ import annotations

import warnings

from workbench.stats.pymc.diagnostics import Diagnostics, diagnose
from workbench.stats.pymc.models import (
                                         beta_binomial,
                                         gaussian,
                                         hierarchical,
                                         prior_predictive,
                                         revenue_hurdle,
)
from workbench.stats.pymc.priors import BetaPrior, HierarchicalPriors, HurdlePriors, NormalPrior
from workbench.stats.pymc.result import DIAGNOSTIC_COLUMNS, BayesResult
from workbench.stats.pymc.sampling import clear_model_cache

# ArviZ announces its 1.0 refactor with a FutureWarning on import (PyMC imports it when a model
# is fitted); it says nothing about the models and lands as a stderr box in every report.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor",
                        category=FutureWarning)

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
