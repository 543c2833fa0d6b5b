"""THE decision of a readout: verdict wording, the significance rule, the decision rule
(:class:`DecisionRule`), per-variant decisions and the reasons that explain them.

Dashboards, the CLI and the record show these words; nothing else writes a verdict.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench import messages
from workbench.errors import ParameterError

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


def comparisons(results: pd.DataFrame | None) -> int:
    """The number of comparisons a correction of ``results`` (overall rows) adjusts for: the
    rows with a p-value."""
    if results is None or "p_value" not in results:
        return 0
    return int(pd.to_numeric(results["p_value"], errors="coerce").notna().sum())


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


# -- the decision rule ------------------------------------------------------------------------
OEC = "OEC"  # the overall evaluation criterion's name in the arms table
OEC_LABEL = "overall evaluation criterion"
OEC_DEPENDENCE = ("bound", "independent")


@dataclass(frozen=True)
class DecisionRule:
    """How a readout decides: what must improve, what must not be harmed, how arms are ranked.

    An arm **ships** when

    1. its criterion improved: every primary metric is significantly better than the control
       (:func:`significant`, in the metric's good direction; a primary metric with a
       superiority margin, results column ``margin_kind == "superiority"``, must also be shown
       to beat it), or, with ``weights``, the overall evaluation criterion (OEC) is;
    2. every guardrail held: it was computed, no harm is significant, and where it has a
       margin (results column ``margin``) it is *shown* to be within it
       (``margin_p_value < alpha``; Bayesian ``margin_chance >= 1 - alpha``). A guardrail
       without a margin holds when no harm is detected; one with a margin that is not shown
       within it is *inconclusive* and the arm does not ship.

    Among the arms that ship the one with the largest criterion is chosen: the mean primary
    lift in the good direction, or the OEC. With several arms, the arms table
    (:mod:`workbench.readout.arms`) says whether the data separate it from the others, and
    the decision line says so. ``higher_is_better: false`` flips the good direction of a
    metric everywhere (its fall is an improvement).

    Attributes
    ----------
    primary : tuple of str, optional
        The metrics that must improve; None: the metrics with role ``primary``.
    guardrails : tuple of str, optional
        The metrics that must not be harmed; None: the metrics with role ``guardrail``.
    weights : mapping of str to float, optional
        An OEC: ``OEC = sum_m w_m * s_m * effect_m`` with ``s_m = +1`` when higher is better
        and ``-1`` otherwise, so a positive weight always rewards an improvement. Effects are
        in the readout's ``difference`` units (relative lifts add up as "percent of
        baseline"; absolute differences only make sense when the weights put them in one
        currency). With weights the OEC replaces the primary metrics as the criterion (they
        are still reported). Its test is a normal (z) test of ``OEC / se`` at the readout's
        ``alpha``, corrected across arms with the readout's correction; its interval is
        ``OEC +- z se`` (Bayesian: the normal posterior with that mean and sd).
    oec_dependence : {'bound', 'independent'}
        The sufficient statistics are per metric, so the covariance of two metrics' effects is
        unknown. ``'bound'`` (default): ``se = sum_m |w_m| se_m``, the largest it can be
        whatever the correlations (exact for perfectly correlated metrics), so the OEC's
        interval is never too narrow. ``'independent'``: ``se = sqrt(sum_m w_m^2 se_m^2)``,
        exact for independent metrics but too narrow when they are positively correlated
        (conversion and revenue usually are).
    """

    primary: tuple | None = None
    guardrails: tuple | None = None
    weights: Mapping[str, float] | None = None
    oec_dependence: str = "bound"

    def __post_init__(self):
        for name in ("primary", "guardrails"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            if value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.weights is not None:
            w = self.weights
            ok = isinstance(w, Mapping) and len(w) and all(
                fmt.finite(v) for v in w.values()) and any(float(v) != 0 for v in w.values())
            if not ok:
                raise ParameterError(messages.RULE_BAD_WEIGHTS.format(weights=w))
            object.__setattr__(self, "weights", {str(k): float(v) for k, v in w.items()})
        if self.oec_dependence not in OEC_DEPENDENCE:
            raise ParameterError(messages.RULE_BAD_DEPENDENCE.format(
                choices=list(OEC_DEPENDENCE), value=self.oec_dependence))

    def roles(self, results: pd.DataFrame) -> tuple[list[str], list[str]]:
        """The primary metrics and the guardrails of ``results`` under this rule.

        Raises
        ------
        ParameterError
            The rule names a metric that ``results`` does not have.
        """
        known = list(dict.fromkeys(results["metric"])) if len(results) else []
        role = (results.groupby("metric", sort=False)["role"].first().to_dict()
                if "role" in results and len(results) else {})
        out = []
        for field_name, wanted in (("primary", "primary"), ("guardrails", "guardrail")):
            given = getattr(self, field_name)
            names = [m for m in known if role.get(m) == wanted] if given is None else list(given)
            out.append(names)
        named = {"primary": self.primary or (), "guardrails": self.guardrails or (),
                 "weights": tuple(self.weights or ())}
        for field_name, names in named.items():
            unknown = [m for m in names if m not in known]
            if unknown:
                raise ParameterError(messages.RULE_UNKNOWN_METRIC.format(
                    field=field_name, names=", ".join(unknown), known=", ".join(known)))
        return out[0], out[1]

    def criterion_metrics(self, results: pd.DataFrame) -> list[str]:
        """The metrics the arms are ranked on: the OEC's, else the primary ones."""
        return list(self.weights) if self.weights else self.roles(results)[0]

    def describe(self, results: pd.DataFrame) -> str:
        """The rule in one sentence."""
        primary, guard = self.roles(results)
        if self.weights:
            what = (f"the {OEC_LABEL} (" + ", ".join(
                f"{fmt.number(w)} x {m}" for m, w in self.weights.items())
                + f"; se {'bounded' if self.oec_dependence == 'bound' else 'for independent metrics'})"
                " improves")
        else:
            what = ("every primary metric (" + (", ".join(primary) or "none") + ") improves")
        return (f"ship an arm when {what} and every guardrail ("
                + (", ".join(guard) or "none") + ") holds; among those, the largest "
                + ("OEC" if self.weights else "primary lift") + " is chosen")


