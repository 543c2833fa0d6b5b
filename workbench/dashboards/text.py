"""Every sentence the dashboards show (numbers are written by :mod:`workbench.format`).

The sentences only word what a run logged: the readout record's decision, the verdict of each
results row, the data-quality statuses. Nothing here compares a p-value with a threshold or
decides a verdict; that is :mod:`workbench.readout` and :mod:`workbench.data.quality`'s job.
Sentences are plain text (the widgets escape them).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workbench import format as fmt
from workbench.readout import numbers, table
from workbench.readout.decision import not_computed
from workbench.readout.record import (
    ARMS,
    BAYESIAN,
    PHASES,
    POWER,
    RESULTS,
    ROBUSTNESS,
    SIMULATION,
    VALIDATION,
    ReadoutRecord,
    overall_rows,
)

NO_RUNS = ("No published {kind} runs yet. A data scientist publishes one with "
           "<code>workbench publish RUN_ID</code>.")
RUN_NOT_FOUND = "Run “{run_id}” was not found among the {scope} runs."
SHOWING_LATEST = " Showing the latest one instead."
PART_FAILED = "This part of the dashboard could not be shown."
LOADING_WIDGETS = "Loading the choice of runs, metrics and segments…"
NO_RECORD = ("This run logged no readout record (it was made by an older version of the "
             "workbench), so its results cannot be shown here; run the readout again.")
NO_DECISION = "No decision was recorded for this run."
NO_VERDICT = "no verdict recorded"
NO_RESULTS = "No results were logged."
NO_BAYESIAN = ("This run has no Bayesian readout, so there is no chance to win; the "
               "p-value says how surprising the difference would be if there were no effect.")
NO_TIMESERIES = "This run logged no daily results."
NO_TIMESERIES_FOR = "No daily results for {metric}."
NO_SEGMENTS = "This run logged no segment breakdown."
NO_SEGMENTS_FOR = "No {dimension} breakdown for {metric}."
NOT_LOGGED_FOR_TASK = "No {what} was logged for this model task."
FROM_RUN = "from run {label}"
MODEL_TASK = "Model task {experiment}"
SRM_NOT_CHECKED = "The traffic split was not checked in this run (no SRM check logged)."
SRM_MISMATCH = "Warning: the traffic split differs from the plan (SRM check {p})."
SRM_UNTRUSTED = (" Something went wrong in the assignment: do not trust these results until it "
                 "is explained.")
SRM_DOUBT = "The traffic split may differ from the plan (SRM check {p}): look into it."
SRM_MATCH = "The traffic split matches the plan (SRM check {p})."
NO_CHECKS = "No data-quality checks were logged for this run."
ALL_CHECKS_PASSED = "All {n} data-quality checks passed."
NO_DRIFT_LOGGED = "No drift check was logged for this run."
NOTHING_COMPUTED = ("No comparison could be computed ({n} tried), so this readout says nothing "
                    "about the effect: it is not a null result.")
SOME_NOT_COMPUTED = "{k} of the {n} comparisons could not be computed (each says why below)."
NOT_TRUSTWORTHY = "This readout is marked not trustworthy: do not act on it until this is fixed."
PLAN_TITLE = "Plan"
PLAN_HEADLINE = ("Plan for {experiment}: {metric} needs {units} units ({days}) to detect a "
                 "{mde} effect (fixed horizon, as planned).")
PLAN_LINKED = ("Planned in run {label} (pick it in the run list for the plan); the planned units "
               "and days of each metric are the power table's planned columns.")
PLAN_NOT_FOUND = "This readout links to plan run {run_id}, which is not among the logged runs."
PLAN_TABLE_TITLE = "Units and days to reach the planned power"
PLAN_NO_TABLE = "This plan run logged no plan table."
PLAN_FIGURE_TITLE = "Power by duration (solid: without CUPED; dashed: with CUPED)"
PLAN_HEAD = ["metric", "CUPED", "baseline", "rho", "MDE", "units (fixed)", "days (fixed)",
             "units (sequential)", "days (sequential)"]


# ------------------------------------------------------------------------------- numbers
# Every number is written by workbench.format (one place for every surface); what a row shows
# (the adjusted p-value, the oriented chance to win) is chosen by workbench.readout.numbers.
def finite(value: Any) -> bool:
    """True for a number that is neither None, NaN nor infinite."""
    return fmt.finite(value)


def cell(value: Any) -> str:
    """A table cell or summary value of a model run: numbers by :func:`workbench.format.number`,
    flags and text as they are."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float | int):
        return fmt.number(value)
    return str(value)


