"""THE decision of a readout: verdict wording, the significance rule, per-variant decisions.

Dashboards, the CLI and the record show these words; nothing else writes a verdict.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Verdict of one metric x variant row (dashboards and tests rely on the wording).
VERDICT_SRM = "do not trust: SRM"
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
           srm_p_value: float = float("nan")) -> tuple[dict, str]:
    """Per-variant decisions and the one-line decision of a readout.

    A variant ships when every primary metric improved and no guardrail was harmed; among
    those, the one with the largest mean primary lift is named. An SRM overrides everything.

    Returns
    -------
    decisions : dict
        Variant -> ``ship``, ``do not ship: <why>``, ``no detectable effect`` or the SRM verdict.
    decision : str
        One line for stakeholders.
    """
    if srm:
        return ({v: VERDICT_SRM for v in treatments},
                f"{VERDICT_SRM} (p = {srm_p_value:.2g}); fix the assignment before reading "
                "any lift")
    decisions = {}
    best, best_lift = None, -np.inf
    for v in treatments:
        r = results[results["variant"] == v]
        harm = r[r["verdict"] == VERDICT_HARM]
        primary = r[r["role"] == "primary"]
        if len(harm):
            decisions[v] = f"{DECISION_DONT}: harm on guardrail {', '.join(harm['metric'])}"
        elif (primary["verdict"] == VERDICT_WORSE).any():
            decisions[v] = f"{DECISION_DONT}: primary metric worse"
        elif len(primary) and (primary["verdict"] == VERDICT_IMPROVED).all():
            decisions[v] = DECISION_SHIP
            lift = float(primary["effect"].mean())
            if lift > best_lift:
                best, best_lift = v, lift
        else:
            decisions[v] = VERDICT_NONE
    if best is not None:
        decision = f"{DECISION_SHIP} {best}"
    elif any(d.startswith(DECISION_DONT) for d in decisions.values()):
        decision = "; ".join(f"{v}: {d}" for v, d in decisions.items())
    else:
        decision = f"{VERDICT_NONE} on the primary metric"
    return decisions, decision