def _sign(frame: pd.DataFrame) -> np.ndarray:
    """+1 where higher is better, -1 where lower is (the good direction of each row)."""
    if "higher_is_better" not in frame:
        return np.ones(len(frame))
    hib = frame["higher_is_better"].to_numpy(dtype=object)
    return np.where([h is False or h is np.False_ or h == 0 for h in hib], -1.0, 1.0)


def _bayesian(frame: pd.DataFrame) -> bool:
    """Rows read with chance to win (no p-values): the significance rule's test."""
    if "chance_to_win" not in frame or not len(frame):
        return False
    return bool(np.isfinite(frame["chance_to_win"].to_numpy(float)).any()
                and frame["p_value"].isna().all()) if "p_value" in frame else True


def oec(results: pd.DataFrame, rule: DecisionRule, alpha: float = 0.05,
        correction: str | None = None) -> pd.DataFrame:
    """The overall evaluation criterion of each arm (see :class:`DecisionRule`).

    One row per ``variant`` (per ``variant, versus`` when ``results`` has a ``versus``
    column, as the arms table does): ``metric`` (``OEC``), ``effect, se, ci_lower,
    ci_upper, p_value, p_value_adjusted, chance_to_win, significant, error_message``. An
    arm whose OEC metric was not computed gets an ``error_message`` and NaN numbers.
    """
    from scipy import special  # here, not at the top: the dashboards' kernels import this module

    from workbench.stats import corrections

    keys = ["variant", "versus"] if "versus" in results else ["variant"]
    weights = rule.weights or {}
    bayes = _bayesian(results)
    z = special.ndtri(1 - alpha / 2)
    rows = []
    bad = pd.Series(not_computed(results), index=results.index) if len(results) else None
    for key, g in results.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g[g["metric"].isin(list(weights))]
        row = dict(zip(keys, key), metric=OEC, effect=np.nan, se=np.nan, ci_lower=np.nan,
                   ci_upper=np.nan, p_value=np.nan, chance_to_win=np.nan, error_message="")
        if set(g["metric"]) != set(weights) or bad[g.index].any() or "se" not in g \
                or not np.isfinite(g["se"].to_numpy(float)).all():
            row["error_message"] = messages.OEC_NOT_COMPUTABLE + _why(g[bad[g.index]],
                                                                      with_metric=True)
            rows.append(row)
            continue
        w = g["metric"].map(weights).to_numpy(float) * _sign(g)
        eff, se_m = g["effect"].to_numpy(float), g["se"].to_numpy(float)
        est = float(w @ eff)
        se = float(np.abs(w) @ se_m) if rule.oec_dependence == "bound" \
            else float(np.sqrt((w ** 2) @ (se_m ** 2)))
        row.update(effect=est, se=se, ci_lower=est - z * se, ci_upper=est + z * se)
        if bayes:
            row["chance_to_win"] = float(special.ndtr(est / se)) if se > 0 else float(est > 0)
        else:
            row["p_value"] = float(2 * special.ndtr(-abs(est) / se)) if se > 0 else 0.0
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*keys, "metric", "effect", "se", "ci_lower", "ci_upper",
                                      "p_value", "chance_to_win", "error_message"])
    out["higher_is_better"] = True
    out["role"] = "primary"
    p = out["p_value"].to_numpy(float)
    out["p_value_adjusted"] = corrections.adjust(p, None, correction) if correction and \
        np.isfinite(p).any() else p
    if correction and np.isfinite(p).any() and not bayes:
        # the interval at the level the adjustment implies, so it agrees with the adjusted p
        _, levels = corrections.adjust(p, None, correction, return_levels=True)
        a = corrections.adjusted_alpha(p, out["p_value_adjusted"].to_numpy(float), alpha,
                                       levels)
        zz = special.ndtri(1 - a / 2)
        out["ci_lower"] = out["effect"] - zz * out["se"]
        out["ci_upper"] = out["effect"] + zz * out["se"]
    out["significant"] = significant(out, alpha) if len(out) else []
    return out


