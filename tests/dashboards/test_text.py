"""The dashboards' sentences and number formats, on hand-made readout records.

The records are built here with known values, so each sentence is checked against what the
record holds: the dashboards word the readout's verdicts and statuses and decide nothing.
"""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.dashboards import text
from workbench.data import quality
from workbench.readout.record import BAYESIAN, RESULTS, VALIDATION, ReadoutRecord


def _row(metric="conversion", variant="treatment", **kw):
    row = {"metric": metric, "variant": variant, "effect": 0.05, "ci_lower": 0.01,
           "ci_upper": 0.09, "p_value": 0.012, "p_value_adjusted": float("nan"),
           "verdict": "improvement", "error_message": None}
    row.update(kw)
    return row


def _checks(**statuses):
    return pd.DataFrame([{"check": name, "table": None, "column": None, "status": status,
                          "count": 1, "share": float("nan"), "p_value": float("nan"),
                          "message": f"{name} said {status}"}
                         for name, status in statuses.items()])


def _record(rows=(), *, validation=None, bayesian=None, srm_p_value=0.5, trustworthy=True,
            decisions=None, reasons=None, **kw):
    tables = {RESULTS: pd.DataFrame(list(rows) or [_row()])}
    if validation is not None:
        tables[VALIDATION] = validation
    if bayesian is not None:
        tables[BAYESIAN] = bayesian
    fields = dict(experiment_id="exp", method="frequentist", alpha=0.05,
                  difference="relative", control="control", decision="ship treatment",
                  srm_p_value=srm_p_value, trustworthy=trustworthy,
                  decisions=decisions or {"treatment": "ship"}, reasons=reasons or {},
                  tables=tables)
    fields.update(kw)
    return ReadoutRecord(**fields)


def test_numbers_are_written_by_the_format_module_only():
    for gone in ("fmt_effect", "fmt_p", "fmt_chance", "fmt_value", "p_equals", "shown_p"):
        assert not hasattr(text, gone), gone  # one place: workbench.format
    assert text.cell(0.123456) == "0.1235" and text.cell(float("nan")) == "-"
    assert text.cell(True) == "True" and text.cell(3) == "3" and text.cell(12345.6) == "12,346"


def test_level_and_difference_come_from_the_record():
    assert text.level(_record(alpha=0.1)) == "90 %" and text.level(_record()) == "95 %"
    assert text.is_relative(_record()) and not text.is_relative(_record(difference="absolute"))
    sentence = text.metric_sentence(_row(effect=1.5, ci_lower=0.5, ci_upper=2.5),
                                    _record(difference="absolute", alpha=0.1))
    assert sentence == "conversion for treatment: improvement: +1.5 [+0.5, +2.5], p = 0.0120."


def test_each_row_says_its_own_verdict_and_the_adjusted_p_value_is_labelled():
    row = _row(verdict="harm on guardrail", effect=-0.04, ci_lower=-0.07, ci_upper=-0.01,
               p_value=0.03, p_value_adjusted=0.06)
    record = _record([row, _row(variant="b", p_value=0.2, p_value_adjusted=0.4)],
                     correction="holm")
    assert text.metric_sentence(row, record) == (
        "conversion for treatment: harm on guardrail: -4.0 % [-7.0 %, -1.0 %], p = 0.0600 "
        "(adjusted, Holm across 2 comparisons; raw 0.0300).")
    # without a correction the raw p-value is shown, unlabelled
    plain = _record([_row(p_value=0.03)])
    assert text.metric_sentence(_row(p_value=0.03), plain).endswith(", p = 0.0300.")
    # every row is in the results table, so the decision box lists no numbers of its own
    assert text.decision_sentences(record) == ("ship treatment", [])


def test_a_row_without_a_verdict_is_shown_as_such():
    """No wording of the dashboard's own: an interval above zero is not turned into a verdict."""
    for missing in (None, "", float("nan")):
        record = _record([_row(verdict=missing, ci_lower=0.02)])
        sentence = text.metric_sentence(record.results.iloc[0].to_dict(), record)
        assert sentence.startswith(f"conversion for treatment: {text.NO_VERDICT}: ")
        assert "higher" not in sentence and "improvement" not in sentence
        assert text.results_table(record).rows[0].verdict == "-"