def level(record: ReadoutRecord) -> str:
    """The intervals' confidence level, ``95 %`` for alpha 0.05."""
    return fmt.level(record.alpha)


def is_relative(record: ReadoutRecord) -> bool:
    """Whether effects are lifts (relative) rather than absolute differences."""
    return record.difference != "absolute"


# ------------------------------------------------------------------------------- readout
def chance_to_win(record: ReadoutRecord) -> dict:
    """``{(metric, variant): chance to win}`` (in the metric's good direction) from the record's
    results, else from its Bayesian table (a frequentist readout logs the Bayesian one beside
    it)."""
    for name in (RESULTS, BAYESIAN):
        frame = overall_rows(record.table(name))
        if frame is not None and "chance_to_win" in frame.columns \
                and frame["chance_to_win"].notna().any():
            return {(r["metric"], r["variant"]): numbers.chance_of(r)
                    for r in frame.to_dict("records")}
    return {}


def evidence(row: Mapping[str, Any], record: ReadoutRecord) -> str:
    """``p = 0.0600 (adjusted, Holm across 12 comparisons; raw 0.0300)`` or ``p = 0.0300``
    (the row's shown p-value, labelled); empty without a p-value."""
    p = numbers.shown_p(row)
    if not finite(p):
        return ""
    label = record.p_value_label
    if numbers.corrected(record.tables.get(RESULTS), record.correction):
        return f"{fmt.p_equals(p)} ({label}; raw {fmt.p_value(row.get('p_value'))})"
    return fmt.p_equals(p)


def metric_sentence(row: Mapping[str, Any], record: ReadoutRecord,
                    chance: Any = None) -> str:
    """One results row in words, with the numbers of the results table: ``conversion for b:
    improvement: +3.1 % [+1.0 %, +5.2 %], p = 0.0123 (adjusted, Holm across 12 comparisons;
    raw 0.0021), chance to win 99.7 %.``"""
    metric, variant = row.get("metric", "?"), row.get("variant", "?")
    error = row.get("error_message")
    if isinstance(error, str) and error:
        return f"{metric} for {variant}: could not be computed ({error})."
    relative = is_relative(record)
    verdict = row.get("verdict")
    verdict = verdict if isinstance(verdict, str) and verdict else NO_VERDICT
    parts = [f"{fmt.effect(row.get('effect'), relative)} "
             f"{fmt.interval(row.get('ci_lower'), row.get('ci_upper'), relative)}"]
    if evidence(row, record):
        parts.append(evidence(row, record))
    if finite(chance):
        parts.append(f"chance to win {fmt.chance(chance)}")
    return f"{metric} for {variant}: {verdict}: {', '.join(parts)}."