def criterion(results: pd.DataFrame, rule: DecisionRule | None = None,
              oec_table: pd.DataFrame | None = None) -> dict[str, float]:
    """Per variant, the number arms are ranked on: the OEC, else the mean primary effect in
    the good direction (NaN when not computed)."""
    rule = rule or DecisionRule()
    if not len(results):
        return {}
    if rule.weights:
        table = oec_table if oec_table is not None else oec(results, rule)
        return dict(zip(table["variant"], table["effect"].astype(float)))
    primary, _ = rule.roles(results)
    r = results[results["metric"].isin(primary)]
    good = pd.Series(_sign(r) * r["effect"].to_numpy(float), index=r.index)
    good[not_computed(r)] = np.nan
    out = good.groupby(r["variant"], sort=False).mean().to_dict()
    return {v: out.get(v, np.nan) for v in dict.fromkeys(results["variant"])}


# -- per-row reading --------------------------------------------------------------------------
def _p_text(p: float) -> str:
    text = fmt.p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _relative(results: pd.DataFrame, default: str = "relative") -> bool:
    if "difference" in results and len(results):
        return str(results["difference"].iloc[0]) != "absolute"
    return default != "absolute"


def _evidence(row: Mapping, bayes: bool, relative: bool, label: str) -> str:
    """``p < 0.0001 (adjusted, Holm across 12 comparisons)`` or ``chance to win 99.7 %, risk
    0.01 %`` (Bayesian; in the metric's good direction)."""
    hib = bool(row.get("higher_is_better", True))
    if bayes:
        ctw = row.get("chance_to_win", np.nan)
        text = f"chance to win {fmt.chance(ctw if hib else 1 - ctw)}"
        risk = row.get("risk_variant" if hib else "risk_control", np.nan)
        return text + (f", risk {fmt.risk(risk, relative)}" if fmt.finite(risk) else "")
    padj = row.get("p_value_adjusted", np.nan)
    p = row.get("p_value", np.nan)
    if label and fmt.finite(padj):
        raw = f"; raw {fmt.p_value(p)}" if fmt.finite(p) else ""
        return f"{_p_text(padj)} ({label}{raw})"
    return _p_text(p) if fmt.finite(p) else "no p-value"


