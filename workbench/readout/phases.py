"""Staged rollouts as phases: per-phase SRM and effects, and their stratified combination.

A phase is a span of days with its own planned split (a ramp 10 % -> 25 % -> 50 %). A unit
belongs to the phase in which it was first exposed (``assigned_at``). Per phase the split is
tested against that phase's plan (:func:`workbench.stats.srm.srm`, THE SRM) and the effect is
estimated on that phase's units; the phases are then combined by stratification
(:func:`workbench.stats.stratified.combine`) with each phase's share of the units as its
weight, so a split that changes between phases cannot bias the estimate while the baseline
drifts (naive pooling of the units does: Simpson's paradox).

Phases come from the ``experiments`` table (optional columns ``phase`` and ``traffic``, one row
per variant x phase; a table without ``phase`` is one phase) or from the call
(``Experiment.from_source(..., phases=[Phase(...), ...])``).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workbench import messages
from workbench.data.assignment import parse_weights
from workbench.errors import ParameterError
from workbench.stats.moments import basic_moments
from workbench.stats.srm import SRM_THRESHOLD, srm
from workbench.stats.stratified import combine, restate

PHASE = "phase"  # the grouping column (workbench.stats.schema.GROUP_COLUMNS)
STRATIFIED = "(stratified)"
POOLED = "(pooled)"
COLUMNS = ("metric", "variant", "phase", "start_date", "end_date", "weight", "planned_weight",
           "n_control", "n_variant", "control_mean", "variant_mean", "effect", "ci_lower",
           "ci_upper", "p_value", "se", "chance_to_win", "risk_control", "risk_variant",
           "srm_p_value", "note", "error_message")
_BAYES = ("chance_to_win", "risk_control", "risk_variant")


@dataclass(frozen=True)
class Phase:
    """One phase of a staged rollout.

    Attributes
    ----------
    name : str
    start, end : datetime.date
        First and last (inclusive) day of exposure in the phase.
    weights : mapping
        Planned share of each variant in the phase (normalised; a variant absent has 0).
    traffic : float, optional
        Share of eligible traffic exposed in the phase (reported, not used by the maths).
    """

    name: str
    start: dt.date
    end: dt.date
    weights: Mapping[str, float] = field(default_factory=dict)
    traffic: float | None = None

    @property
    def bounds(self) -> tuple[str, dt.datetime, dt.datetime]:
        """``(name, start, end)`` as timestamps, ``end`` exclusive (midnight after ``end``)."""
        return (self.name, dt.datetime.combine(self.start, dt.time()),
                dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time()))


def coerce(phases, variants: Sequence[str]) -> tuple[Phase, ...]:
    """Validated phases, sorted by start, from :class:`Phase` objects or mappings with the
    same fields (``start``/``end`` as dates or ISO strings).

    Raises
    ------
    ParameterError
        Overlapping phases, an end before a start, duplicate names, weights that are not
        non-negative numbers summing to more than 0, or a variant not in ``variants``.
    """
    out = []
    for i, p in enumerate(phases):
        if isinstance(p, Mapping):
            unknown = set(p) - {"name", "start", "end", "weights", "traffic"}
            if unknown:
                raise ParameterError(f"phases[{i}]: unknown field(s) {sorted(unknown)}")
            p = Phase(name=str(p.get("name", f"phase_{i + 1}")), start=p["start"], end=p["end"],
                      weights=dict(p.get("weights") or {}), traffic=p.get("traffic"))
        if not isinstance(p, Phase):
            raise ParameterError(f"phases[{i}] must be a Phase or a mapping, got "
                                 f"{type(p).__name__}")
        start, end = pd.Timestamp(p.start).date(), pd.Timestamp(p.end).date()
        if end < start:
            raise ParameterError(f"phase {p.name!r}: end {end} is before start {start}")
        try:  # the one reader of variant weights (assignment's), normalised to sum 1
            w = parse_weights({str(k): v for k, v in dict(p.weights).items()})
        except ParameterError as exc:
            raise ParameterError(f"phase {p.name!r}: {exc}") from None
        bad = [k for k in w if k not in variants]
        if bad:
            raise ParameterError(f"phase {p.name!r}: weights name {bad}, not a variant "
                                 f"({list(variants)})")
        w = {v: w.get(v, 0.0) for v in variants}
        out.append(Phase(str(p.name), start, end, w, p.traffic))
    out.sort(key=lambda p: p.start)
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ParameterError(f"phase names must be unique, got {names}")
    for a, b in zip(out, out[1:]):
        if b.start <= a.end:
            raise ParameterError(f"phases {a.name!r} ({a.start}..{a.end}) and {b.name!r} "
                                 f"({b.start}..{b.end}) overlap")
    return tuple(out)


def from_table(meta: pd.DataFrame, variants: Sequence[str]) -> tuple[Phase, ...]:
    """The phases declared in an experiment's ``experiments`` rows (one per variant x phase);
    empty when the table has no ``phase`` column (one phase)."""
    if PHASE not in meta.columns or meta.empty:
        return ()
    phases = []
    for name, rows in meta.groupby(PHASE, sort=False):
        traffic = (float(rows["traffic"].iloc[0]) if "traffic" in rows
                   and pd.notna(rows["traffic"].iloc[0]) else None)
        phases.append(Phase(str(name), pd.Timestamp(rows["start_date"].min()).date(),
                            pd.Timestamp(rows["end_date"].max()).date(),
                            dict(zip(rows["variant"].astype(str),
                                     rows["planned_weight"].astype(float))), traffic))
    return coerce(phases, variants)


def implied_weights(phases: Sequence[Phase], units: Mapping[str, float],
                    variants: Sequence[str]) -> tuple[float, ...]:
    """The split the phases imply over all units: ``sum_k N_k w_kv / sum_k N_k`` (``units``:
    units per phase); the phases' mean split when no phase has units."""
    n = np.array([float(units.get(p.name, 0.0)) for p in phases])
    w = np.array([[p.weights.get(v, 0.0) for v in variants] for p in phases])
    share = n / n.sum() if n.sum() > 0 else np.full(len(phases), 1 / len(phases))
    return tuple(float(x) for x in share @ w)


