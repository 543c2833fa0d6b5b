"""The decision rules on hand-made result rows: significance, verdicts, per-variant decisions."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench.readout import decision as d


def _rows(**cols):
    base = {"metric": ["m"] * len(next(iter(cols.values()))), "p_value": np.nan,
            "p_value_adjusted": np.nan, "ci_lower": np.nan, "ci_upper": np.nan,
            "effect": 0.0, "higher_is_better": True, "role": "primary", "error_message": ""}
    frame = pd.DataFrame({**base, **cols})
    return frame


def test_significance_uses_adjusted_p_then_raw_p_then_the_interval():
    res = _rows(p_value=[0.01, 0.01, np.nan, np.nan, 0.2],
                p_value_adjusted=[0.03, 0.2, np.nan, np.nan, np.nan],
                ci_lower=[0.1, 0.1, 0.1, -0.1, 0.1], ci_upper=[0.2, 0.2, 0.2, 0.1, 0.2])
    assert list(d.significant(res, 0.05)) == [True, False, True, False, False]
    # unadjusted reading: the raw p-values decide
    assert list(d.significant(res, 0.05, adjusted=False)) == [True, True, True, False, False]


def test_bayesian_rows_use_the_chance_to_win():
    res = _rows(chance_to_win=[0.99, 0.975, 0.5, 0.01])
    assert list(d.significant(res, 0.05)) == [True, True, False, True]


def test_verdict_wording():
    res = _rows(effect=[0.1, -0.1, -0.1, 0.1, 0.1, 0.1],
                role=["primary", "primary", "guardrail", "primary", "primary", "guardrail"],
                higher_is_better=[True, True, True, True, False, True],
                error_message=["", "", "", "", "", "control has no units"])
    sig = np.array([True, True, True, False, True, True])
    assert list(d.verdicts(res, sig, srm=False)) == [
        d.VERDICT_IMPROVED, d.VERDICT_WORSE, d.VERDICT_HARM, d.VERDICT_NONE, d.VERDICT_WORSE,
        d.VERDICT_ERROR]
    assert set(d.verdicts(res, sig, srm=True)) == {d.VERDICT_SRM}
    assert {"improvement", "deterioration", "harm on guardrail", "no detectable effect",
            "not computable", "do not trust: SRM"} == set(d.VERDICTS)


def _results(rows):
    return pd.DataFrame(rows, columns=["metric", "variant", "role", "verdict", "effect"])


def test_the_best_shipping_variant_is_named():
    r = _results([("conv", "a", "primary", d.VERDICT_IMPROVED, 0.02),
                  ("conv", "b", "primary", d.VERDICT_IMPROVED, 0.05),
                  ("sess", "a", "guardrail", d.VERDICT_NONE, 0.0),
                  ("sess", "b", "guardrail", d.VERDICT_NONE, 0.0)])
    decisions, line = d.decide(r, ["a", "b"], srm=False)
    assert decisions == {"a": "ship", "b": "ship"} and line == "ship b"


def test_harm_and_worse_primary_block_shipping():
    r = _results([("conv", "a", "primary", d.VERDICT_IMPROVED, 0.02),
                  ("sess", "a", "guardrail", d.VERDICT_HARM, -0.1),
                  ("conv", "b", "primary", d.VERDICT_WORSE, -0.05)])
    decisions, line = d.decide(r, ["a", "b"], srm=False)
    assert decisions == {"a": "do not ship: harm on guardrail sess",
                         "b": "do not ship: primary metric worse"}
    assert line == "a: do not ship: harm on guardrail sess; b: do not ship: primary metric worse"


def test_no_effect_and_srm():
    r = _results([("conv", "a", "primary", d.VERDICT_NONE, 0.0)])
    assert d.decide(r, ["a"], srm=False) == ({"a": d.VERDICT_NONE},
                                             "no detectable effect on the primary metric")
    decisions, line = d.decide(r, ["a"], srm=True, srm_p_value=1e-9)
    assert decisions == {"a": d.VERDICT_SRM}
    assert line == "do not trust: SRM (p = 1e-09); fix the assignment before reading any lift"


# -- the decision rule, reasons, margins, OEC, direction (issue 14) ---------------------------
import pytest  # noqa: E402
from scipy import stats as st  # noqa: E402

from workbench.errors import ParameterError  # noqa: E402

Z = st.norm.ppf(0.975)


def _full(rows, **extra):
    """Result rows built like the engine's: (metric, variant, role, effect, se[, hib]); p and
    the interval from a z test; significance and verdicts by the module's own rules."""
    recs = []
    for r in rows:
        metric, variant, role, eff, se, *rest = r
        hib = rest[0] if rest else True
        p = 2 * st.norm.sf(abs(eff) / se)
        recs.append(dict(metric=metric, variant=variant, role=role, effect=eff, se=se,
                         higher_is_better=hib, p_value=p, p_value_adjusted=p,
                         ci_lower=eff - Z * se, ci_upper=eff + Z * se, chance_to_win=np.nan,
                         error_message="", difference="relative"))
    frame = pd.DataFrame(recs)
    for k, v in extra.items():
        frame[k] = v
    sig = d.significant(frame, 0.05)
    frame["significant"] = sig
    frame["verdict"] = d.verdicts(frame, sig, srm=False)
    return frame