def _numbers(row: Mapping, relative: bool) -> str:
    return (f"{fmt.effect(row.get('effect'), relative)} "
            f"{fmt.interval(row.get('ci_lower'), row.get('ci_upper'), relative)}")


def _margin(row: Mapping, alpha: float) -> tuple[float, str, bool | None, str] | None:
    """``(margin, kind, shown, evidence)`` of a row with a margin, else None. ``shown`` is
    None when the margin test gave no number."""
    m = row.get("margin", np.nan)
    if not fmt.finite(m):
        return None
    kind = str(row.get("margin_kind") or "non-inferiority")
    p, chance = row.get("margin_p_value", np.nan), row.get("margin_chance", np.nan)
    if fmt.finite(p):
        return float(m), kind, bool(p < alpha), _p_text(p)
    if fmt.finite(chance):
        return float(m), kind, bool(chance >= 1 - alpha), f"chance {fmt.chance(chance)}"
    return float(m), kind, None, "no test"


def _bound(margin: float, kind: str, hib: bool, relative: bool) -> str:
    """The margin as the effect it allows: ``-1.0 %`` (no worse than) or ``+1.0 %`` (better
    than), flipped when lower is better."""
    worse = -margin if kind != "superiority" else margin
    return fmt.effect(worse if hib else -worse, relative)


# Status of one row under the rule.
_IMPROVED, _WORSE, _NONE, _LOST, _SHORT = "improved", "worse", "none", "lost", "short"
_HELD, _HARMED, _INCONCLUSIVE = "held", "harmed", "inconclusive"


def _primary_status(row: Mapping, lost: bool, alpha: float) -> str:
    if lost:
        return _LOST
    v = row.get("verdict")
    if v in (VERDICT_WORSE, VERDICT_HARM):
        return _WORSE
    if v != VERDICT_IMPROVED:
        return _NONE
    m = _margin(row, alpha)
    if m is not None and m[1] == "superiority" and not m[2]:
        return _SHORT
    return _IMPROVED


def _guard_status(row: Mapping, lost: bool, alpha: float) -> str:
    if lost:
        return _LOST
    if row.get("verdict") in (VERDICT_HARM, VERDICT_WORSE):
        return _HARMED
    m = _margin(row, alpha)
    if m is not None and not m[2]:
        return _INCONCLUSIVE
    return _HELD


def metric_sentence(row: Mapping, *, alpha: float = 0.05, relative: bool = True,
                    bayes: bool = False, label: str = "", guardrail: bool = False,
                    lost: bool = False, why: str = "") -> str:
    """One plain sentence on one metric x variant row, e.g. ``conversion improved: +3.1 %
    [+1.2 %, +5.0 %], p < 0.0001 (adjusted, Holm across 12 comparisons)``, ``guardrail
    sessions held: no worse than -1.0 % (p = 0.0021)`` or ``guardrail sessions: no harm
    detected, but not shown to be within -1.0 %: inconclusive``."""
    name = str(row.get("metric"))
    hib = bool(row.get("higher_is_better", True))
    if lost:
        return (f"guardrail {name}" if guardrail else name) + f" not computable{why}"
    nums, ev = _numbers(row, relative), _evidence(row, bayes, relative, label)
    m = _margin(row, alpha)
    if guardrail:
        status = _guard_status(row, False, alpha)
        if status == _HARMED:
            return f"guardrail {name} harmed: {nums}, {ev}"
        if m is None:
            return f"guardrail {name} held: no harm detected: {nums}, {ev}"
        bound = _bound(m[0], m[1], hib, relative)
        if status == _HELD:
            return f"guardrail {name} held: no worse than {bound} ({m[3]}; {nums})"
        return (f"guardrail {name}: no harm detected, but not shown to be within {bound}: "
                f"inconclusive ({m[3]}; {nums})")
    status = _primary_status(row, False, alpha)
    if status == _WORSE:
        return f"{name} worse: {nums}, {ev}"
    if status == _NONE:
        return f"{name}: no detectable effect: {nums}, {ev}"
    text = f"{name} improved: {nums}, {ev}"
    if m is not None and m[1] == "superiority":
        bound = _bound(m[0], m[1], hib, relative)
        text += (f"; beyond its minimum worthwhile effect {bound} ({m[3]})" if m[2] else
                 f"; not shown to beat its minimum worthwhile effect {bound} ({m[3]})")
    return text


