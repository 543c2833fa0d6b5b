"""Prior predictive draws of any of the PyMC models (what the priors say before the data)."""
from __future__ import annotations

import pandas as pd

from workbench.errors import StatsInputError
from workbench.stats.pymc import sampling
from workbench.stats.pymc.models import hierarchical, hurdle, multi_arm
from workbench.stats.pymc.priors import BetaPrior, HierarchicalPriors, HurdlePriors, NormalPrior

__all__ = ["prior_predictive"]

MODELS = ("beta_binomial", "gaussian", "revenue_hurdle", "hierarchical")


def prior_predictive(stats: pd.DataFrame, model: str, *, control: str = "control",
                     metric: str | None = None, dimension: str | None = None,
                     variant: str | None = None, difference: str = "relative", priors=None,
                     likelihood: str = "auto", draws: int = 500, random_seed: int | None = None):
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
    if model not in MODELS:
        raise StatsInputError(f"model must be 'beta_binomial', 'gaussian', 'revenue_hurdle' or "
                              f"'hierarchical', got {model!r}")
    if metric is not None:
        if metric not in set(stats["metric"]):
            raise StatsInputError(f"metric {metric!r} not in column 'metric'")
        stats = stats[stats["metric"] == metric]
    if variant is not None:
        stats = stats[stats["variant"].isin([control, variant])]
    cfg = sampling.settings(1, 0, 1, random_seed, "nutpie", False, 0.8, 1.01, 400.0)
    prior_draws = int(draws)
    if model == "beta_binomial":
        return multi_arm.fit("beta_binomial", stats, control, None, difference, 0.05,
                             priors or BetaPrior(), cfg, ("proportion",), (), multi_arm.prep_beta,
                             None, prior_only=True, prior_draws=prior_draws)
    if model == "gaussian":
        return multi_arm.fit("gaussian", stats, control, None, difference, 0.05,
                             priors or NormalPrior(), cfg, ("mean",), ("sum_squares",),
                             multi_arm.prep_gauss, None, prior_only=True, prior_draws=prior_draws)
    if model == "revenue_hurdle":
        return hurdle.fit(hurdle.hurdle_rows(stats, None), control, None, difference, 0.05,
                          priors or HurdlePriors(), cfg, prior_only=True, prior_draws=prior_draws)
    return hierarchical.fit(stats, control, None, dimension, difference, 0.05, likelihood,
                            priors or HierarchicalPriors(), cfg, prior_only=True,
                            prior_draws=prior_draws)