def _explain(frame, treatments=("a",), **kw):
    return d.explain(frame, list(treatments), srm=False, **kw)


@pytest.mark.parametrize("margin_p, held", [(0.002, True), (0.2, False)])
def test_a_guardrail_holds_when_shown_within_its_margin(margin_p, held):
    f = _full([("conv", "a", "primary", 0.03, 0.01), ("sess", "a", "guardrail", -0.002, 0.004)],
              margin=[np.nan, 0.01], margin_kind=[None, "non-inferiority"],
              margin_p_value=[np.nan, margin_p], margin_chance=np.nan)
    e = _explain(f)
    why = e.reasons["a"]
    if held:
        assert e.decisions == {"a": "ship"} and e.decision == "ship a"
        assert "guardrail sess held: no worse than -1.0 % (p = 0.0020" in " | ".join(why)
    else:
        assert e.decisions["a"] == "do not ship: guardrail sess not shown to be within its margin"
        assert ("guardrail sess: no harm detected, but not shown to be within -1.0 %: "
                "inconclusive (p = 0.2000") in " | ".join(why)
    assert why[0] == "conv improved: +3.0 % [+1.0 %, +5.0 %], p = 0.0027"


def test_without_margins_a_guardrail_holds_when_no_harm_is_detected():
    rows = [("conv", "a", "primary", 0.03, 0.01), ("sess", "a", "guardrail", -0.002, 0.004)]
    for f in (_full(rows), _full(rows, margin=np.nan, margin_p_value=np.nan)):
        e = _explain(f)
        assert e.decisions == {"a": "ship"}
        assert e.reasons["a"][1].startswith("guardrail sess held: no harm detected: -0.2 %")
    harmed = _full([("conv", "a", "primary", 0.03, 0.01), ("sess", "a", "guardrail", -0.02,
                                                           0.004)])
    e = _explain(harmed)
    assert e.decisions == {"a": "do not ship: harm on guardrail sess"}
    assert e.reasons["a"][1].startswith("guardrail sess harmed: -2.0 % [-2.8 %, -1.2 %], p <")


def test_bayesian_margins_and_sentences_use_chances_and_risk():
    f = _full([("conv", "a", "primary", 0.03, 0.01), ("lat", "a", "guardrail", 0.001, 0.004,
                                                      False)],
              margin=[np.nan, 0.01], margin_p_value=np.nan, margin_chance=[np.nan, 0.99],
              margin_kind="non-inferiority")
    f["p_value"] = f["p_value_adjusted"] = np.nan
    f["chance_to_win"] = [0.9987, 0.6]
    f["risk_variant"] = [0.0001, 0.003]
    f["risk_control"] = [0.03, 0.002]
    e = _explain(f)
    assert e.decisions == {"a": "ship"}
    # lower is better: the chance to win is 1 - P(variant > control), the risk is
    # the engine's risk_control (the loss when the variant turns out higher)
    assert e.reasons["a"][0].endswith("chance to win 99.9 %, risk 0.01 %")
    assert "no worse than +1.0 % (chance 99.0 %" in e.reasons["a"][1]
    f["margin_chance"] = [np.nan, 0.9]
    assert "inconclusive (chance 90.0 %" in _explain(f).reasons["a"][1]