def versus_sentence(row: Mapping, *, relative: bool = True, bayes: bool = False) -> str:
    """The sentence of one arms-table row: ``treatment_a beats treatment_b on conversion:
    +1.2 % [+0.3 %, +2.1 %], p = 0.0100 (chance to be best 97.2 %)`` or ``treatment_a and
    treatment_b cannot be told apart on conversion: ...``."""
    v, w, name = row.get("variant"), row.get("versus"), row.get("metric")
    name = OEC_LABEL if name == OEC else name
    err = row.get("error_message")
    if isinstance(err, str) and err:
        return f"{v} versus {w} on {name}: not computable ({err})"
    hib = bool(row.get("higher_is_better", True))
    nums, ev = _numbers(row, relative), _evidence(row, bayes, relative, "")
    best = row.get("chance_to_be_best", np.nan)
    tail = f" (chance {v} is best {fmt.chance(best)})" if fmt.finite(best) else ""
    good = (row.get("effect", np.nan) > 0) == hib
    if row.get("significant"):
        if good:
            return f"{v} beats {w} on {name}: {nums}, {ev}{tail}"
        return f"{w} beats {v} on {name}: {v} {nums}, {ev}{tail}"
    return f"{v} and {w} cannot be told apart on {name}: {nums}, {ev}{tail}"


# -- the decision -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Explanation:
    """A readout's decision and why: ``decisions`` (variant -> decision), ``decision`` (the
    one line) and ``reasons`` (variant -> tuple of sentences)."""

    decisions: dict
    decision: str
    reasons: dict


def decide(results: pd.DataFrame, treatments: Sequence[str], *, srm: bool,
           srm_p_value: float = float("nan"), failed: Sequence[str] = (),
           rule: DecisionRule | None = None, alpha: float = 0.05,
           correction: str | None = None,
           arms: pd.DataFrame | None = None) -> tuple[dict, str]:
    """Per-variant decisions and the one-line decision of a readout.

    A variant ships when it passes the decision ``rule`` (:class:`DecisionRule`; by default
    every primary metric improved, no guardrail was harmed and every guardrail was computed);
    among those, the one with the largest criterion (mean primary lift in the good
    direction, or the OEC) is named. Overrides, in order: no comparison computed (``nothing
    could be computed``, never a null result), an SRM, another failed data check (``failed``,
    e.g. from :func:`failed_checks`: ``do not trust: <checks>``). A variant whose primary
    metric could not be computed is ``not computable: primary metric <m> (<why>)``; when that
    holds for every variant the line is ``nothing could be computed on the primary metric
    (<why>)``.

    With ``arms`` (the arms table of :func:`workbench.readout.arms.compare`, as
    :meth:`~workbench.readout.experiment.Experiment.analyze` passes it) and several
    treatments, the line also says why the chosen arm wins: ``ship a: conversion +3.1 %
    [...]; beats b on conversion by +1.2 % [...] (chance to be best 97.2 %)``, or that ``b
    cannot be told apart from it`` and ``a chosen for the larger lift``, and for each arm
    that does not ship, its decision. Without ``arms`` the line is ``ship <arm>``.

    Returns
    -------
    decisions : dict
        Variant -> ``ship``, ``do not ship: <why>``, ``not computable: <why>``, ``no detectable
        effect``, ``nothing could be computed`` or ``do not trust: <checks>``.
    decision : str
        One line for stakeholders.
    """
    e = explain(results, treatments, srm=srm, srm_p_value=srm_p_value, failed=failed,
                rule=rule, alpha=alpha, correction=correction, arms=arms)
    return e.decisions, e.decision