def test_a_row_that_could_not_be_computed_says_why():
    record = _record([_row(error_message="no units in the variant")])
    assert text.decision_sentences(record)[1] == [
        text.NOTHING_COMPUTED.format(n=1),
        "conversion for treatment: could not be computed (no units in the variant)."]


def test_decisions_of_several_variants_with_their_reasons():
    record = _record([_row(variant="a"), _row(variant="b", verdict="deterioration")],
                     decisions={"a": "ship", "b": "do not ship: primary metric worse"},
                     reasons={"b": ["conversion fell by 2.1%", ""]}, decision="ship a")
    headline, sentences = text.decision_sentences(record)
    assert headline == "ship a" and sentences == []
    assert text.decision_reasons(record) == [
        ("Decision for a: ship", []),
        ("Decision for b: do not ship: primary metric worse", ["conversion fell by 2.1%"])]
    one = _record(reasons={"treatment": ["it won"]})
    assert text.decision_reasons(one) == [("Decision for treatment: ship", ["it won"])]
    assert text.decision_reasons(_record()) == []  # one variant, no reasons: the headline
    assert text.decision_sentences(_record(decision=""))[0] == text.NO_DECISION


def test_chance_to_win_from_the_results_else_the_bayesian_table():
    plain = _record()
    assert text.chance_to_win(plain) == {}
    bayes = pd.DataFrame([_row(chance_to_win=0.91, risk_variant=0.002, risk_control=0.03)])
    assert text.chance_to_win(_record(bayesian=bayes)) == {("conversion", "treatment"): 0.91}
    own = _record([_row(chance_to_win=0.3)], bayesian=bayes)
    assert text.chance_to_win(own) == {("conversion", "treatment"): 0.3}
    # lower is better: a win is a fall, so the chance shown is 1 - P(variant > control)
    down = _record([_row(chance_to_win=0.3, higher_is_better=False)])
    assert text.chance_to_win(down) == {("conversion", "treatment"): pytest.approx(0.7)}
    table = text.results_table(_record(bayesian=bayes))
    assert table.columns() == ["metric", "role", "variant", "baseline", "treatment", "lift",
                               "95 % interval", "p-value", "chance to win", "risk", "verdict"]
    row = table.rows[0]
    assert (row.lift, row.interval, row.p_value, row.chance, row.risk) == \
        ("+5.0 %", "[+1.0 %, +9.0 %]", "0.0120", "91.0 %", "0.20 %")


def test_the_records_other_tables_are_listed_with_titles():
    arms = pd.DataFrame([{"metric": "conversion", "variant": "a", "versus": "b", "effect": 0.02,
                          "ci_lower": -0.01, "ci_upper": 0.05, "p_value": 0.2,
                          "chance_to_be_best": 0.9, "significant": False,
                          "sentence": "a and b cannot be told apart"}])
    record = _record()
    record.tables["arms"] = arms
    assert [(n, t) for n, t, _ in text.section_tables(record)] == [("arms", "Arm versus arm")]
    assert text.robustness_sentence(record) == ""


@pytest.mark.parametrize("status, p, kind, words", [
    (quality.OK, 0.0004, "good", "matches the plan (SRM check p = 0.0004)"),
    (quality.ERROR, 0.2, "bad", "differs from the plan (SRM check p = 0.2000)"),
    (quality.ERROR, 3e-9, "bad", "differs from the plan (SRM check p < 0.0001)"),
    (quality.WARNING, 0.01, "warning", "may differ from the plan"),
])
def test_srm_status_is_the_readouts_not_a_threshold_of_the_dashboard(status, p, kind, words):
    """The p-values are deliberately on the 'wrong' side of 0.001: the status decides."""
    record = _record(validation=_checks(**{quality.SRM: status, quality.NAN: quality.OK}),
                     srm_p_value=p, trustworthy=status != quality.ERROR)
    got_kind, sentence = text.srm_status(record)
    assert got_kind == kind and words in sentence
    assert ("do not trust" in sentence) == (status == quality.ERROR)