def test_lower_is_better_flips_the_choice_and_the_words():
    f = _full([("latency", "a", "primary", -0.05, 0.01, False),
               ("latency", "b", "primary", -0.02, 0.005, False),
               ("latency", "c", "primary", 0.03, 0.01, False)])
    e = _explain(f, ["a", "b", "c"])
    assert e.decisions == {"a": "ship", "b": "ship", "c": "do not ship: primary metric worse"}
    assert e.decision == "ship a"  # the larger fall, not the larger number
    assert e.reasons["a"][0].startswith("latency improved: -5.0 %")
    assert e.reasons["c"][0].startswith("latency worse: +3.0 %")
    assert d.criterion(f) == pytest.approx({"a": 0.05, "b": 0.02, "c": -0.03})


def test_an_oec_changes_the_choice_and_is_a_z_test_on_the_weighted_lifts():
    rows = [("conv", "a", "primary", 0.03, 0.01), ("conv", "b", "primary", 0.025, 0.01),
            ("rev", "a", "secondary", 0.00, 0.02), ("rev", "b", "secondary", 0.08, 0.02),
            ("cost", "a", "secondary", 0.01, 0.01, False),
            ("cost", "b", "secondary", -0.02, 0.01, False)]
    f = _full(rows)
    assert d.decide(f, ["a", "b"], srm=False)[1] == "ship a"
    rule = d.DecisionRule(weights={"conv": 1.0, "rev": 0.5, "cost": 2.0})
    e = _explain(f, ["a", "b"], rule=rule)
    assert e.decision == "ship b"
    table = d.oec(f, rule).set_index("variant")
    # by hand: cost enters with its sign flipped (lower is better)
    est_b = 0.025 + 0.5 * 0.08 + 2.0 * 0.02
    se_b = 0.01 + 0.5 * 0.02 + 2.0 * 0.01
    assert table.loc["b", "effect"] == pytest.approx(est_b)
    assert table.loc["b", "se"] == pytest.approx(se_b)
    assert table.loc["b", "p_value"] == pytest.approx(2 * st.norm.sf(est_b / se_b))
    assert table.loc["b", "ci_lower"] == pytest.approx(est_b - Z * se_b)
    indep = d.oec(f, d.DecisionRule(weights=rule.weights, oec_dependence="independent"))
    assert indep.set_index("variant").loc["b", "se"] == pytest.approx(
        np.sqrt(0.01 ** 2 + 0.25 * 0.02 ** 2 + 4 * 0.01 ** 2))
    assert e.reasons["b"][0].startswith(
        "overall evaluation criterion (1 x conv, 0.5 x rev, 2 x cost) improved: +10.5 %")
    # a's OEC (0.03 - 0.02 = +1 %, se 6 %) is no improvement: a does not ship under the OEC
    assert e.decisions["a"] == d.VERDICT_NONE
    # a rule naming another primary metric
    assert d.decide(f, ["a", "b"], srm=False, rule=d.DecisionRule(primary=["rev"]))[1] == \
        "ship b"


def test_a_primary_metric_must_beat_its_minimum_worthwhile_effect():
    f = _full([("conv", "a", "primary", 0.03, 0.01)], margin=0.02, margin_kind="superiority",
              margin_p_value=0.16, margin_chance=np.nan)
    e = _explain(f)
    assert e.decisions["a"] == ("do not ship: primary metric conv not shown to beat its minimum "
                                "worthwhile effect")
    assert "not shown to beat its minimum worthwhile effect +2.0 % (p = 0.1600)" in \
        e.reasons["a"][0]
    f["margin_p_value"] = 0.01
    assert _explain(f).decisions["a"] == "ship"