def explain(results: pd.DataFrame, treatments: Sequence[str], *, srm: bool,
            srm_p_value: float = float("nan"), failed: Sequence[str] = (),
            rule: DecisionRule | None = None, alpha: float = 0.05,
            correction: str | None = None,
            arms: pd.DataFrame | None = None) -> Explanation:
    """:func:`decide` and the reasons of each variant: which metrics carried it (or held it
    back), which guardrails held, and, with several arms, why it was or was not chosen over
    the others (from ``arms``). Numbers are written by :mod:`workbench.format`."""
    rule = rule or DecisionRule()
    treatments = list(treatments)
    failed = list(failed)
    voided = (["SRM"] if srm else []) + failed
    if computable(results) == COMPUTABLE_NONE:
        line = f"{NOTHING_COMPUTED}: every comparison is {VERDICT_ERROR}" + _why(results)
        if voided:
            line += f"; {untrusted(', '.join(voided))}"
        return Explanation({v: NOTHING_COMPUTED for v in treatments}, line,
                           {v: (line,) for v in treatments})
    if srm:
        line = (f"{VERDICT_SRM} (p = {srm_p_value:.2g})"
                + (f", {', '.join(failed)}" if failed else "")
                + "; fix the assignment before reading any lift")
        return Explanation({v: VERDICT_SRM for v in treatments}, line,
                           {v: (f"sample ratio mismatch (SRM p = {fmt.p_value(srm_p_value)}): "
                                "no lift of this readout can be trusted",) for v in treatments})
    if failed:
        label = untrusted(", ".join(failed))
        line = f"{label}: the data failed its checks; fix it before reading any lift"
        return Explanation({v: label for v in treatments}, line, {v: (line,) for v in treatments})
    primary, guards = rule.roles(results)
    bad = pd.Series(not_computed(results), index=results.index)
    relative = _relative(results)
    bayes = _bayesian(results)
    n_tests = comparisons(results)
    label = fmt.correction_label(correction, n_tests) if correction else ""
    oec_table = oec(results, rule, alpha, correction) if rule.weights else None
    crit = criterion(results, rule, oec_table)
    decisions: dict = {}
    reasons: dict = {}
    for v in treatments:
        r = results[results["variant"] == v]
        prim = r[r["metric"].isin(primary)]
        grd = r[r["metric"].isin(guards)]
        prim_status = {m: _primary_status(row, bool(bad[i]), alpha)
                       for i, m, row in zip(prim.index, prim["metric"], prim.to_dict("records"))}
        grd_status = {m: _guard_status(row, bool(bad[i]), alpha)
                      for i, m, row in zip(grd.index, grd["metric"], grd.to_dict("records"))}
        harm = [m for m, s in grd_status.items() if s == _HARMED]
        harm += [m for m in r.loc[r["verdict"] == VERDICT_HARM, "metric"] if m not in harm
                 and m not in grd_status]
        lost_guard = [m for m, s in grd_status.items() if s == _LOST]
        unsure = [m for m, s in grd_status.items() if s == _INCONCLUSIVE]
        lost = prim[[prim_status[m] == _LOST for m in prim["metric"]]]
        if rule.weights:
            o = oec_table[oec_table["variant"] == v].iloc[0]
            improved = bool(o["significant"]) and o["effect"] > 0
            worse = bool(o["significant"]) and o["effect"] < 0
            oec_lost = bool(o["error_message"])
        else:
            improved = bool(prim_status) and all(s == _IMPROVED for s in prim_status.values())
            worse = any(s == _WORSE for s in prim_status.values())
            oec_lost = False
        short = [m for m, s in prim_status.items() if s == _SHORT]
        if harm:
            decisions[v] = f"{DECISION_DONT}: harm on guardrail {', '.join(harm)}"
        elif worse:
            decisions[v] = f"{DECISION_DONT}: " + (f"{OEC_LABEL} worse" if rule.weights
                                                     else "primary metric worse")
        elif oec_lost:
            decisions[v] = f"{DECISION_NOT_COMPUTABLE}: {OEC_LABEL} ({o['error_message']})"
        elif len(lost) and not rule.weights:
            decisions[v] = (f"{DECISION_NOT_COMPUTABLE}: primary metric "
                            f"{', '.join(lost['metric'])}" + _why(lost))
        elif improved:
            if lost_guard:
                rows = r[r["metric"].isin(lost_guard)]
                decisions[v] = (f"{DECISION_NOT_COMPUTABLE}: guardrail "
                                f"{', '.join(lost_guard)}" + _why(rows))
            elif unsure:
                decisions[v] = (f"{DECISION_DONT}: guardrail {', '.join(unsure)} not shown "
                                "to be within its margin")
            else:
                decisions[v] = DECISION_SHIP
        elif short and not rule.weights and all(s in (_IMPROVED, _SHORT)
                                                 for s in prim_status.values()):
            decisions[v] = (f"{DECISION_DONT}: primary metric {', '.join(short)} not shown to "
                            "beat its minimum worthwhile effect")
        else:
            decisions[v] = VERDICT_NONE
        # the reasons: what carried it or held it back, then the guardrails, then the rest
        why: list[str] = []
        if rule.weights:
            o = oec_table[oec_table["variant"] == v].iloc[0]
            why.append(_oec_sentence(o, rule, relative, bayes, label))
        carried = r[r["metric"].isin([*primary, *(m for m in rule.weights or ()
                                                    if m not in guards)])]
        for i, row in zip(carried.index, carried.to_dict("records")):
            why.append(metric_sentence(row, alpha=alpha, relative=relative, bayes=bayes,
                                       label=label, lost=bool(bad[i]),
                                       why=_why(carried.loc[[i]])))
        for i, row in zip(grd.index, grd.to_dict("records")):
            why.append(metric_sentence(row, alpha=alpha, relative=relative, bayes=bayes,
                                       label=label, guardrail=True, lost=bool(bad[i]),
                                       why=_why(grd.loc[[i]])))
        rest = r[~r["metric"].isin([*primary, *guards, *(rule.weights or ())])
                 & ~bad[r.index]]
        if "significant" in rest:
            for row in rest[rest["significant"].astype(bool)].to_dict("records"):
                why.append(metric_sentence(row, alpha=alpha, relative=relative, bayes=bayes,
                                           label=label).replace(
                    str(row["metric"]), f"{row['metric']} (not in the rule)", 1))
        reasons[v] = why
    ship = [v for v in treatments if decisions[v] == DECISION_SHIP]
    best = max(ship, key=lambda v: (np.nan_to_num(crit.get(v, np.nan), nan=-np.inf),
                                    -treatments.index(v))) if ship else None
    primary_lost = [v for v, d in decisions.items()
                    if d.startswith(f"{DECISION_NOT_COMPUTABLE}: primary")]
    if best is not None:
        decision = f"{DECISION_SHIP} {best}"
        if arms is not None and len(treatments) > 1:
            decision, more = _why_chosen(best, treatments, decisions, results, rule,
                                         oec_table, arms, relative, bayes)
            for v, sentences in more.items():
                reasons[v].extend(sentences)
    elif decisions and len(primary_lost) == len(decisions):
        rows = results[results["metric"].isin(primary) & bad
                       & results["variant"].isin(list(decisions))]
        decision = f"{NOTHING_COMPUTED} on the primary metric" + _why(rows, with_metric=True)
    elif any(d.startswith((DECISION_DONT, DECISION_NOT_COMPUTABLE)) for d in decisions.values()):
        decision = "; ".join(f"{v}: {d}" for v, d in decisions.items())
    else:
        decision = f"{VERDICT_NONE} on the " + (OEC_LABEL if rule.weights else "primary metric")
    if arms is not None and len(arms) and best is None:
        for v in treatments:
            reasons[v].extend(s for s in _arm_rows(arms, v, rule, results)["sentence"]
                              if isinstance(s, str))
    return Explanation(decisions, decision, {v: tuple(s) for v, s in reasons.items()})


