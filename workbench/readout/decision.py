"""THE decision of a readout: verdict wording, the significance rule, per-variant decisions.

Dashboards, the CLI and the record show these words; nothing else writes a verdict.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

UNTRUSTED = "do not trust"


def untrusted(what: str) -> str:
    """``do not trust: <what>``: the wording of a readout voided by a failed data check."""
    return f"{UNTRUSTED}: {what}"


# Verdict of one metric x variant row (dashboards and tests rely on the wording).
VERDICT_SRM = untrusted("SRM")
VERDICT_IMPROVED = "improvement"
VERDICT_WORSE = "deterioration"
VERDICT_HARM = "harm on guardrail"
VERDICT_NONE = "no detectable effect"
VERDICT_ERROR = "not computable"
VERDICTS = (VERDICT_IMPROVED, VERDICT_WORSE, VERDICT_HARM, VERDICT_NONE, VERDICT_ERROR,
            VERDICT_SRM)
# Decision of one variant.
DECISION_SHIP = "ship"
DECISION_DONT = "do not ship"
DECISION_NOT_COMPUTABLE = "not computable"  # "not computable: primary metric m (why)"
# Decision of a readout in which no comparison (or none of the primary metric) was computed:
# never a null result.
NOTHING_COMPUTED = "nothing could be computed"
# How much of a readout was computed (the record's ``workbench.computable`` tag).
COMPUTABLE_ALL, COMPUTABLE_SOME, COMPUTABLE_NONE = "all", "some", "none"


def computable(results: pd.DataFrame) -> str:
    """``all``, ``some`` or ``none``: how many rows of ``results`` were computed (a row is
    not when its verdict is ``not computable`` or it carries an ``error_message``)."""
    if results is None or not len(results):
        return COMPUTABLE_NONE
    bad = not_computed(results)
    return COMPUTABLE_NONE if bad.all() else COMPUTABLE_SOME if bad.any() else COMPUTABLE_ALL


def not_computed(results: pd.DataFrame) -> np.ndarray:
    """Per row: True when it was not computed (verdict `not computable` or an error)."""
    bad = np.zeros(len(results), bool)
    if "verdict" in results:
        bad |= (results["verdict"] == VERDICT_ERROR).to_numpy()
    if "error_message" in results:
        bad |= (results["error_message"].fillna("").astype(str) != "").to_numpy()
    return bad


def _why(rows: pd.DataFrame, with_metric: bool = False) -> str:
    """The distinct reasons of rows that were not computed, in one parenthesis."""
    if "error_message" not in rows:
        return ""
    msgs = [f"{m}: {e}" if with_metric else str(e)
            for m, e in zip(rows["metric"], rows["error_message"].fillna(""))
            if isinstance(e, str) and e]
    msgs = list(dict.fromkeys(msgs))
    return f" ({'; '.join(msgs[:4])}{'; ...' if len(msgs) > 4 else ''})" if msgs else ""


def failed_checks(report) -> list[str]:
    """The data-quality checks of ``report`` (a :class:`~workbench.data.quality.QualityReport`)
    that failed (status ``error``), SRM excluded, as ``check (table.column)`` labels."""
    from workbench.data import quality

    if report is None:
        return []
    errors = report.errors
    labels = []
    for r in errors.itertuples():
        if r.check == quality.SRM:
            continue
        where = f"{r.table}.{r.column}" if r.column else str(r.table)
        labels.append(f"{r.check} ({where})")
    return list(dict.fromkeys(labels))


# What the readout does with the rows or units a data-quality finding is about.
def _consequence(check: str, table: str, column: str, exclude_crossovers: bool) -> str:
    from workbench.data import quality

    if check == quality.CROSSOVERS:
        return ("excluded from the analysis" if exclude_crossovers
                else "kept, in the variant of their first exposure")
    if check in (quality.NAN, quality.INF) or (check == quality.NULLS and table == "events"
                                               and column not in ("user_id", "event_time",
                                                                  "event_type")):
        return "ignored: they add nothing to a unit's metric values"
    if check == quality.NULLS and table == "assignments" and column == "variant":
        return "units without a variant are not analysed"
    if check == quality.NULLS and table == "events":
        return "those events match no unit or window and are not counted"
    if check == quality.UNKNOWN_VARIANT:
        return ("units only in such a variant are compared with the control in extra rows, "
                "outside the decision; units also in a planned variant are crossovers")
    if check == quality.ASSIGNMENT_WINDOW:
        return "kept in the analysis"
    return ""


def data_notes(report, *, exclude_crossovers: bool = True) -> list[str]:
    """One sentence per data-quality finding (error or warning, SRM excluded): what was found
    and what the readout did with it (excluded, ignored, kept)."""
    from workbench.data import quality

    if report is None:
        return []
    notes = []
    for r in report.checks.itertuples():
        if r.status == quality.OK or r.check == quality.SRM:
            continue
        where = f"{r.table}.{r.column}" if r.column else str(r.table)
        what = _consequence(r.check, r.table, r.column, exclude_crossovers)
        status = "Data check failed" if r.status == quality.ERROR else "Data check warning"
        notes.append(f"{status} ({r.check}, {where}): {r.message}" + (f"; {what}" if what else "")
                     + ".")
    return notes


def significant(res: pd.DataFrame, alpha: float, adjusted: bool = True) -> np.ndarray:
    """The significance rule: per row, is the effect distinguishable from zero?

    Bayesian rows (chance to win and no p-value): the chance to win is at least
    ``1 - alpha / 2`` or at most ``alpha / 2``. Otherwise the adjusted p-value (if
    ``adjusted`` and present, else the raw one) is below ``alpha``; rows without a p-value fall
    back to an interval that excludes zero.
    """
    ctw = res["chance_to_win"].to_numpy(float) if "chance_to_win" in res else None
    if ctw is not None and np.isfinite(ctw).any() and res["p_value"].isna().all():
        return (ctw >= 1 - alpha / 2) | (ctw <= alpha / 2)
    padj = res["p_value_adjusted"].to_numpy(float) if adjusted and \
        "p_value_adjusted" in res else np.full(len(res), np.nan)
    p = np.where(np.isfinite(padj), padj, res["p_value"].to_numpy(float))
    ci = (res["ci_lower"].to_numpy(float) > 0) | (res["ci_upper"].to_numpy(float) < 0)
    return np.where(np.isfinite(p), p < alpha, ci)


def verdicts(res: pd.DataFrame, sig: np.ndarray, *, srm: bool) -> np.ndarray:
    """The verdict of each row given its significance (``res`` carries ``effect``,
    ``higher_is_better``, ``role`` and ``error_message``)."""
    good = np.where(res["higher_is_better"], res["effect"] > 0, res["effect"] < 0)
    out = np.where(sig & good, VERDICT_IMPROVED,
                   np.where(sig & ~good, np.where(res["role"] == "guardrail",
                                                  VERDICT_HARM, VERDICT_WORSE),
                            VERDICT_NONE)).astype(object)
    err = res.get("error_message", pd.Series("", index=res.index)).fillna("")
    out[err.to_numpy() != ""] = VERDICT_ERROR
    if srm:
        out[:] = VERDICT_SRM
    return out


def decide(results: pd.DataFrame, treatments: Sequence[str], *, srm: bool,
           srm_p_value: float = float("nan"), failed: Sequence[str] = ()) -> tuple[dict, str]:
    """Per-variant decisions and the one-line decision of a readout.

    A variant ships when every primary metric improved, no guardrail was harmed and every
    guardrail was computed; among those, the one with the largest mean primary lift is named.
    Overrides, in order: no comparison computed (``nothing could be computed``, never a null
    result), an SRM, another failed data check (``failed``, e.g. from :func:`failed_checks`:
    ``do not trust: <checks>``). A variant whose primary metric could not be computed is
    ``not computable: primary metric <m> (<why>)``; when that holds for every variant the line
    is ``nothing could be computed on the primary metric (<why>)``.

    Returns
    -------
    decisions : dict
        Variant -> ``ship``, ``do not ship: <why>``, ``not computable: <why>``, ``no detectable
        effect``, ``nothing could be computed`` or ``do not trust: <checks>``.
    decision : str
        One line for stakeholders.
    """
    failed = list(failed)
    voided = (["SRM"] if srm else []) + failed
    if computable(results) == COMPUTABLE_NONE:
        line = f"{NOTHING_COMPUTED}: every comparison is {VERDICT_ERROR}" + _why(results)
        if voided:
            line += f"; {untrusted(', '.join(voided))}"
        return {v: NOTHING_COMPUTED for v in treatments}, line
    if srm:
        return ({v: VERDICT_SRM for v in treatments},
                f"{VERDICT_SRM} (p = {srm_p_value:.2g})"
                + (f", {', '.join(failed)}" if failed else "")
                + "; fix the assignment before reading any lift")
    if failed:
        label = untrusted(", ".join(failed))
        return ({v: label for v in treatments},
                f"{label}: the data failed its checks; fix it before reading any lift")
    decisions = {}
    best, best_lift = None, -np.inf
    bad = pd.Series(not_computed(results), index=results.index)
    for v in treatments:
        r = results[results["variant"] == v]
        harm = r[r["verdict"] == VERDICT_HARM]
        primary = r[r["role"] == "primary"]
        lost = primary[bad[primary.index]]
        lost_guard = r[(r["role"] == "guardrail") & bad[r.index]]
        if len(harm):
            decisions[v] = f"{DECISION_DONT}: harm on guardrail {', '.join(harm['metric'])}"
        elif (primary["verdict"] == VERDICT_WORSE).any():
            decisions[v] = f"{DECISION_DONT}: primary metric worse"
        elif len(lost):
            decisions[v] = (f"{DECISION_NOT_COMPUTABLE}: primary metric "
                            f"{', '.join(lost['metric'])}" + _why(lost))
        elif len(primary) and (primary["verdict"] == VERDICT_IMPROVED).all():
            if len(lost_guard):
                decisions[v] = (f"{DECISION_NOT_COMPUTABLE}: guardrail "
                                f"{', '.join(lost_guard['metric'])}" + _why(lost_guard))
                continue
            decisions[v] = DECISION_SHIP
            lift = float(primary["effect"].mean())
            if lift > best_lift:
                best, best_lift = v, lift
        else:
            decisions[v] = VERDICT_NONE
    primary_lost = [v for v, d in decisions.items()
                    if d.startswith(f"{DECISION_NOT_COMPUTABLE}: primary")]
    if best is not None:
        decision = f"{DECISION_SHIP} {best}"
    elif decisions and len(primary_lost) == len(decisions):
        rows = results[(results["role"] == "primary") & bad
                       & results["variant"].isin(list(decisions))]
        decision = f"{NOTHING_COMPUTED} on the primary metric" + _why(rows, with_metric=True)
    elif any(d.startswith((DECISION_DONT, DECISION_NOT_COMPUTABLE)) for d in decisions.values()):
        decision = "; ".join(f"{v}: {d}" for v, d in decisions.items())
    else:
        decision = f"{VERDICT_NONE} on the primary metric"
    return decisions, decision