def decision_sentences(record: ReadoutRecord) -> tuple[str, list[str]]:
    """The headline decision and the sentences under it (plain text, not escaped).

    The sentences: that nothing (or not everything) could be computed, that the readout is not
    trustworthy (as the record says), the record's notes (what the readout excluded or
    ignored, and why) and one sentence per row that could not be computed. Each variant's
    decision and its reasons are :func:`decision_reasons`; the rows' numbers are the results
    table (:func:`workbench.readout.table.results_table`).
    """
    headline = record.decision or NO_DECISION
    sentences: list[str] = []
    results = record.results
    n = 0 if results is None else len(results)
    how_much = record.computable  # the readout's count, not judged here
    if how_much == "none":
        sentences.append(NOTHING_COMPUTED.format(n=n))
    elif how_much == "some":
        sentences.append(SOME_NOT_COMPUTED.format(k=int(not_computed(results).sum()), n=n))
    if not record.trustworthy:
        sentences.append(NOT_TRUSTWORTHY)
    # what the readout excluded or ignored, and why (and sections it skipped)
    sentences += [str(note) for note in record.notes if note]
    if results is None or results.empty:
        return headline, sentences
    for row in results.to_dict("records"):
        error = row.get("error_message")
        if isinstance(error, str) and error:
            sentences.append(metric_sentence(row, record))
    return headline, sentences


def decision_reasons(record: ReadoutRecord) -> list[tuple[str, list[str]]]:
    """``[("Decision for b: ship", [reason, ...]), ...]``: each variant's decision with the
    readout's reasons for it (worded by :mod:`workbench.readout.decision`)."""
    out = []
    for variant, decision in record.decisions.items():
        reasons = [str(r) for r in record.reasons.get(variant, ()) if r]
        if reasons or len(record.decisions) > 1:
            out.append((f"Decision for {variant}: {decision}", reasons))
    return out


def results_table(record: ReadoutRecord) -> table.ResultsTable:
    """THE results table of the record (the notebook's and the report's too)."""
    return table.results_table(record)


def section_tables(record: ReadoutRecord) -> list[tuple[str, str, Any]]:
    """``(name, title, frame)`` of the record's arm-versus-arm, robustness, power and
    simulation tables, in that order, when it has them."""
    out = []
    for name in (ARMS, ROBUSTNESS, POWER, SIMULATION, PHASES):
        frame = record.table(name)
        if frame is not None and not frame.empty:
            out.append((name, table.TITLES[name], frame))
    return out


def robustness_sentence(record: ReadoutRecord) -> str:
    """The robustness table in one sentence, as the readout words it (empty without one)."""
    frame = record.table(ROBUSTNESS)
    if frame is None or frame.empty:
        return ""
    from workbench.readout.robustness import summary

    return summary(frame)


def _quality():
    # imported on use: the quality module pulls in the engine side (Ibis)
    from workbench.data import quality

    return quality


def srm_status(record: ReadoutRecord) -> tuple[str, str]:
    """(kind, sentence) about the sample ratio mismatch check, as the readout judged it.

    The status is the SRM row of the record's validation table; the p-value is the record's.
    """
    quality = _quality()
    table = record.table(VALIDATION)
    rows = (table[table["check"] == quality.SRM] if table is not None and not table.empty
            else None)
    p = record.srm_p_value
    if rows is None or rows.empty:
        return "warning", SRM_NOT_CHECKED
    status = str(rows["status"].iloc[0])
    if status == quality.ERROR:
        return "bad", SRM_MISMATCH.format(p=fmt.p_equals(p)) + (
            "" if record.trustworthy else SRM_UNTRUSTED)
    if status == quality.WARNING:
        return "warning", SRM_DOUBT.format(p=fmt.p_equals(p))
    return "good", SRM_MATCH.format(p=fmt.p_equals(p))


def quality_status(record: ReadoutRecord) -> tuple[str, list[str]]:
    """(kind, sentences) about the data-quality checks of the record's validation table
    (:meth:`workbench.data.quality.QualityReport.to_frame`: ``check, status, message``...)."""
    quality = _quality()
    table = record.table(VALIDATION)
    if table is None or table.empty:
        return "warning", [NO_CHECKS]
    found: dict[str, list[str]] = {quality.ERROR: [], quality.WARNING: []}
    for row in table.to_dict("records"):
        if row["status"] in found:
            message = row.get("message")
            found[row["status"]].append(f"{row['check']}: {message}"
                                        if isinstance(message, str) and message
                                        else str(row["check"]))
    failed, warned = found[quality.ERROR], found[quality.WARNING]
    if not failed and not warned:
        return "good", [ALL_CHECKS_PASSED.format(n=len(table))]
    parts = []
    if failed:
        parts.append(f"{len(failed)} failed")
    if warned:
        parts.append(f"{len(warned)} {'needs' if len(warned) == 1 else 'need'} attention")
    lines = [f"Of {len(table)} data-quality checks, {' and '.join(parts)}:"]
    lines += [f"Failed: {x}" for x in failed] + [f"Check: {x}" for x in warned]
    return ("bad" if failed else "warning"), lines


