"""Arm versus arm (readout.arms): the pairwise comparison against scipy/statsmodels on the two
arms' unit data, chance to be best against a Monte Carlo of posteriors computed here, and the
decision on the bundled sample."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import workbench as wb
from workbench.readout import arms
from workbench.readout.decision import DecisionRule
from workbench.readout.experiment import Experiment


def _units(n=4000, seed=3, p=(0.10, 0.13, 0.12), mu=(10.0, 10.6, 10.2), sd=(4.0, 5.0, 4.5),
           wait=(10.0, 9.6, 9.65)):
    rng = np.random.default_rng(seed)
    names = ("control", "a", "b")
    rows = []
    for name, pi, m, s, w in zip(names, p, mu, sd, wait):
        rows.append(pd.DataFrame({"variant": name, "conv": rng.random(n) < pi,
                                  "value": rng.normal(m, s, n),
                                  "wait": rng.gamma(2.0, w / 2.0, n)}))
    return pd.concat(rows, ignore_index=True)


def _experiment(df, **roles):
    metrics = {"conv": wb.proportion("conv", role=roles.get("conv", "primary")),
               "value": wb.mean("value", role=roles.get("value", "primary")),
               "wait": wb.mean("wait", role=roles.get("wait", "secondary"),
                               higher_is_better=False)}
    return Experiment.from_units(df, "variant", metrics)


def _analyze(exp, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exp.analyze(timeseries=False, **kw)


@pytest.fixture(scope="module")
def units():
    return _units()


def _row(table, metric, x, y):
    r = table[(table.metric == metric) & (table.variant == x) & (table.versus == y)]
    assert len(r) == 1, table[["metric", "variant", "versus"]]
    return r.iloc[0]


def test_arm_versus_arm_is_welch_on_the_two_arms_units(units):
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    res = _analyze(_experiment(units), difference="absolute")
    table = res.arms
    assert list(table.columns[:10]) == list(arms.COLUMNS)
    # a has the larger mean primary effect, so it is the `variant` of the pair
    row = _row(table, "value", "a", "b")
    x = units.loc[units.variant == "a", "value"].to_numpy()
    y = units.loc[units.variant == "b", "value"].to_numpy()
    welch = st.ttest_ind(x, y, equal_var=False)
    lo, hi = CompareMeans(DescrStatsW(x), DescrStatsW(y)).tconfint_diff(alpha=0.05,
                                                                        usevar="unequal")
    assert row.effect == pytest.approx(x.mean() - y.mean(), rel=1e-9)
    assert row.p_value == pytest.approx(welch.pvalue, rel=1e-6)
    assert (row.ci_lower, row.ci_upper) == (pytest.approx(lo, rel=1e-6),
                                            pytest.approx(hi, rel=1e-6))
    assert bool(row.significant) == (welch.pvalue < 0.05)


def test_arm_versus_arm_on_a_proportion_is_the_wald_test(units):
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    table = _analyze(_experiment(units), difference="absolute").arms
    row = _row(table, "conv", "a", "b")
    ca, na = int(units.loc[units.variant == "a", "conv"].sum()), int((units.variant == "a").sum())
    cb, nb = int(units.loc[units.variant == "b", "conv"].sum()), int((units.variant == "b").sum())
    test = test_proportions_2indep(ca, na, cb, nb, compare="diff", method="wald")
    lo, hi = confint_proportions_2indep(ca, na, cb, nb, compare="diff", method="wald")
    assert row.effect == pytest.approx(ca / na - cb / nb, rel=1e-9)
    # statsmodels' Wald variance is p(1-p)/n; the engine's the unbiased p(1-p)/(n-1)
    assert row.p_value == pytest.approx(test.pvalue, rel=2e-3)
    assert row.ci_lower == pytest.approx(lo, rel=2e-3) and row.ci_upper == pytest.approx(hi,
                                                                                         rel=2e-3)


def test_relative_arm_versus_arm_is_the_delta_method(units):
    table = _analyze(_experiment(units)).arms
    row = _row(table, "value", "a", "b")
    x = units.loc[units.variant == "a", "value"].to_numpy()
    y = units.loc[units.variant == "b", "value"].to_numpy()
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = np.sqrt(vx / my ** 2 + mx ** 2 * vy / my ** 4)
    assert row.effect == pytest.approx(mx / my - 1, rel=1e-9)
    assert row.se == pytest.approx(se, rel=1e-6)
    # Welch-Satterthwaite degrees of freedom, as for the absolute difference
    dof = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    half = st.t.ppf(0.975, dof) * se
    assert row.ci_upper - row.ci_lower == pytest.approx(2 * half, rel=1e-4)


def _mc_best(draws_by_arm, lower=False):
    x = np.vstack(draws_by_arm)
    best = x.argmin(axis=0) if lower else x.argmax(axis=0)
    return np.bincount(best, minlength=x.shape[0]) / x.shape[1]


def test_chance_to_be_best_against_a_monte_carlo(units):
    res = _analyze(_experiment(units), method="bayesian")
    table = res.arms
    rng = np.random.default_rng(11)
    k = 400_000
    order = ["control", "a", "b"]
    g = {v: units[units.variant == v] for v in order}
    # proportion: Beta(1 + s, 1 + n - s) posteriors (the engine's default flat Beta prior)
    conv = _mc_best([rng.beta(1 + g[v].conv.sum(), 1 + len(g[v]) - g[v].conv.sum(), k)
                     for v in order])
    # mean: normal posterior of each arm's mean, N(mean, var / n)
    val = _mc_best([rng.normal(g[v].value.mean(), g[v].value.std(ddof=1) / np.sqrt(len(g[v])),
                               k) for v in order])
    for metric, mc in (("conv", conv), ("value", val)):
        row = _row(table, metric, "a", "b")
        assert row.chance_to_be_best == pytest.approx(mc[1], abs=0.015), metric


def test_chance_to_be_best_when_lower_is_better(units):
    # `wait` (lower is better) as the only primary metric: best is the lowest arm
    exp = _experiment(units, conv="secondary", value="secondary", wait="primary")
    table = _analyze(exp, method="bayesian").arms
    rng = np.random.default_rng(5)
    order = ["control", "a", "b"]
    g = {v: units.loc[units.variant == v, "wait"] for v in order}
    mc = _mc_best([rng.normal(g[v].mean(), g[v].std(ddof=1) / np.sqrt(len(g[v])), 400_000)
                   for v in order], lower=True)
    row = table[table.metric == "wait"].iloc[0]
    assert 0.2 < mc[order.index(row.variant)] < 0.9  # a real contest, not a certainty
    assert row.chance_to_be_best == pytest.approx(mc[order.index(row.variant)], abs=0.015)
    # the arm ranked first is the one with the lower wait
    assert g[row.variant].mean() < g[row.versus].mean()


def test_oec_rows_and_one_treatment():
    df = _units(n=3000, seed=8)
    rule = DecisionRule(weights={"conv": 1.0, "value": 0.5})
    res = _analyze(_experiment(df), rule=rule)
    oec = res.arms[res.arms.metric == "OEC"]
    assert len(oec) == 1 and np.isnan(oec.chance_to_be_best.iloc[0])
    r = oec.iloc[0]
    per = res.arms[res.arms.metric != "OEC"].set_index("metric")
    # the bound: se = sum |w| se_m, a z test
    se = per.loc["conv", "se"] + 0.5 * per.loc["value", "se"]
    est = per.loc["conv", "effect"] + 0.5 * per.loc["value", "effect"]
    assert r.effect == pytest.approx(est, rel=1e-12)
    assert r.p_value == pytest.approx(2 * st.norm.sf(abs(est) / se), rel=1e-9)
    two = _analyze(_experiment(df[df.variant != "b"]))
    assert two.arms.empty and list(two.arms.columns[:10]) == list(arms.COLUMNS)


def test_a_pair_that_cannot_be_compared_keeps_its_row():
    df = _units(n=500, seed=2)
    df.loc[df.variant == "b", "value"] = 1.0  # constant in b; a still varies: computable
    df.loc[df.variant.isin(["a", "b"]), "conv"] = True  # both arms all converted
    table = _analyze(_experiment(df), difference="absolute").arms
    conv = table[table.metric == "conv"].iloc[0]
    assert "zero variance" in conv.error_message and "not computable" in conv.sentence
    assert np.isfinite(table[table.metric == "value"].effect.iloc[0])


def test_small_sample_record_carries_arms_and_reasons(small_warehouse):
    from workbench.readout.record import ARMS, ReadoutRecord

    exp = Experiment.from_source(small_warehouse)
    res = _analyze(exp)
    assert len(res.arms) == 1 and res.arms.versus.iloc[0] in ("treatment_a", "treatment_b")
    assert set(res.reasons) == {"treatment_a", "treatment_b"}
    assert all(any(s.startswith("conversion") for s in why) for why in res.reasons.values())
    assert any("cannot be told apart" in s or "beats" in s
               for s in res.reasons["treatment_a"])
    record = ReadoutRecord.from_result(res)
    assert ARMS in record.tables and record.reasons == {k: list(v) for k, v in res.reasons.items()}
    text = str(res.summary())
    assert text.splitlines()[1].startswith("treatment_a (")  # reasons under the decision


def test_the_demo_sample_says_why_the_chosen_arm_wins(tmp_path):
    """The demo's own data (200,000 users, the settings seed): the decision line names why
    treatment_a is shipped rather than treatment_b."""
    from workbench.data.sample import generate

    path = tmp_path / "demo.duckdb"
    generate(path, progress=False)
    exp = Experiment.from_source(path)
    res = _analyze(exp)
    line = res.decision
    assert line.startswith("ship treatment_a: conversion +")
    assert "treatment_b" in line
    pair = res.arms[res.arms.metric == "conversion"].iloc[0]
    assert (pair.variant, pair.versus) == ("treatment_a", "treatment_b")
    if pair.significant:
        assert "beats treatment_b on conversion by" in line
    else:
        assert "treatment_b cannot be told apart from it on conversion" in line
        assert line.endswith("treatment_a chosen for the larger lift on conversion")
    assert any(s.startswith("not chosen: treatment_a") for s in res.reasons["treatment_b"])
    assert any("revenue_per_user (not in the rule) improved" in s
               for s in res.reasons["treatment_b"])
    # an OEC that weights revenue as much as conversion ships treatment_b instead
    oec = _analyze(exp, rule=DecisionRule(weights={"conversion": 1, "revenue_per_user": 1}))
    assert oec.decision.startswith("ship treatment_b: OEC +")


def test_chance_to_be_best_of_a_proportion_where_lower_is_better():
    rng = np.random.default_rng(21)
    n, p = 3000, {"control": 0.30, "a": 0.27, "b": 0.275}
    df = pd.concat([pd.DataFrame({"variant": v, "bounce": rng.random(n) < q})
                    for v, q in p.items()], ignore_index=True)
    exp = Experiment.from_units(df, "variant", {"bounce": wb.proportion(
        "bounce", role="primary", higher_is_better=False)})
    row = _analyze(exp, method="bayesian").arms.iloc[0]
    order = list(p)
    s = {v: df.loc[df.variant == v, "bounce"].sum() for v in order}
    draw = np.random.default_rng(4)
    mc = _mc_best([draw.beta(1 + s[v], 1 + n - s[v], 400_000) for v in order], lower=True)
    assert 0.2 < mc[order.index(row.variant)] < 0.9
    assert row.chance_to_be_best == pytest.approx(mc[order.index(row.variant)], abs=0.015)


def test_the_cli_prints_the_reasons_and_takes_a_rule(small_warehouse, capsys):
    from workbench.cli import main

    base = ["readout", "--source", str(small_warehouse), "--experiment", "checkout_redesign"]
    main([*base, "--weight", "conversion", "1", "--weight", "revenue_per_user", "0.5"])
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, s in enumerate(lines) if s.startswith("checkout_redesign: "))
    assert lines[head + 1].startswith("treatment_a (")
    assert lines[head + 2].startswith("  - overall evaluation criterion (1 x conversion, "
                                      "0.5 x revenue_per_user)")
    code = main([*base, "--primary", "nope"])
    assert code != 0 and "primary names nope" in capsys.readouterr().err


def test_an_arm_without_statistics_gives_error_rows_not_a_crash(units):
    exp = _experiment(units)
    res = _analyze(exp)
    stats = exp.sufficient_stats()
    some = stats[~((stats.variant == "b") & (stats.metric == "conv"))]
    table = arms.compare(some, res.results, ["a", "b"], control="control")
    conv = table[table.metric == "conv"].iloc[0]
    assert "no control row" in conv.error_message and np.isnan(conv.effect)
    none = arms.compare(stats[stats.variant != "b"], res.results, ["a", "b"], control="control")
    assert len(none) == 2 and (none.error_message != "").all()
    assert none.sentence.str.contains("not computable").all()