def _oec_sentence(o: Mapping, rule: DecisionRule, relative: bool, bayes: bool,
                  label: str) -> str:
    parts = ", ".join(f"{fmt.number(w)} x {m}" for m, w in (rule.weights or {}).items())
    head = f"{OEC_LABEL} ({parts})"
    if o.get("error_message"):
        return f"{head} not computable ({o['error_message']})"
    ev = (f"chance to win {fmt.chance(o['chance_to_win'])}" if bayes
          else _evidence(o, False, relative, "adjusted across arms" if label else ""))
    word = ("improved" if o["effect"] > 0 else "worse") if o["significant"] \
        else "no detectable effect"
    se = "bounded se" if rule.oec_dependence == "bound" else "se for independent metrics"
    return f"{head} {word}: {_numbers(o, relative)}, {ev} ({se})"


def _arm_rows(arms: pd.DataFrame, v: str, rule: DecisionRule, results: pd.DataFrame,
              versus: str | None = None) -> pd.DataFrame:
    """The arms-table rows on the criterion (the OEC, else the primary metrics) between ``v``
    and ``versus`` (any other arm when None), either way round."""
    if arms is None or not len(arms):
        return pd.DataFrame(columns=["metric", "variant", "versus", "sentence"])
    metrics = [OEC] if rule.weights else rule.roles(results)[0]
    a = arms[arms["metric"].isin(metrics)]
    mine = (a["variant"] == v) | (a["versus"] == v)
    if versus is not None:
        mine &= (a["variant"] == versus) | (a["versus"] == versus)
    return a[mine]