# ------------------------------------------------------------------------------- models
def drift_status(table, summary: Mapping[str, Any] | None = None) -> tuple[str, list[str]]:
    """(kind, sentences) from a ``drift`` table (:mod:`workbench.drift` columns).

    Whether the data drifted overall is the drift run's own verdict (its summary's
    ``dataset_drift``); the table gives which columns changed.
    """
    if table is None or table.empty or "drifted" not in table.columns:
        return "warning", [NO_DRIFT_LOGGED]
    judged = table[table["drifted"].notna()]
    if judged.empty:
        return "warning", ["No column could be compared for drift."]
    drifted = [str(c) for c, d in zip(judged["column"], judged["drifted"]) if bool(d)]
    if not drifted:
        kind = "good"
        lines = [f"No drift: none of the {len(judged)} columns changed between the reference "
                 "and the current data."]
    else:
        overall = bool((summary or {}).get("dataset_drift"))
        kind = "bad" if overall else "warning"
        lines = [f"{'The data has drifted overall' if overall else 'Some columns drifted'}: "
                 f"{len(drifted)} of {len(judged)} columns changed "
                 f"({', '.join(drifted[:10])}{', ...' if len(drifted) > 10 else ''})."]
    skipped = len(table) - len(judged)
    if skipped:
        lines.append(f"{skipped} column(s) could not be compared.")
    return kind, lines


# ------------------------------------------------------------------------------- plans
def plan_relative(plan: Any) -> bool:
    """Whether a plan run's MDEs are relative lifts (its ``relative`` parameter)."""
    return (getattr(plan, "parameters", None) or {}).get("relative", True) is not False


def plan_sentence(plan: Any, linked: bool = False) -> str:
    """A plan run (a :class:`~workbench.dashboards.catalogue.RunRecord` of kind ``plan``) in
    one sentence, from the summary it logged (``Plan.headline()``); ``linked``: as the plan a
    readout links to."""
    if linked:  # the numbers are the power table's (one place), not repeated here
        return PLAN_LINKED.format(label=plan.label)
    summary = plan.summary or {}
    values = dict(metric=summary.get("primary_metric") or "?",
                  units=fmt.count(summary.get("planned_n")),
                  days=fmt.days(summary.get("planned_days")),
                  mde=(fmt.percent(abs(summary["mde"])) if plan_relative(plan)
                       else fmt.number(abs(summary["mde"])))
                  if finite(summary.get("mde")) else fmt.MISSING)
    return PLAN_HEADLINE.format(experiment=summary.get("experiment_id") or plan.experiment,
                                **values)


def plan_cells(frame: Any, relative: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells of a logged ``plan`` table (one row per metric x CUPED)."""
    rows = []
    for r in frame.to_dict("records"):
        mde = r.get("mde")
        rows.append([str(r.get("metric")), fmt.yes_no(r.get("cuped")),
                     fmt.number(r.get("baseline")), fmt.number(r.get("rho")),
                     fmt.percent(abs(mde)) if relative and finite(mde) else fmt.number(mde),
                     fmt.count(r.get("n_fixed")), fmt.days(r.get("days_fixed")),
                     fmt.count(r.get("n_sequential")), fmt.days(r.get("days_sequential"))])
    return list(PLAN_HEAD), rows
