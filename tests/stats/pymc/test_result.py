"""BayesResult: its table (columns, degenerate rows, diagnostics) and its one summary() type."""
from __future__ import annotations

import warnings
from html import escape

import numpy as np
import pandas as pd
import pytest

from workbench import format as fmt
from workbench import messages
from workbench.errors import ConvergenceWarning, WorkbenchError
from workbench.stats import pymc
from workbench.stats.schema import OUTPUT_COLUMNS
from workbench.summary import Summary

FAST = dict(draws=1000, tune=400, chains=2, progressbar=False)
PROP = pd.DataFrame({"metric": "conversion", "variant": ["control", "treatment_a", "treatment_b"],
                     "kind": "proportion", "n": [800, 820, 790], "sum": [80, 104, 71]})


def test_result_shape_and_degenerate_rows():
    frame = pd.concat([PROP.assign(segment="x"),
                       PROP.assign(segment="y", n=[0, 100, 100], sum=[0, 10, 12]),
                       PROP.assign(segment="z", n=[100, 0, 100], sum=[10, 0, 12])])
    frame = frame.rename(columns={"segment": "date"})  # a grouping column analysed block by block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = pymc.beta_binomial(frame, random_seed=3, **FAST)
    t = res.to_frame()
    assert list(t.columns) == [*OUTPUT_COLUMNS, "date", *pymc.DIAGNOSTIC_COLUMNS]
    assert t["diagnostics_ok"].dtype == bool and t["sampler"].map(type).eq(str).all()
    by = t.set_index(["date", "variant"])
    assert by.loc[("y", "treatment_a"), "error_message"] == messages.NO_UNITS_CONTROL
    assert by.loc[("z", "treatment_a"), "error_message"] == messages.NO_UNITS_VARIANT
    assert np.isfinite(by.loc[("z", "treatment_b"), "effect"])
    # Rows not fitted: no diagnostics, no sampler, and no failed fit to report.
    empty = by.loc[[("y", "treatment_a"), ("y", "treatment_b"), ("z", "treatment_a")]]
    assert empty["r_hat_max"].isna().all() and (empty["sampler"] == "").all()
    assert empty["diagnostics_ok"].all()
    assert (by.loc[("z", "treatment_b"), "sampler"] == "nutpie")
    assert set(res.idatas) == {("conversion", "x"), ("conversion", "z")}
    with pytest.raises(WorkbenchError, match="idatas"):
        _ = res.idata
    html, text = res._repr_html_(), str(res.summary())
    # one table row per result row (+ the header), the error messages shown in both renderings
    assert html.count("<tr") == len(t) + 1
    for message in (messages.NO_UNITS_CONTROL, messages.NO_UNITS_VARIANT):
        assert message in text and escape(message) in html


def test_summary_is_the_package_summary_type():
    res = pymc.beta_binomial(PROP, random_seed=1, **FAST)
    s = res.summary()
    assert isinstance(s, Summary) and str(res) == str(s)
    lines = str(s).splitlines()
    assert lines[0] == "Bayesian beta_binomial model (PyMC)" and set(lines[1]) == {"="}
    assert "MCMC diagnostics OK for 1 fit(s) (sampler: nutpie)." in s
    assert "95% equal-tailed credible intervals" in s
    assert s._repr_html_() == res._repr_html_() and s.html.startswith("<div><h4>Bayesian")
    t = res.to_frame()
    for v in ("treatment_a", "treatment_b"):
        effect = t.loc[t["variant"] == v, "effect"].iloc[0]
        assert fmt.effect(effect, True) in s.html  # the numbers shown are the table's
    assert res.to_frame() is not res.table and res.to_frame().equals(res.table)
