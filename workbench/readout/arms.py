"""Arm versus arm: every pair of treatment arms compared directly, from the readout's own
sufficient statistics, and each arm's chance to be best among all arms.

With two or more treatments a readout that compares each arm with the control only cannot say
whether the arm it ships is better than the runner-up. :func:`compare` answers that:

>>> table = compare(stats, results, ["treatment_a", "treatment_b"], control="control")
>>> table[["metric", "variant", "versus", "effect", "ci_lower", "ci_upper", "sentence"]]

Each pair is analysed by :func:`workbench.stats.analyze` on the two arms' rows of the SAME
statistics table, one arm in the role of the control (same method, alpha, difference, CUPED
and prior options as the readout), so the effect is ``variant / versus - 1`` (relative) or
``variant - versus`` (absolute). With a correction, the p-values and intervals of the table
are corrected together (one family: every pair x metric). ``chance_to_be_best`` is the
engine's Bayesian multi-arm Monte Carlo over all arms (control included) on the same
statistics; for a metric where lower is better it is computed on the statistics of ``-y``
(``1 - y`` for a proportion), so "best" is the lowest.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import StatsInputError
from workbench.readout import decision
from workbench.stats.schema import HURDLE_INPUT, PRODUCTS

COLUMNS = ("metric", "variant", "versus", "effect", "ci_lower", "ci_upper", "p_value",
           "chance_to_be_best", "significant", "sentence")
EXTRA = ("p_value_adjusted", "chance_to_win", "se", "higher_is_better", "error_message",
         "method", "difference")
_VERSUS = "\x00versus"  # the arm in the role of the control, in the stacked pairs table
# analyze options that do not apply to arm-versus-arm comparisons
_BEST_KINDS = ("mean", "ratio", "proportion")  # the kinds whose arm posteriors the engine draws
_DROP = ("correction_family", "planned_weights", "units", "warn", "control", "method", "alpha",
         "difference", "correction")


def empty() -> pd.DataFrame:
    """The arms table of a readout with fewer than two treatments."""
    return pd.DataFrame(columns=[*COLUMNS, *EXTRA])


def ranked(results: pd.DataFrame, treatments: Sequence[str],
           rule: decision.DecisionRule | None = None) -> list[str]:
    """The treatments, best first, by the rule's criterion (:func:`decision.criterion`);
    ties and arms without a criterion keep their order."""
    crit = decision.criterion(results, rule)
    treatments = list(treatments)
    return sorted(treatments, key=lambda v: (-np.nan_to_num(crit.get(v, np.nan), nan=-np.inf),
                                             treatments.index(v)))


def _negated(stats: pd.DataFrame) -> pd.DataFrame:
    """The statistics of ``-y`` for means and ratios (every sum with an odd power of ``y``
    changes sign) and of ``1 - y`` for proportions (``sum(1 - y) z = sum z - sum y z``):
    the same units read backwards, so the largest arm of these is the lowest of ``y``."""
    out = stats.drop(columns=[c for c in HURDLE_INPUT if c in stats.columns]).copy()
    kind = out["kind"].to_numpy()
    signed = np.isin(kind, ("mean", "ratio"))
    for col, prod in PRODUCTS.items():
        if col in out and prod.count("y") % 2:
            out[col] = out[col].astype(float)
            out.loc[signed, col] = -out.loc[signed, col]
    prop = kind == "proportion"
    if prop.any():
        other = {"sum": "n", "sum_product": "den_sum", "pre_sum_product": "pre_sum",
                 "sum_pre_den_product": "pre_den_sum"}
        for col, base in other.items():
            if col in out and base in out:
                out[col] = out[col].astype(float)
                out.loc[prop, col] = out.loc[prop, base].astype(float) - out.loc[prop, col]
        if "sum_squares" in out:
            out["sum_squares"] = out["sum_squares"].astype(float)
            out.loc[prop, "sum_squares"] = out.loc[prop, "sum"]  # (1 - y)^2 = 1 - y
    return out[prop | signed]


def chance_to_be_best(stats: pd.DataFrame, control: str, higher_is_better: dict, *,
                      alpha: float = 0.05, difference: str = "relative",
                      **options) -> pd.DataFrame:
    """``metric, variant, chance_to_be_best`` of every treatment: the engine's Bayesian
    multi-arm chance (:func:`workbench.stats.analyze`, ``method='bayesian'``) over all arms of
    ``stats``, the control included; lowest is best where ``higher_is_better`` is False."""
    from workbench.stats import analyze

    opts = {k: v for k, v in options.items() if k not in _DROP}
    parts = []
    lower = {m for m, h in higher_is_better.items() if h is False or h == 0}
    stats = stats[stats["kind"].isin(_BEST_KINDS)]
    for flip in (False, True):
        sub = stats[stats["metric"].isin(lower) == flip]
        if flip:
            sub = _negated(sub)
        if not len(sub):
            continue
        res = analyze(sub, control=control, method="bayesian", alpha=alpha,
                      difference=difference, warn=False, **opts).to_frame()
        parts.append(res[["metric", "variant", "chance_to_be_best"]])
    return pd.concat(parts, ignore_index=True) if parts else \
        pd.DataFrame(columns=["metric", "variant", "chance_to_be_best"])


def compare(stats: pd.DataFrame, results: pd.DataFrame, treatments: Sequence[str], *,
            control: str, rule: decision.DecisionRule | None = None,
            method: str = "frequentist", alpha: float = 0.05, difference: str = "relative",
            correction: str | None = None, **options) -> pd.DataFrame:
    """The arms table: every pair of treatments compared directly on the rule's metrics.

    Parameters
    ----------
    stats : DataFrame
        The readout's sufficient statistics (overall rows).
    results : DataFrame
        The readout's results (for the metrics' roles, directions and the ranking).
    treatments : sequence of str
        The treatment arms; fewer than two give an empty table.
    control : str
        The control arm (one of the arms of the chance to be best).
    rule : DecisionRule, optional
        Which metrics: the primary ones, and with ``weights`` the OEC's metrics and an
        ``OEC`` row per pair (:func:`workbench.readout.decision.oec`).
    method, alpha, difference, correction, **options
        As the readout's :func:`workbench.stats.analyze` call.

    Returns
    -------
    DataFrame
        :data:`COLUMNS` (plus :data:`EXTRA`), one row per pair x metric; ``variant`` is the
        arm ranked higher by the rule's criterion, ``versus`` the other one; ``effect`` is
        ``variant`` against ``versus``. A pair whose statistics cannot be compared keeps its
        row with ``error_message`` set.
    """
    from workbench.stats import analyze

    rule = rule or decision.DecisionRule()
    treatments = list(treatments)
    if len(treatments) < 2 or stats is None or not len(stats) or not len(results):
        return empty()
    metrics = list(dict.fromkeys([*rule.roles(results)[0], *(rule.weights or {})]))
    sub = stats[stats["metric"].isin(metrics)]
    if not len(sub):
        return empty()
    hib = (results.groupby("metric", sort=False)["higher_is_better"].first().to_dict()
           if "higher_is_better" in results else {})
    order = ranked(results, treatments, rule)
    pairs = [(order[i], order[j]) for i in range(len(order)) for j in range(i + 1, len(order))]
    frames = []
    for k, (v, w) in enumerate(pairs):
        part = sub[sub["variant"].isin([v, w])].copy()
        part["variant"] = part["variant"].where(part["variant"] != w, _VERSUS)
        # each pair is its own block, so CUPED pools the two arms' rows only
        part["dimension"], part["segment"] = "arms", str(k)
        frames.append(part)
    opts = {k: v for k, v in options.items() if k not in _DROP}
    try:
        res = analyze(pd.concat(frames, ignore_index=True), control=_VERSUS, method=method,
                      alpha=alpha, difference=difference, correction=correction,
                      correction_family=[] if correction else None, warn=False,
                      **opts).to_frame()
    except StatsInputError as exc:  # e.g. an arm without any row: every pair row says why
        res = pd.DataFrame([{"metric": m, "variant": v, "segment": str(k), "dimension": "arms",
                             "error_message": str(exc)}
                            for k, (v, _) in enumerate(pairs) for m in metrics])
        for c in ("effect", "ci_lower", "ci_upper", "p_value", "p_value_adjusted", "se",
                  "chance_to_win", "chance_to_be_best"):
            res[c] = np.nan
        res["method"], res["difference"] = method, difference
    seg = res["segment"].astype(int)
    res["versus"] = [pairs[k][1] for k in seg]
    res = res.drop(columns=["dimension", "segment"])
    res["higher_is_better"] = res["metric"].map(lambda m: hib.get(m, True))
    res["role"] = "primary"
    res["error_message"] = res["error_message"].fillna("").astype(str)
    try:
        best = chance_to_be_best(sub[sub["variant"].isin([control, *treatments])], control,
                                 hib, alpha=alpha, difference=difference, **opts)
    except StatsInputError:  # left NaN: the pairwise rows above say what is wrong
        best = pd.DataFrame(columns=["metric", "variant", "chance_to_be_best"])
    res = res.drop(columns="chance_to_be_best").merge(best, on=["metric", "variant"],
                                                      how="left")
    kinds = dict(zip(sub["metric"], sub["kind"]))
    no_best = res["chance_to_be_best"].isna() & res["metric"].map(
        lambda m: kinds.get(m) not in ("mean", "ratio", "proportion"))
    res["significant"] = decision.significant(res, alpha, adjusted=correction is not None)
    if rule.weights:
        o = decision.oec(res, rule, alpha, correction)
        o["method"], o["difference"], o["chance_to_be_best"] = method, difference, np.nan
        res = pd.concat([res, o], ignore_index=True)
    relative = difference != "absolute"
    bayes = method == "bayesian"
    res["sentence"] = [decision.versus_sentence(r, relative=relative, bayes=bayes)
                       for r in res.to_dict("records")]
    if no_best.any():
        res.loc[no_best[no_best].index, "sentence"] += "; " + messages.BEST_NOT_COMPUTABLE.format(
            kind=",".join(sorted({kinds.get(m) for m in res.loc[no_best, "metric"]})))
    cols = [*COLUMNS, *[c for c in EXTRA if c in res]]
    return res[cols].reset_index(drop=True)
