"""Margins: one-sided shifted-null tests against scipy, closed forms and Monte Carlo."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench.errors import StatsInputError
from workbench.stats import analyze, sequential


def _means(margin=0.5, scale="absolute", kind=None, hib=True, mt=10.2, mc=10.0):
    rows = []
    for v, m, n, sd in (("control", mc, 200, 2.0), ("t", mt, 220, 2.5)):
        s = m * n
        rows.append({"metric": "x", "variant": v, "kind": "mean", "n": n, "sum": s,
                     "sum_squares": sd**2 * (n - 1) + s**2 / n, "margin": margin,
                     "margin_scale": scale, "margin_kind": kind, "higher_is_better": hib})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("hib,kind", [(True, None), (False, None), (True, "superiority"),
                                      (False, "superiority")])
def test_frequentist_margin_equals_scipy_welch_one_sided(hib, kind):
    df = _means(kind=kind, hib=hib)
    r = analyze(df, difference="absolute").table.iloc[0]
    b = -0.5 if kind is None else 0.5
    # shifted null: H0 s*(mu_t - mu_c) <= b  <=>  Welch test of (t - s*b) vs control
    s = 1 if hib else -1
    res = stats.ttest_ind_from_stats(10.2 - s * b, 2.5, 220, 10.0, 2.0, 200, equal_var=False,
                                     alternative="greater" if hib else "less")
    assert r["margin_p_value"] == pytest.approx(res.pvalue, rel=1e-9)
    assert r["margin"] == 0.5 and r["test"] == "welch"
    assert r["margin_kind"] == (kind or "non-inferiority")


def test_relative_margin_converted_with_control_mean():
    rel = analyze(_means(margin=0.05, scale="relative"), difference="absolute").table.iloc[0]
    ab = analyze(_means(margin=0.5, scale="absolute"), difference="absolute").table.iloc[0]
    assert rel["margin"] == pytest.approx(0.05 * 10.0)
    assert rel["margin_p_value"] == pytest.approx(ab["margin_p_value"])
    r = analyze(_means(margin=0.5, scale="absolute"), difference="relative").table.iloc[0]
    assert r["margin"] == pytest.approx(0.05)


def test_no_margin_gives_nan():
    df = _means().drop(columns=["margin"])
    r = analyze(df).table.iloc[0]
    assert np.isnan(r["margin"]) and np.isnan(r["margin_p_value"])


def test_sequential_margin_matches_confidence_sequence():
    df = _means(margin=0.1)
    r = analyze(df, method="sequential", difference="absolute", alpha=0.05).table.iloc[0]
    # reject H0 (effect <= -m) exactly when the level-alpha CS lies above -m
    e, se, n = r["effect"], r["se"], r["control_n"] + r["variant_n"]
    for a in (0.01, 0.05, 0.2, 0.5):
        h = sequential.halfwidth(se, n, a, sequential.rho_squared(0.05, 5000))
        assert (r["margin_p_value"] < a) == (e - h > -0.1)


def test_bayesian_gaussian_margin_chance_closed_form():
    r = analyze(_means(margin=0.5), method="bayesian", difference="absolute",
                prior="flat").table.iloc[0]
    assert r["margin_chance"] == pytest.approx(stats.norm.sf(-0.5, r["effect"], r["se"]))


@pytest.mark.parametrize("difference,hib", [("absolute", True), ("relative", False),
                                            ("relative", True), ("absolute", False)])
def test_bayesian_beta_margin_chance_against_monte_carlo(difference, hib):
    df = pd.DataFrame({"metric": "c", "variant": ["control", "t"], "kind": "proportion",
                       "n": [400, 380], "sum": [80, 70], "margin": 0.1,
                       "margin_scale": "relative", "higher_is_better": hib})
    r = analyze(df, method="bayesian", difference=difference).table.iloc[0]
    rng = np.random.default_rng(1)
    pc, pt = rng.beta(81, 321, 400_000), rng.beta(71, 311, 400_000)
    eff = pt - pc if difference == "absolute" else pt / pc - 1
    m = 0.1 * 0.2 if difference == "absolute" else 0.1
    truth = np.mean((eff if hib else -eff) > -m)
    assert r["margin_chance"] == pytest.approx(truth, abs=3e-3)


def test_bad_margin_raises_naming_column():
    with pytest.raises(StatsInputError, match="margin"):
        analyze(_means(margin=-1.0))
    with pytest.raises(StatsInputError, match="margin_kind"):
        analyze(_means(kind="better"))


@pytest.mark.slow
def test_margin_tests_size_at_the_boundary():
    """At the boundary (true effect = -margin) the one-sided test rejects at rate alpha."""
    rng = np.random.default_rng(7)
    reps, n, alpha, m = 4000, 200, 0.05, 0.3
    y_c = rng.normal(10.0, 2.0, (reps, n))
    y_t = rng.normal(10.0 - m, 2.0, (reps, n))
    rows = []
    for i in range(reps):
        for v, y in (("control", y_c[i]), ("t", y_t[i])):
            rows.append({"metric": f"m{i}", "variant": v, "kind": "mean", "n": n,
                         "sum": y.sum(), "sum_squares": (y**2).sum(), "margin": m,
                         "margin_scale": "absolute"})
    df = pd.DataFrame(rows)
    se = np.sqrt(alpha * (1 - alpha) / reps)
    freq = analyze(df, difference="absolute").table["margin_p_value"]
    assert abs((freq < alpha).mean() - alpha) < 3 * se
    seq = analyze(df, method="sequential", difference="absolute").table["margin_p_value"]
    assert (seq < alpha).mean() <= alpha + 3 * se


def test_margin_through_definitions_and_experiment():
    import workbench as wb
    from workbench.errors import MetricDefinitionError
    from workbench.metrics.definition import parse_metric

    m = parse_metric({"name": "rev", "kind": "mean", "column": "rev",
                      "margin": {"absolute": 0.5}, "margin_kind": "superiority"})
    assert (m.margin, m.margin_scale, m.margin_kind) == (0.5, "absolute", "superiority")
    assert wb.mean("rev", margin={"relative": 0.01}).margin == 0.01
    with pytest.raises(MetricDefinitionError, match="margin"):
        parse_metric({"name": "rev", "kind": "mean", "column": "rev", "margin": 0.5})
    rng = np.random.default_rng(0)
    units = pd.DataFrame({"variant": np.repeat(["control", "t"], 300),
                          "rev": rng.normal(10, 2, 600)})
    exp = wb.Experiment.from_units(units, metrics={
        "rev": wb.mean("rev", margin={"relative": 0.05}, higher_is_better=False)})
    r = exp.analyze(timeseries=False, difference="absolute").results.iloc[0]
    assert r["margin"] == pytest.approx(0.05 * r["control_mean"])
    res = stats.ttest_ind(units.rev[300:] - r["margin"], units.rev[:300], equal_var=False,
                          alternative="less")
    assert r["margin_p_value"] == pytest.approx(res.pvalue, rel=1e-6)
