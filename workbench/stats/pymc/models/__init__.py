"""The PyMC models: multi-arm (Beta-Binomial, Gaussian), revenue hurdle, hierarchical segments."""
from __future__ import annotations

from workbench.stats.pymc.models.hierarchical import hierarchical
from workbench.stats.pymc.models.hurdle import revenue_hurdle
from workbench.stats.pymc.models.multi_arm import beta_binomial, gaussian
from workbench.stats.pymc.models.predictive import prior_predictive

__all__ = ["beta_binomial", "gaussian", "revenue_hurdle", "hierarchical", "prior_predictive"]