def test_srm_mismatch_on_a_trusted_record_does_not_say_do_not_trust():
    record = _record(validation=_checks(**{quality.SRM: quality.ERROR}), srm_p_value=1e-6)
    kind, sentence = text.srm_status(record)
    assert kind == "bad" and "do not trust" not in sentence


def test_srm_not_checked():
    assert text.srm_status(_record()) == ("warning", text.SRM_NOT_CHECKED)
    no_srm_row = _record(validation=_checks(**{quality.NAN: quality.OK}))
    assert text.srm_status(no_srm_row) == ("warning", text.SRM_NOT_CHECKED)


def test_quality_status_counts_the_statuses():
    assert text.quality_status(_record()) == ("warning", [text.NO_CHECKS])
    good = _record(validation=_checks(**{quality.SRM: quality.OK, quality.NAN: quality.OK}))
    assert text.quality_status(good) == ("good", ["All 2 data-quality checks passed."])
    mixed = _record(validation=_checks(**{quality.SRM: quality.ERROR,
                                          quality.CROSSOVERS: quality.WARNING,
                                          quality.NAN: quality.OK}))
    assert text.quality_status(mixed) == ("bad", [
        "Of 3 data-quality checks, 1 failed and 1 needs attention:",
        "Failed: srm: srm said error", "Check: crossovers: crossovers said warning"])
    warned = _record(validation=_checks(**{quality.CROSSOVERS: quality.WARNING,
                                           quality.NAN: quality.WARNING}))
    kind, lines = text.quality_status(warned)
    assert kind == "warning" and lines[0] == "Of 2 data-quality checks, 2 need attention:"


def test_drift_status_words_the_drift_reports_verdict():
    table = pd.DataFrame({"column": ["a", "b", "c", "d"], "drifted": [True, False, None, False]})
    kind, lines = text.drift_status(table, {"dataset_drift": False})
    assert kind == "warning"
    assert lines == ["Some columns drifted: 1 of 3 columns changed (a).",
                     "1 column(s) could not be compared."]
    kind, lines = text.drift_status(table, {"dataset_drift": True})
    assert kind == "bad" and lines[0].startswith("The data has drifted overall: 1 of 3")
    calm = table.assign(drifted=False)
    assert text.drift_status(calm)[0] == "good"
    assert text.drift_status(None) == ("warning", [text.NO_DRIFT_LOGGED])


# -- issue 17: nothing computed never reads as a null result; exclusions are shown -----------
def test_nothing_computed_is_said_and_not_a_null_result():
    rows = [_row(variant=v, verdict="not computable", error_message="zero variance in both "
                 "arms: no test is possible", effect=float("nan")) for v in ("a", "b")]
    record = _record(rows, decision="nothing could be computed: every comparison is not "
                     "computable (zero variance in both arms: no test is possible)",
                     trustworthy=False, decisions={"a": "nothing could be computed",
                                                   "b": "nothing could be computed"})
    headline, sentences = text.decision_sentences(record)
    assert headline == record.decision  # the readout's words, not the dashboard's
    assert sentences[0] == "No comparison could be computed (2 tried), so this readout says " \
        "nothing about the effect: it is not a null result."
    assert sentences[1] == text.NOT_TRUSTWORTHY
    assert not any("no detectable effect" in s for s in sentences)
    # the MLflow tag and metrics say the same
    assert record.tags()["workbench.computable"] == "none"
    assert record.tags()["workbench.trustworthy"] == "false"
    assert record.metrics()["comparisons"] == 2 and record.metrics()["comparisons_computed"] == 0


def test_some_not_computed_and_the_readouts_exclusions_are_shown():
    note = ("Data check failed (crossovers, assignments.user_id): 387 unit(s) (2.00%) assigned "
            "to more than one variant; excluded from the analysis.")
    record = _record([_row(variant="a"), _row(variant="b", error_message="control has no units")],
                     notes=[note], decisions={"a": "ship", "b": "no detectable effect"})
    sentences = text.decision_sentences(record)[1]
    assert sentences[0] == "1 of the 2 comparisons could not be computed (each says why below)."
    assert note in sentences
    assert record.tags()["workbench.computable"] == "some"
    assert text.NOT_TRUSTWORTHY not in sentences  # the record says it is trustworthy