def _why_chosen(best, treatments, decisions, results, rule, oec_table, arms, relative, bayes):
    """The line ``ship <best>: <criterion>; <why it wins over each other arm>`` and the
    sentences each arm gains from the comparison."""
    primary = rule.roles(results)[0]
    if rule.weights:
        o = oec_table[oec_table["variant"] == best].iloc[0]
        head = f"OEC {_numbers(o, relative)}"
    else:
        r = results[(results["variant"] == best) & results["metric"].isin(primary)]
        head = ", ".join(f"{m} {_numbers(row, relative)}"
                         for m, row in zip(r["metric"], r.to_dict("records")))
    parts = [f"{DECISION_SHIP} {best}: {head}"]
    what = "OEC" if rule.weights else "lift"
    more: dict = {v: [] for v in treatments}
    apart = []
    for w in treatments:
        if w == best:
            continue
        rows = _arm_rows(arms, best, rule, results, w)
        more[best].extend(s for s in rows["sentence"] if isinstance(s, str))
        more[w].extend(s for s in rows["sentence"] if isinstance(s, str))
        if decisions[w] != DECISION_SHIP:
            parts.append(f"{w}: {decisions[w]}")
            continue
        if not len(rows):
            parts.append(f"{w} also ships (not compared with it directly)")
            apart.append(w)
            continue
        wins, ties = [], []
        for row in rows.to_dict("records"):
            flipped = row["variant"] != best  # stored the other way round (equal criteria)
            name = "OEC" if row["metric"] == OEC else row["metric"]
            good = (row["effect"] > 0) == bool(row.get("higher_is_better", True))
            nums = (f"{row['variant']} versus {row['versus']} " if flipped else "") \
                + _numbers(row, relative)
            c = np.nan if flipped else row.get("chance_to_be_best", np.nan)
            chance = f"chance to be best {fmt.chance(c)}" if fmt.finite(c) else ""
            if row.get("significant") and good != flipped and not row.get("error_message"):
                wins.append(f"{name} by {nums}" + (f" ({chance})" if chance else ""))
            else:
                ties.append(f"{name} ({nums}" + (f", chance {best} is best {fmt.chance(c)}"
                                                 if chance else "") + ")")
        if wins and not ties:
            parts.append(f"beats {w} on " + " and ".join(wins))
            more[w].append(f"not chosen: {best} beats it on the "
                           + ("OEC" if rule.weights else "primary metric" if len(primary) == 1
                              else "primary metrics"))
        else:
            parts.append(f"{w} cannot be told apart from it on " + " and ".join(ties))
            apart.append(w)
            more[w].append(f"not chosen: {best} has the larger {what}, though the data cannot "
                           "separate them")
    if apart:
        on = f" on {primary[0]}" if not rule.weights and len(primary) == 1 else ""
        parts.append(f"{best} chosen for the larger {what}{on}")
        more[best].insert(0, f"chosen: the largest {what}{on} among the arms that ship; the "
                             f"data cannot separate it from {', '.join(apart)}")
    elif any(decisions[w] == DECISION_SHIP for w in treatments if w != best):
        more[best].insert(0, "chosen: it beats every other arm that ships on the "
                             + ("OEC" if rule.weights else "primary metric"))
    else:
        more[best].insert(0, "chosen: the only arm that ships")
    return "; ".join(parts), more