def test_bad_rules_raise_naming_the_problem():
    f = _full([("conv", "a", "primary", 0.03, 0.01)])
    with pytest.raises(ParameterError, match="primary names nope"):
        d.DecisionRule(primary=["nope"]).roles(f)
    with pytest.raises(ParameterError, match="weights names rev"):
        d.DecisionRule(weights={"rev": 1}).roles(f)
    for w in ({}, {"conv": float("nan")}, {"conv": 0}, [1, 2]):
        with pytest.raises(ParameterError, match="weights"):
            d.DecisionRule(weights=w)
    with pytest.raises(ParameterError, match="oec_dependence"):
        d.DecisionRule(oec_dependence="copula")
    assert d.DecisionRule(primary="conv").primary == ("conv",)
    assert d.DecisionRule().describe(f) == (
        "ship an arm when every primary metric (conv) improves and every guardrail (none) "
        "holds; among those, the largest primary lift is chosen")


def test_overrides_explain_themselves():
    f = _full([("conv", "a", "primary", 0.03, 0.01)])
    e = d.explain(f, ["a"], srm=True, srm_p_value=1e-9)
    assert e.decisions == {"a": d.VERDICT_SRM} and "sample ratio mismatch" in e.reasons["a"][0]
    e = d.explain(f, ["a"], srm=False, failed=["nan (events.revenue)"])
    assert e.reasons["a"] == (e.decision,)


def test_the_correction_is_named_in_the_reasons():
    f = _full([("conv", "a", "primary", 0.03, 0.01), ("x", "a", "secondary", 0.0, 0.01)])
    why = _explain(f, correction="holm").reasons["a"]
    assert "(adjusted, Holm across 2 comparisons; raw " in why[0]
    raw = float(f["p_value"].iloc[0])
    assert why[0].endswith(f"raw {fmt.p_value(raw)})")


# -- several arms, from unit data (the expected decision is known by construction) ----------
def _three_arms(p_a, p_b, sessions_b=3.0, n=6000, seed=1):
    import workbench as wb
    from workbench.readout.experiment import Experiment

    rng = np.random.default_rng(seed)
    parts = []
    for v, p, s in (("control", 0.10, 3.0), ("a", p_a, 3.0), ("b", p_b, sessions_b)):
        parts.append(pd.DataFrame({"variant": v, "conv": rng.random(n) < p,
                                   "sessions": rng.poisson(s, n).astype(float)}))
    df = pd.concat(parts, ignore_index=True)
    exp = Experiment.from_units(df, "variant", {
        "conv": wb.proportion("conv", role="primary"),
        "sessions": wb.mean("sessions", role="guardrail")})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return df, exp.analyze(timeseries=False)


def test_two_arms_that_ship_but_cannot_be_separated():
    df, res = _three_arms(0.14, 0.14)
    assert res.decisions == {"a": "ship", "b": "ship"}
    rate = df.groupby("variant").conv.mean()
    best, other = ("a", "b") if rate["a"] > rate["b"] else ("b", "a")
    line = res.decision
    assert line.startswith(f"ship {best}: conv +")
    assert f"; {other} cannot be told apart from it on conv (" in line
    assert line.endswith(f"; {best} chosen for the larger lift on conv")
    assert any(s.startswith(f"not chosen: {best} has the larger lift, though the data cannot "
                            "separate them") for s in res.reasons[other])
    assert any(s.startswith("chosen: the largest lift on conv") for s in res.reasons[best])


def test_a_clear_winner_is_said_to_beat_the_other():
    _, res = _three_arms(0.17, 0.13)
    assert res.decisions == {"a": "ship", "b": "ship"}
    assert res.decision.startswith("ship a: conv +")
    assert "; beats b on conv by +" in res.decision and "(chance to be best " in res.decision
    assert "not chosen: a beats it on the primary metric" in res.reasons["b"]


def test_when_one_arm_ships_the_line_says_why_the_other_did_not():
    _, res = _three_arms(0.14, 0.15, sessions_b=2.6)
    assert res.decisions["b"] == "do not ship: harm on guardrail sessions"
    assert res.decision.startswith("ship a: conv +")
    assert res.decision.endswith("; b: do not ship: harm on guardrail sessions")
    assert any(s.startswith("guardrail sessions harmed: ") for s in res.reasons["b"])
    assert "chosen: the only arm that ships" in res.reasons["a"]
