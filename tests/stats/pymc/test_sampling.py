"""Sampling: the compile cache is re-used across fits, seeds, nutpie's fallback, lazy PyMC."""
from __future__ import annotations

import subprocess
import sys
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

from workbench.errors import ConvergenceWarning, WorkbenchWarning
from workbench.stats import pymc
from workbench.stats.pymc import sampling

FAST = dict(draws=1000, tune=400, chains=2, progressbar=False)
PROP = pd.DataFrame({"metric": "conversion", "variant": ["control", "treatment_a", "treatment_b"],
                     "kind": "proportion", "n": [800, 820, 790], "sum": [80, 104, 71]})


def _within(estimate, truth, mcse, k=4.0):
    assert abs(estimate - truth) <= k * mcse, f"{estimate} vs {truth} (mcse {mcse})"


def _mcse_mean(x_chain_draw):
    """Monte Carlo standard error of the mean of (chain, draw) samples."""
    return float(np.ravel(az.mcse(np.asarray(x_chain_draw, dtype=float), method="mean"))[0])



def _mean_segments(rng, n_seg=20, mu=0.05, tau=0.03, n=300, base=10.0, sd=5.0):
    truth = rng.normal(mu, tau, n_seg)
    rows = []
    for j in range(n_seg):
        for v, lift in (("control", 0.0), ("treatment", truth[j])):
            y = rng.normal(base * (1 + lift), sd, n)
            rows.append(dict(metric="orders_per_user", variant=v, kind="mean", n=n, sum=y.sum(),
                             sum_squares=(y**2).sum(), dimension="country", segment=f"c{j:02d}"))
    return pd.DataFrame(rows)


def test_hierarchical_second_fit_of_same_shape_reuses_compiled_model(monkeypatch):
    frame = _mean_segments(np.random.default_rng(5))
    if ("hier_normal", 20) not in sampling._CACHE:  # compiled already when test_models ran first
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pymc.hierarchical(frame, random_seed=0, **FAST)
    entry = sampling._CACHE[("hier_normal", 20)]
    compiled = entry.compiled
    assert compiled is not None

    def refuse(*args, **kwargs):
        raise AssertionError("recompiled")

    import nutpie

    from workbench.stats.pymc import native

    monkeypatch.setattr(nutpie, "compile_pymc_model", refuse)
    monkeypatch.setattr(native, "compile_model", refuse)
    # Different segment names and much larger effects: new data flows through with_data.
    shifted = frame.copy()
    shifted["segment"] = shifted["segment"].str.replace("c", "region_")
    sel = shifted.variant == "treatment"
    shifted.loc[sel, "sum"] *= 1.5
    shifted.loc[sel, "sum_squares"] *= 1.5**2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = pymc.hierarchical(shifted, random_seed=1, **FAST)
    assert sampling._CACHE[("hier_normal", 20)].compiled is compiled
    t = res.to_frame()
    assert t["segment"].str.startswith("region_").sum() == 20
    assert t.loc[t["segment"] == "(all)", "effect"].iloc[0] > 0.3


def test_seeds_are_reproducible_and_distinct():
    a, b = sampling.seeds(7, 5), sampling.seeds(7, 5)
    assert a == b and len(set(a)) == 5
    assert sampling.seeds(7, 2) == a[:2]  # a fit's seed does not depend on how many follow
    assert sampling.seeds(None, 3) == [None, None, None] and sampling.seeds(1, 0) == []


def test_same_seed_same_draws():
    r1 = pymc.beta_binomial(PROP, random_seed=5, **FAST)
    r2 = pymc.beta_binomial(PROP, random_seed=5, **FAST)
    np.testing.assert_array_equal(r1.idata.posterior["p"].values, r2.idata.posterior["p"].values)
    assert ("beta_binomial", 3) in sampling._CACHE


def test_importing_the_stats_core_does_not_import_pymc():
    code = ("import sys, workbench.stats; from workbench.stats import pymc; "
            "pymc.BetaPrior(); assert 'pymc' not in sys.modules and 'pytensor' not in sys.modules "
            "and 'nutpie' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_falls_back_to_pymc_sampler_when_nutpie_fails(monkeypatch):
    import nutpie

    def broken(*args, **kwargs):
        raise RuntimeError("no numba here")

    from workbench.stats.pymc import native

    monkeypatch.setattr(nutpie, "compile_pymc_model", broken)
    monkeypatch.setattr(native, "compile_model", broken)
    pymc.clear_model_cache()
    frame = PROP.iloc[:2]
    with pytest.warns(WorkbenchWarning, match="PyMC's default sampler"):
        res = pymc.beta_binomial(frame, random_seed=3, draws=1000, tune=500, chains=2, progressbar=False,
                               min_ess=100)
    assert res.sampler == "pymc" and res.diagnostics["sampler"].tolist() == ["pymc"]
    a, b = 1 + frame["sum"].to_numpy(), 1 + frame["n"].to_numpy() - frame["sum"].to_numpy()
    p = res.idata.posterior["p"].values
    for k in range(2):
        _within(p[:, :, k].mean(), a[k] / (a[k] + b[k]), _mcse_mean(p[:, :, k]))
    pymc.clear_model_cache()
