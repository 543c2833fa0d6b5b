"""Prior settings of the PyMC models: frozen dataclasses, checked when built."""
from __future__ import annotations

from dataclasses import dataclass, field

from workbench.errors import StatsInputError

__all__ = ["BetaPrior", "NormalPrior", "HierarchicalPriors", "HurdlePriors"]


def _positive(obj, *names: str) -> None:
    for name in names:
        if not getattr(obj, name) > 0:
            raise StatsInputError(f"{type(obj).__name__}.{name} must be > 0, "
                                  f"got {getattr(obj, name)}")


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
    """Priors of :func:`~workbench.stats.pymc.hierarchical`, on the model's effect scale.

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
        _positive(self, "mu_sd", "tau_scale", "baseline_sd")


@dataclass(frozen=True)
class HurdlePriors:
    """Priors of :func:`~workbench.stats.pymc.revenue_hurdle`, the same for every variant.

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
        _positive(self, "log_mean_sd", "log_sd_scale")