def _srm(counts: pd.DataFrame, phases: Sequence[Phase], threshold: float) -> dict:
    """THE SRM of each phase against its plan: ``{phase: SRMResult}`` (None without units)."""
    out = {}
    for p in phases:
        row = counts.loc[p.name] if p.name in counts.index else pd.Series(dtype=float)
        got = {v: float(row.get(v, 0.0)) for v in p.weights}
        got |= {str(v): float(c) for v, c in row.items() if c > 0}
        out[p.name] = srm(got, dict(p.weights), threshold) if sum(got.values()) > 0 else None
    return out


def analyze(stats: pd.DataFrame, phases: Sequence[Phase], *, control: str, analyze_fn,
            method: str = "frequentist", alpha: float = 0.05, difference: str = "relative",
            srm_threshold: float = SRM_THRESHOLD, pooled: pd.DataFrame | None = None,
            **kw) -> tuple[pd.DataFrame, dict]:
    """The phases table and the per-phase SRM results.

    Parameters
    ----------
    stats : DataFrame
        Stats-engine input per metric x variant x ``phase`` (the compiler's ``phase_stats``).
    phases : sequence of Phase
    control : str
    analyze_fn : callable
        :func:`workbench.stats.analyze` (passed in: the readout owns the call).
    method, alpha, difference, **kw
        As the readout; per-phase rows use them. The stratified combination is of the
        per-phase frequentist estimates (:func:`~workbench.stats.stratified.combine`), then
        stated in ``method``'s terms (:func:`~workbench.stats.stratified.restate`): a z
        interval, the always-valid interval and p-value at the combined units, or the
        Gaussian posterior (the readout's prior) with chance to win and expected losses.
    pooled : DataFrame, optional
        The readout's pooled (naive) frequentist rows, shown as ``(pooled)`` rows beside the
        stratified ones.

    Returns
    -------
    table, srm_results
        ``table``: :data:`COLUMNS`, one row per metric x variant x phase, then the
        ``(stratified)`` row (weights: each phase's share of the units) and the ``(pooled)``
        row; ``srm_results``: ``{phase: SRMResult or None}``.
    """
    if stats.empty:
        return pd.DataFrame(columns=list(COLUMNS)), {}
    n = stats.drop_duplicates(["variant", PHASE])[["variant", PHASE, "n"]]
    counts = n.pivot(index=PHASE, columns="variant", values="n").fillna(0.0)
    srm_res = _srm(counts, phases, srm_threshold)
    units = counts.sum(axis=1)
    share = {p.name: float(units.get(p.name, 0.0)) / max(float(units.sum()), 1.0)
             for p in phases}
    base = dict(control=control, alpha=alpha, warn=False, **kw)
    shown_res = analyze_fn(stats, correction=None, method=method, difference=difference,
                           **base)
    shown, opts = shown_res.to_frame(), shown_res.settings
    freq = analyze_fn(stats, correction=None, method="frequentist", difference="absolute",
                      **base).to_frame()
    mom = basic_moments(stats)
    ctrl = stats.assign(var_mean=mom["var_unit"] / mom["n"])
    ctrl = ctrl[ctrl["variant"] == control].set_index(["metric", PHASE])["var_mean"]
    by = {p.name: p for p in phases}
    rows = []
    for (metric, variant), grp in shown.groupby(["metric", "variant"], sort=False):
        f = freq[(freq["metric"] == metric) & (freq["variant"] == variant)].set_index(PHASE)
        for r in grp.to_dict("records"):
            p = by[r[PHASE]]
            s = srm_res.get(p.name)
            rows.append({"metric": metric, "variant": variant, "phase": p.name,
                         "start_date": p.start, "end_date": p.end, "weight": share[p.name],
                         "planned_weight": p.weights.get(variant, 0.0),
                         "n_control": r["control_n"], "n_variant": r["variant_n"],
                         "control_mean": r["control_mean"], "variant_mean": r["variant_mean"],
                         "effect": r["effect"], "ci_lower": r["ci_lower"],
                         "ci_upper": r["ci_upper"], "p_value": r["p_value"], "se": r["se"],
                         **{c: r.get(c, np.nan) for c in _BAYES},
                         "srm_p_value": np.nan if s is None else s.p_value,
                         "note": "" if s is None or not s.flagged else s.message,
                         "error_message": r["error_message"]})
        ok = [k for k in f.index if share.get(k, 0) > 0 and not f.loc[k, "error_message"]
              and np.isfinite(f.loc[k, "se"])]
        left = [k for k in f.index if k not in ok and share.get(k, 0) > 0]
        row = {"metric": metric, "variant": variant, "phase": STRATIFIED,
               "start_date": phases[0].start, "end_date": phases[-1].end,
               "n_control": float(f["control_n"].sum()), "n_variant": float(f["variant_n"].sum())}
        if ok:
            est = combine(f.loc[ok, "control_mean"], f.loc[ok, "variant_mean"],
                          f.loc[ok, "se"] ** 2,
                          [ctrl.get((metric, k), np.nan) for k in ok],
                          [share[k] for k in ok], difference=difference, alpha=alpha)
            said = restate(
                est, method, float(f.loc[ok, "control_n"].sum() + f.loc[ok, "variant_n"].sum()),
                alpha=alpha, alternative=shown_res.alternative,
                tuning=opts["sequential_tuning"], prior_mean=opts["prior_mean"],
                prior_sd=opts["prior_sd"] if opts["prior"] == "proper" else None,
                scale=1.0 if difference == "relative" else abs(est.control_mean))
            row |= {"weight": float(sum(share[k] for k in ok)), "control_mean": est.control_mean,
                    "variant_mean": est.variant_mean, **said,
                    "note": messages.PHASES_WEIGHTS + (
                        " " + messages.PHASES_LEFT_OUT.format(phases=", ".join(left))
                        if left else ""),
                    "error_message": "" if np.isfinite(est.effect) else
                    messages.PHASES_NOT_COMBINED}
        else:
            row |= {"note": "", "error_message": messages.PHASES_NOT_COMBINED}
        rows.append(row)
        if pooled is not None and len(pooled):
            pr = pooled[(pooled["metric"] == metric) & (pooled["variant"] == variant)]
            if len(pr):
                pr = pr.iloc[0]
                rows.append({"metric": metric, "variant": variant, "phase": POOLED,
                             "start_date": phases[0].start, "end_date": phases[-1].end,
                             "weight": np.nan, "n_control": pr.get("control_n", np.nan),
                             "n_variant": pr.get("variant_n", np.nan),
                             "control_mean": pr["control_mean"],
                             "variant_mean": pr["variant_mean"], "effect": pr["effect"],
                             "ci_lower": pr["ci_lower"], "ci_upper": pr["ci_upper"],
                             "p_value": pr["p_value"], "se": pr.get("se", np.nan),
                             "note": messages.PHASES_POOLED, "error_message": ""})
    table = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    return table, srm_res


def headline(results: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The readout's overall rows with effect, interval, p-value, means, standard error and
    (Bayesian) chance to win and expected losses replaced by the stratified row of the phases
    table (where it could be computed); with one treatment its chance to be best is its
    chance to win."""
    out = results.copy()
    strat = table[(table["phase"] == STRATIFIED) & table["effect"].notna()]
    cols = ["control_mean", "variant_mean", "effect", "ci_lower", "ci_upper", "p_value", "se",
            *_BAYES]
    key = strat.set_index(["metric", "variant"])[cols]
    idx = pd.MultiIndex.from_frame(out[["metric", "variant"]])
    hit = idx.isin(key.index)
    if hit.any():
        vals = key.reindex(idx[hit])
        for c in cols:
            if c in out.columns:
                out.loc[hit, c] = vals[c].to_numpy()
        out.loc[hit, "p_value_adjusted"] = out.loc[hit, "p_value"]
        if "test" in out.columns:
            out.loc[hit, "test"] = "stratified"
        if "chance_to_be_best" in out.columns and out["variant"].nunique() == 1:
            out.loc[hit, "chance_to_be_best"] = out.loc[hit, "chance_to_win"]
    return out
