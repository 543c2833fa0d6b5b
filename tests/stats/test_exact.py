"""Exact tests for proportions: scipy p-values, statsmodels intervals, size by simulation."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep

from workbench.errors import ParameterError
from workbench.stats import analyze


def _props(xt, nt, xc, nc):
    return pd.DataFrame({"metric": "c", "variant": ["control", "t"], "kind": "proportion",
                         "n": [nc, nt], "sum": [xc, xt]})


def test_fisher_issue_example():
    r = analyze(_props(19, 53, 13, 47), exact="fisher").table.iloc[0]
    assert r["test"] == "fisher"
    assert round(r["p_value"], 6) == 0.399995


@pytest.mark.parametrize("test", ["fisher", "barnard", "boschloo"])
@pytest.mark.parametrize("alt,sp", [("two-sided", "two-sided"), ("greater", "greater"),
                                    ("less", "less")])
def test_p_values_equal_scipy(test, alt, sp):
    xt, nt, xc, nc = 9, 20, 3, 18
    r = analyze(_props(xt, nt, xc, nc), exact=test, alternative=alt).table.iloc[0]
    table = [[xt, xc], [nt - xt, nc - xc]]
    f = {"fisher": stats.fisher_exact, "barnard": stats.barnard_exact,
         "boschloo": stats.boschloo_exact}[test]
    assert r["p_value"] == pytest.approx(f(table, alternative=sp).pvalue, rel=1e-12)


@pytest.mark.parametrize("counts", [(19, 53, 13, 47), (0, 20, 3, 25), (5, 10, 1, 12)])
def test_intervals_equal_statsmodels(counts):
    xt, nt, xc, nc = counts
    a = analyze(_props(*counts), exact="fisher", difference="absolute").table.iloc[0]
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, method="newcomb")
    assert (a["ci_lower"], a["ci_upper"]) == pytest.approx((lo, hi), abs=1e-12)
    r = analyze(_props(*counts), exact="fisher").table.iloc[0]
    lo, hi = confint_proportions_2indep(xt, nt, xc, nc, compare="ratio", method="score")
    assert (r["ci_lower"], r["ci_upper"]) == pytest.approx((lo - 1, hi - 1), abs=1e-9)


def test_auto_only_small_rows():
    df = pd.concat([_props(3, 20, 1, 22), _props(500, 5000, 480, 5000).assign(metric="big")])
    t = analyze(df, exact="auto").table.set_index("metric")
    assert t.loc["c", "test"] == "boschloo" and t.loc["big", "test"] == "z"


def test_margin_p_of_exact_rows_matches_statsmodels_score_test():
    from statsmodels.stats.proportion import test_proportions_2indep
    df = _props(9, 20, 8, 18).assign(margin=0.2)
    r = analyze(df, exact="fisher").table.iloc[0]
    res = test_proportions_2indep(9, 20, 8, 18, value=0.8, compare="ratio", method="score",
                                  alternative="larger")
    assert r["margin_p_value"] == pytest.approx(res.pvalue, rel=1e-9)


def test_exact_needs_frequentist():
    with pytest.raises(ParameterError, match="exact"):
        analyze(_props(3, 20, 1, 22), exact="fisher", method="sequential")
    with pytest.raises(ParameterError, match="exact"):
        analyze(_props(3, 20, 1, 22), exact="mcnemar")


@pytest.mark.slow
def test_exact_tests_size_at_most_alpha_on_small_n():
    rng = np.random.default_rng(3)
    reps, n, p, alpha = 400, 15, 0.3, 0.05
    xt, xc = rng.binomial(n, p, reps), rng.binomial(n, p, reps)
    df = pd.DataFrame([{"metric": f"m{i}", "variant": v, "kind": "proportion", "n": n, "sum": x}
                       for i in range(reps) for v, x in (("control", xc[i]), ("t", xt[i]))])
    se = np.sqrt(alpha * (1 - alpha) / reps)
    for test in ("fisher", "boschloo"):
        t = analyze(df, exact=test, difference="absolute", warn=False).table
        assert (t["p_value"] < alpha).mean() <= alpha + 2 * se
