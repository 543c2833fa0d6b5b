"""Prior dataclasses: defaults, and invalid settings raise naming the field."""
from __future__ import annotations

import pytest

from workbench.errors import StatsInputError
from workbench.stats import pymc


@pytest.mark.parametrize("call, match", [
    (lambda: pymc.BetaPrior(0, 1), "alpha > 0 and beta > 0"),
    (lambda: pymc.BetaPrior(1, -2), "alpha > 0 and beta > 0"),
    (lambda: pymc.NormalPrior(sd=0), "NormalPrior.sd"),
    (lambda: pymc.HierarchicalPriors(tau_scale=0), "tau_scale"),
    (lambda: pymc.HierarchicalPriors(mu_sd=-1), "HierarchicalPriors.mu_sd"),
    (lambda: pymc.HierarchicalPriors(baseline_sd=0), "baseline_sd"),
    (lambda: pymc.HurdlePriors(log_mean_sd=0), "HurdlePriors.log_mean_sd"),
    (lambda: pymc.HurdlePriors(log_sd_scale=-1), "log_sd_scale"),
])
def test_invalid_priors_raise_naming_the_field(call, match):
    with pytest.raises(StatsInputError, match=match):
        call()


def test_defaults():
    assert (pymc.BetaPrior().alpha, pymc.BetaPrior().beta) == (1.0, 1.0)
    assert pymc.NormalPrior() == pymc.NormalPrior(mean=None, sd=None)
    h = pymc.HierarchicalPriors()
    assert (h.mu_sd, h.tau_scale, h.baseline_sd) == (0.3, 0.2, 2.0)
    hp = pymc.HurdlePriors()
    assert hp.conversion == pymc.BetaPrior() and hp.log_mean is None
    assert (hp.log_mean_sd, hp.log_sd_scale) == (2.0, 2.0)
