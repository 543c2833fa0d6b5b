"""Convergence diagnostics: r-hat, ESS and divergences flagged, and carried into the results."""
from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

from workbench import messages
from workbench.errors import ConvergenceWarning
from workbench.stats import pymc
from workbench.stats.pymc import sampling

FAST = dict(draws=1000, tune=400, chains=2, progressbar=False)
PROP = pd.DataFrame({"metric": "conversion", "variant": ["control", "treatment_a", "treatment_b"],
                     "kind": "proportion", "n": [800, 820, 790], "sum": [80, 104, 71]})


def _fake_idata(shift: float, divergences: int):
    rng = np.random.default_rng(0)
    p = rng.beta(20, 180, size=(2, 500, 3))
    p[1] += shift  # chains disagree: r-hat >> 1
    div = np.zeros((2, 500), dtype=bool)
    div[0, :divergences] = True
    return az.from_dict(posterior={"p": p}, sample_stats={"diverging": div}, dims={"p": ["arm"]},
                        coords={"arm": [0, 1, 2]})


def test_diagnose_flags_disagreeing_chains_and_divergences():
    good = pymc.diagnose(_fake_idata(0.0, 0))
    assert good.ok and good.message == "" and good.r_hat_max < 1.01
    bad = pymc.diagnose(_fake_idata(0.05, 3))
    assert not bad.ok and bad.divergences == 3 and bad.r_hat_max > 1.1
    assert bad.message.startswith(messages.NOT_CONVERGED.split("(")[0])
    assert "r_hat" in bad.message and "3 divergent transitions" in bad.message


def test_bad_fit_is_reported_in_rows_summary_tags_and_warning(monkeypatch):
    monkeypatch.setattr(sampling, "sample", lambda *a, **k: (_fake_idata(0.05, 2), "nutpie"))
    with pytest.warns(ConvergenceWarning, match="failed MCMC diagnostics"):
        res = pymc.beta_binomial(PROP, random_seed=0, **FAST)
    t = res.to_frame()
    assert (t["error_message"].str.startswith("MCMC diagnostics failed")).all()
    assert (t["divergences"] == 2).all() and (t["r_hat_max"] > 1.1).all()
    assert not res.diagnostics_ok
    # What the readout record derives its MCMC tags from: the table's diagnostic columns.
    assert not t["diagnostics_ok"].any() and (t["sampler"] == "nutpie").all()
    assert (t["error_message"] == res.diagnostics["message"].iloc[0]).all()
    assert res.diagnostics["ok"].tolist() == [False] and res.diagnostics["divergences"].tolist() == [2]
    assert "FAILED" in str(res.summary()) and "FAILED" in res._repr_html_()


def test_too_few_draws_trigger_the_flag():
    with pytest.warns(ConvergenceWarning):
        res = pymc.beta_binomial(PROP, draws=30, tune=10, chains=2, random_seed=2, progressbar=False)
    assert not res.diagnostics_ok
    t = res.to_frame()
    assert "ess_bulk" in t["error_message"].iloc[0] and not t["diagnostics_ok"].any()
    # Independent check of the flag: ArviZ's own bulk ESS of the draws is below the threshold.
    assert float(az.ess(res.idata, var_names=["p"], method="bulk")["p"].min()) < 400


def test_diagnose_matches_arviz():
    idata = _fake_idata(0.02, 0)
    d = pymc.diagnose(idata, max_r_hat=1.5, min_ess=10)
    assert d.r_hat_max == pytest.approx(float(az.rhat(idata.posterior)["p"].max()))
    assert d.ess_bulk_min == pytest.approx(float(az.ess(idata.posterior, method="bulk")["p"].min()))
    assert d.ess_tail_min == pytest.approx(float(az.ess(idata.posterior, method="tail")["p"].min()))
    assert d.divergences == 0 and d.max_r_hat == 1.5 and d.min_ess == 10
