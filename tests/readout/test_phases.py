"""Staged rollouts as phases, end to end on the ramp scenario (known truth), checked against
hand-written DuckDB counts, scipy's chi-square and a hand stratification in pandas."""
from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import workbench as wb
from workbench import messages
from workbench.data.sample import RAMP_EXPERIMENT, RAMP_METRICS, RAMP_WEIGHTS, generate_ramp
from workbench.errors import ParameterError, SRMWarning
from workbench.readout.phases import POOLED, STRATIFIED, Phase


@pytest.fixture(scope="module")
def ramp(tmp_path_factory, ramp_by_hand):
    path = tmp_path_factory.mktemp("ramp") / "ramp.duckdb"
    truth = generate_ramp(path, seed=0, n_per_phase=30_000)
    exp = wb.Experiment.from_source(path, RAMP_EXPERIMENT, RAMP_METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(timeseries=False)
    return path, truth, exp, result, ramp_by_hand.counts(path)


def _row(result, metric, phase):
    t = result.phases
    return t[(t["metric"] == metric) & (t["phase"] == phase)].iloc[0]


def test_phases_come_from_the_experiments_table(ramp):
    _, _, exp, result, hand = ramp
    assert [p.name for p in exp.phases] == ["phase_1", "phase_2", "phase_3"]
    assert [p.weights["treatment"] for p in exp.phases] == list(RAMP_WEIGHTS)
    # the whole experiment's split is the one the phases imply (equal units per phase)
    assert exp.window.planned_weights[1] == pytest.approx(np.mean(RAMP_WEIGHTS))
    assert result.validation.srm_p_value > 0.001
    assert not [c for c in result.notes if "Data check failed" in c]


def test_per_phase_counts_and_srm_against_scipy(ramp):
    _, _, exp, result, hand = ramp
    for k, p in enumerate(exp.phases):
        h = hand[hand["phase"] == p.name].set_index("variant")["n"]
        row = _row(result, "conversion", p.name)
        assert (row["n_control"], row["n_variant"]) == (h["control"], h["treatment"])
        obs = np.array([h["control"], h["treatment"]], float)
        w = np.array([1 - RAMP_WEIGHTS[k], RAMP_WEIGHTS[k]])
        expected = stats.chisquare(obs, obs.sum() * w).pvalue
        assert row["srm_p_value"] == pytest.approx(expected, rel=1e-9)
        assert row["weight"] == pytest.approx(obs.sum() / hand["n"].sum())


def test_phase_statistics_match_hand_query(ramp):
    _, _, exp, _, hand = ramp
    ps = exp.phase_stats()
    conv = ps[ps["metric"] == "conversion"].set_index(["phase", "variant"])
    h = hand.set_index(["phase", "variant"])
    np.testing.assert_array_equal(conv.loc[h.index, "n"].to_numpy(), h["n"].to_numpy())
    np.testing.assert_allclose(conv.loc[h.index, "sum"].to_numpy(), h["conv"].to_numpy())


def test_headline_is_the_hand_stratified_lift(ramp, ramp_by_hand):
    _, _, _, result, hand = ramp
    h = hand.assign(p=hand["conv"] / hand["n"])
    lift, se, _ = ramp_by_hand.stratified_conversion(hand)
    head = result.results.set_index("metric").loc["conversion"]
    assert head["effect"] == pytest.approx(lift, rel=1e-9)
    assert head["se"] == pytest.approx(se, rel=1e-9)
    assert head["ci_lower"] == pytest.approx(lift - 1.959963984540054 * se, rel=1e-9)
    assert _row(result, "conversion", STRATIFIED)["effect"] == pytest.approx(lift)
    assert messages.PHASES_HEADLINE.format(n=3) in result.notes
    # the naive pooled row: all units of each arm together
    pooled = (h[h.variant == "treatment"]["conv"].sum() / h[h.variant == "treatment"]["n"].sum()
              / (h[h.variant == "control"]["conv"].sum() / h[h.variant == "control"]["n"].sum())
              - 1)
    assert _row(result, "conversion", POOLED)["effect"] == pytest.approx(pooled, rel=1e-9)


@pytest.mark.parametrize("method", ["sequential", "bayesian"])
def test_sequential_and_bayesian_headlines_are_stratified(ramp, ramp_by_hand, method):
    """The headline of a sequential / Bayesian readout of the ramp: the hand stratified lift,
    through the mixture-SPRT boundary written out here, or the conjugate normal update with
    the readout's N(0, 0.3^2) prior (scipy), not the pooled estimate."""
    path, _, _, _, hand = ramp
    lift, se, n = ramp_by_hand.stratified_conversion(hand)
    exp = wb.Experiment.from_source(path, RAMP_EXPERIMENT, RAMP_METRICS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = exp.analyze(method, timeseries=False)
    head = result.results.set_index("metric").loc["conversion"]
    strat = _row(result, "conversion", STRATIFIED)
    assert head["test"] == "stratified"
    assert messages.PHASES_HEADLINE.format(n=3) + messages.PHASES_METHOD[method] in result.notes
    if method == "sequential":
        la = -2 * np.log(0.05)
        rho2 = (la + np.log(la + 1)) / 5000  # the readout's default tuning
        half = se * np.sqrt(2 * (n * rho2 + 1) / (n * rho2) * np.log(np.sqrt(n * rho2 + 1) / 0.05))
        p = min(1.0, np.sqrt(n * rho2 + 1) * np.exp(-n * rho2 * lift**2
                                                     / (2 * se**2 * (n * rho2 + 1))))
        assert head["effect"] == pytest.approx(lift, rel=1e-9)
        assert head["ci_lower"] == pytest.approx(lift - half, rel=1e-9)
        assert head["ci_upper"] == pytest.approx(lift + half, rel=1e-9)
        assert head["p_value"] == pytest.approx(p, rel=1e-9)
        assert half > stats.norm.ppf(0.975) * se  # always valid: wider than the z interval
    else:
        prec = 1 / se**2 + 1 / 0.3**2
        mu, sd = lift / se**2 / prec, np.sqrt(1 / prec)
        assert head["effect"] == pytest.approx(mu, rel=1e-9)
        assert head["ci_lower"] == pytest.approx(mu - stats.norm.ppf(0.975) * sd, rel=1e-9)
        assert head["chance_to_win"] == pytest.approx(stats.norm.cdf(mu / sd), rel=1e-9)
        assert head["chance_to_be_best"] == head["chance_to_win"]  # one treatment
        assert strat["risk_control"] == pytest.approx(
            sd * stats.norm.pdf(mu / sd) + mu * stats.norm.cdf(mu / sd), rel=1e-9)
    pooled = _row(result, "conversion", POOLED)
    assert not np.isclose(head["effect"], pooled["effect"])


def test_naive_pooling_is_biased_and_stratification_recovers_the_truth(ramp):
    _, truth, _, result, _ = ramp
    for metric in ("conversion", "revenue_per_user"):
        true = float(truth.set_index("metric").loc[metric, "relative_lift"])
        naive = _row(result, metric, POOLED)
        strat = _row(result, metric, STRATIFIED)
        assert not naive["ci_lower"] <= true <= naive["ci_upper"], metric
        assert strat["ci_lower"] <= true <= strat["ci_upper"], metric


def test_phases_from_the_call_equal_the_table(ramp):
    path, _, _, result, _ = ramp
    phases = [Phase(f"phase_{k + 1}", dt.date(2026, 3, 2) + dt.timedelta(days=7 * k),
                    dt.date(2026, 3, 8) + dt.timedelta(days=7 * k),
                    {"control": 1 - w, "treatment": w}) for k, w in enumerate(RAMP_WEIGHTS)]
    exp = wb.Experiment.from_source(path, RAMP_EXPERIMENT, RAMP_METRICS, phases=phases[::-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = exp.analyze(timeseries=False)
    cols = ["effect", "ci_lower", "ci_upper", "srm_p_value", "n_control"]
    pd.testing.assert_frame_equal(again.phases[cols], result.phases[cols])


def test_record_report_and_dashboard_show_the_phases(ramp):
    from workbench.dashboards import text
    from workbench.readout.record import PHASES, TABLES, ReadoutRecord
    from workbench.readout.table import table_html

    _, _, _, result, _ = ramp
    assert PHASES in TABLES
    record = ReadoutRecord.from_result(result)
    assert len(record.table(PHASES)) == len(result.phases)
    assert PHASES in [name for name, _, _ in text.section_tables(record)]
    html = table_html(PHASES, result.phases)
    assert "phase_2" in html and "(stratified)" in html
    assert "Phases" in result._repr_html_()


@pytest.mark.slow
def test_one_phase_source_is_unchanged(small_warehouse):
    exp = wb.Experiment.from_source(small_warehouse)
    assert exp.phases == ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = exp.analyze(timeseries=False)
    assert plain.phases.empty
    w = dict(zip(exp.window.variants, exp.window.planned_weights))
    one = wb.Experiment.from_source(small_warehouse, phases=[
        {"name": "all", "start": exp.window.start_date, "end": exp.window.end_date,
         "weights": w}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = one.analyze(timeseries=False)
    # one phase: a per-phase table, the headline stays the pooled one
    assert set(res.phases["phase"]) == {"all", STRATIFIED, POOLED}
    pd.testing.assert_frame_equal(res.results[["effect", "ci_lower", "p_value"]],
                                  plain.results[["effect", "ci_lower", "p_value"]])


def test_per_unit_table_phase_srm_is_flagged():
    rng = np.random.default_rng(5)
    n = 4000
    day = np.repeat([dt.date(2026, 1, 1), dt.date(2026, 1, 8)], n)
    treat = np.r_[rng.random(n) < 0.5, rng.random(n) < 0.62]  # phase b drifts off 50/50
    df = pd.DataFrame({"variant": np.where(treat, "treatment", "control"),
                       "day": pd.to_datetime(day), "y": rng.normal(1.0, 1.0, 2 * n)})
    phases = [{"name": "a", "start": "2026-01-01", "end": "2026-01-07",
               "weights": {"control": 1, "treatment": 1}},
              {"name": "b", "start": "2026-01-08", "end": "2026-01-14",
               "weights": {"control": 1, "treatment": 1}}]
    exp = wb.Experiment.from_units(df, "variant", {"y": wb.mean("y")}, date="day",
                                   phases=phases)
    with pytest.warns(SRMWarning, match="phase b"):
        result = exp.analyze(timeseries=False)
    b = result.phases.set_index("phase").loc["b"]
    obs = np.bincount(treat[n:], minlength=2).astype(float)
    assert b["srm_p_value"] == pytest.approx(stats.chisquare(obs).pvalue, rel=1e-9)
    assert b["srm_p_value"] < 0.001 and any("phase b" in s for s in result.notes)
    assert "trust" in result.decision.lower()


def test_bad_phases_raise():
    df = pd.DataFrame({"variant": ["control", "treatment"] * 5,
                       "day": pd.to_datetime(["2026-01-01"] * 10), "y": np.arange(10.0)})
    ok = {"name": "a", "start": "2026-01-01", "end": "2026-01-07", "weights": {"control": 1}}
    with pytest.raises(ParameterError, match="overlap"):
        wb.Experiment.from_units(df, "variant", {"y": wb.mean("y")}, date="day",
                                 phases=[ok, ok | {"name": "b", "start": "2026-01-05"}])
    with pytest.raises(ParameterError, match="not a variant"):
        wb.Experiment.from_units(df, "variant", {"y": wb.mean("y")}, date="day",
                                 phases=[ok | {"weights": {"arm_z": 1}}])
    with pytest.raises(ParameterError, match="date="):
        wb.Experiment.from_units(df, "variant", {"y": wb.mean("y")}, phases=[ok])


@pytest.mark.slow
def test_stratified_interval_covers_the_ramp_truth_about_95_percent():
    """200 seeded replicates of the ramp model (weights 10/25/50 %, baseline 8/9/10 %, lift
    +5 %) through the readout's phase analysis: the stratified interval covers the true lift
    about 95 % of the time; the naive pooled one almost never does."""
    from workbench.readout.phases import analyze as phase_analyze
    from workbench.stats import analyze as stats_analyze

    rng = np.random.default_rng(11)
    reps, n = 200, 30_000
    base, lift = np.array([0.08, 0.09, 0.10]), 0.05
    w = np.array(RAMP_WEIGHTS)
    phases = [Phase(f"p{k}", dt.date(2026, 1, 1 + 7 * k), dt.date(2026, 1, 7 + 7 * k),
                    {"control": 1 - w[k], "treatment": w[k]}) for k in range(3)]
    cover = naive_cover = 0
    for _ in range(reps):
        nt = rng.binomial(n, w)
        nc = n - nt
        xt = rng.binomial(nt, base * (1 + lift))
        xc = rng.binomial(nc, base)
        rows = [{"metric": "conversion", "variant": v, "kind": "proportion", "n": float(nn),
                 "sum": float(x), "sum_squares": float(x), "phase": f"p{k}"}
                for k in range(3) for v, nn, x in (("control", nc[k], xc[k]),
                                                   ("treatment", nt[k], xt[k]))]
        frame = pd.DataFrame(rows)
        table, _ = phase_analyze(frame, phases, control="control", analyze_fn=stats_analyze)
        s = table[table["phase"] == STRATIFIED].iloc[0]
        cover += s["ci_lower"] <= lift <= s["ci_upper"]
        pooled = frame.groupby(["metric", "variant", "kind"], as_index=False)[
            ["n", "sum", "sum_squares"]].sum()
        p = stats_analyze(pooled, warn=False).to_frame().iloc[0]
        naive_cover += p["ci_lower"] <= lift <= p["ci_upper"]
    assert abs(cover / reps - 0.95) < 3 * np.sqrt(0.95 * 0.05 / reps)
    assert naive_cover / reps < 0.5
