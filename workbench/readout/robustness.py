"""The robustness check: the decision re-evaluated under the other defensible analysis choices.

One choice is changed at a time from the readout's own, and the decision is taken again exactly
as :meth:`~workbench.readout.experiment.Experiment.analyze` takes it (same rule, alpha,
difference, data-quality report):

========== ====================================================================================
choice     settings
========== ====================================================================================
cuped      on (``cuped="auto"``) / off
cap        the metrics' own caps / every cappable metric (mean, ratio) winsorised at its 99th /
           99.9th percentile / no cap (new sufficient statistics: one engine pass each)
prior      Bayesian chance-to-win decision under ``N(0, 0.3^2)`` on the lift / a flat prior
correction Holm / Benjamini-Hochberg / none across the metrics x variants
crossovers excluded / kept (event logs only: a second compiler; per-unit tables: not applicable)
method     fixed-horizon (frequentist) / sequential (always-valid)
========== ====================================================================================

Every choice but ``cap`` and ``crossovers`` reuses the memoised sufficient statistics (no new
query). The table (:data:`COLUMNS`) has one row per choice x setting; ``baseline`` marks the
readout's own setting (and the first row, ``choice == "readout"``), ``flips`` the settings under
which the decision differs from the readout's. The decision compared is the action: ``ship
<arm>`` or, when nothing ships, each variant's decision.

>>> table = experiment.robustness(result)          # or experiment.analyze(robustness=True)
>>> summary(table)
'robust: the decision (ship treatment_a) holds under all 13 other analysis choices'
"""
from __future__ import annotations

import copy
import inspect
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench import messages
from workbench.errors import ParameterError, WorkbenchError
from workbench.readout import decision

COLUMNS = ["choice", "setting", "decision", "flips", "primary_effect", "baseline", "note"]
# More columns (the table may carry more than the contract's).
EXTRA = ["primary_metric", "variant", "primary_ci_lower", "primary_ci_upper", "error_message"]
CHOICES = ("cuped", "cap", "prior", "correction", "crossovers", "method")
NOT_APPLICABLE = "not applicable"
NOT_COMPUTABLE = "not computable"
ROBUST, NOT_ROBUST, NOT_CHECKED = "true", "false", "not checked"
CAP_LEVELS = {"99 %": 0.99, "99.9 %": 0.999}
CAPPABLE = ("mean", "ratio")  # a proportion cannot be capped, a quantile needs no cap
AS_ANALYSED = "as analysed"


def robustness(experiment: Any, result: Any, *, srm_threshold: float | None = None,
               **stats_options) -> pd.DataFrame:
    """The decision of ``result`` re-evaluated under each alternative analysis choice.

    Parameters
    ----------
    experiment : Experiment
        The experiment ``result`` was read from (event log or per-unit table).
    result : AnalysisResult
        The readout (its method, alpha, difference, correction and rule are reused).
    srm_threshold : float, optional
        Unused beyond the readout's report (kept for symmetry with ``analyze``).
    **stats_options
        The ``**stats_options`` the readout was analysed with (``cuped``, prior options,
        ``sequential_tuning``...).

    Returns
    -------
    DataFrame
        :data:`COLUMNS` then :data:`EXTRA`; one row per choice x setting (see the module
        docstring), the readout's own first.

    Raises
    ------
    ParameterError
        ``result`` is not a readout of ``experiment``.
    """
    if getattr(result, "experiment_id", None) != experiment.experiment_id:
        raise ParameterError(messages.ROBUSTNESS_OTHER_EXPERIMENT.format(
            result=getattr(result, "experiment_id", None), experiment=experiment.experiment_id))
    check = _Check(experiment, result, stats_options)
    return check.table()


def summary(table: pd.DataFrame | None) -> str:
    """One line: ``robust: ...`` or ``not robust: the decision (...) flips under cap = 99 %
    (no detectable effect), ...``; ``not checked`` for an empty table."""
    if table is None or not len(table):
        return "robustness: not checked"
    base = table[table["baseline"].astype(bool)]
    what = str(base["decision"].iloc[0]) if len(base) else "?"
    others = table[~table["baseline"].astype(bool) & (table["decision"] != NOT_APPLICABLE)]
    flips = others[_flags(others)]
    if not len(flips):
        return (f"robust: the decision ({what}) holds under all {len(others)} other analysis "
                "choices")
    under = ", ".join(f"{c} = {s} ({d})" for c, s, d in
                      zip(flips["choice"], flips["setting"], flips["decision"]))
    return f"not robust: the decision ({what}) flips under {under}"


def robust_tag(table: pd.DataFrame | None) -> str:
    """``true`` / ``false`` / ``not checked``: the ``workbench.robust`` MLflow tag."""
    if table is None or not len(table) or "flips" not in table:
        return NOT_CHECKED
    return NOT_ROBUST if _flags(table).any() else ROBUST


def _flags(table: pd.DataFrame) -> np.ndarray:
    """``flips`` as booleans (a logged table may read them back as text)."""
    f = table["flips"]
    if f.dtype == object:
        f = f.map(lambda v: str(v).strip().lower() in ("true", "1"))
    return f.fillna(False).astype(bool).to_numpy()


class _Check:
    """One robustness check: the readout, the alternatives, and the table."""

    def __init__(self, experiment, result, options):
        self.exp = experiment
        self.result = result
        self.options = dict(options)
        self.report = result.validation
        self.treatments = list(experiment.window.variants[1:])
        self.base_label = self.label(result)
        self.primary, self.variant = self._focus(result)

    # -- reading a readout ---------------------------------------------------------------
    def label(self, res) -> str:
        """The action a readout decides: ``ship <arm>``, else each variant's decision."""
        line = str(res.decision)
        ship = [v for v in self.treatments
                if line == f"{decision.DECISION_SHIP} {v}"
                or line.startswith(f"{decision.DECISION_SHIP} {v}:")]
        if ship:
            return f"{decision.DECISION_SHIP} {max(ship, key=len)}"
        d = res.decisions or {}
        if len(set(d.values())) == 1:
            return str(next(iter(d.values())))
        return "; ".join(f"{v}: {d[v]}" for v in self.treatments if v in d) or line

    def _focus(self, res) -> tuple[str | None, str | None]:
        """The primary metric and the variant whose effect the table shows: the arm the
        readout ships, else the first treatment."""
        r = res.results
        if not len(r):
            return None, None
        rule = getattr(res, "rule", None) or decision.DecisionRule()
        try:
            primary = rule.criterion_metrics(r)
        except WorkbenchError:
            primary = []
        metric = primary[0] if primary else str(r["metric"].iloc[0])
        chosen = self.base_label[len(decision.DECISION_SHIP) + 1:] \
            if self.base_label.startswith(f"{decision.DECISION_SHIP} ") else None
        variant = chosen if chosen in self.treatments else (
            self.treatments[0] if self.treatments else None)
        return metric, variant

    def row(self, choice: str, setting: str, res=None, *, baseline=False, note="",
            error="") -> dict:
        out = {"choice": choice, "setting": setting, "decision": NOT_APPLICABLE,
               "flips": False, "primary_effect": np.nan, "baseline": baseline, "note": note,
               "primary_metric": self.primary, "variant": self.variant,
               "primary_ci_lower": np.nan, "primary_ci_upper": np.nan, "error_message": error}
        if error:
            out["decision"] = NOT_COMPUTABLE
            return out
        if res is None:
            return out
        label = self.label(res)
        out["decision"] = label
        out["flips"] = label != self.base_label
        r = res.results
        hit = r[(r["metric"] == self.primary) & (r["variant"] == self.variant)]
        if len(hit):
            out["primary_effect"] = float(hit["effect"].iloc[0])
            out["primary_ci_lower"] = float(hit["ci_lower"].iloc[0])
            out["primary_ci_upper"] = float(hit["ci_upper"].iloc[0])
        if out["flips"]:
            flip = f"decision flips: {self.base_label} -> {label}"
            out["note"] = f"{flip}; {note}" if note else flip
        elif baseline and not note:
            out["note"] = AS_ANALYSED
        return out

    # -- re-running the readout ------------------------------------------------------------
    def _copy(self, *, metrics=None, compiler=None, exclude_crossovers=None, share=True):
        """The experiment with other metrics or another compiler; the readout's data-quality
        report stands for every alternative (no check is re-run)."""
        exp = copy.copy(self.exp)
        report = self.report
        exp.validate = lambda *a, **k: report
        if not share:
            exp._stats = {}
        if metrics is not None:
            exp.metrics = list(metrics)
            exp.compiler = self.exp.compiler.with_metrics(metrics)
        if compiler is not None:
            exp.compiler = compiler
        if exclude_crossovers is not None:
            exp.exclude_crossovers = exclude_crossovers
        return exp

    def run(self, exp=None, *, method=None, correction="same", **options):
        """``analyze`` again (no segments, no time series) with one choice changed; returns
        ``(result, error)``."""
        exp = exp if exp is not None else self._copy()
        res = self.result
        kw = dict(method=method or res.method, alpha=res.alpha, difference=res.difference,
                  correction=res.correction if correction == "same" else correction,
                  segments=(), timeseries=False, **(self.options | options))
        params = inspect.signature(exp.analyze).parameters
        if "rule" in params and getattr(res, "rule", None) is not None:
            kw["rule"] = res.rule
        if "segment_correction" in params:
            kw["segment_correction"] = res.segment_correction
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return exp.analyze(**kw), ""
        except (WorkbenchError, ValueError, ZeroDivisionError, FloatingPointError) as err:
            return None, f"{type(err).__name__}: {err}"

    # -- the choices -------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        rows = [self.row("readout", self._describe(), self.result, baseline=True,
                         note=AS_ANALYSED)]
        for choice in CHOICES:
            rows.extend(getattr(self, f"_{choice}")())
        return pd.DataFrame(rows, columns=COLUMNS + EXTRA)

    def _describe(self) -> str:
        res = self.result
        parts = [res.method, f"CUPED {self._cuped_setting()}", f"cap {self._cap_setting()}",
                 f"correction {_correction_name(res.correction)}"]
        if res.method == "bayesian":
            parts.insert(1, f"prior {self._prior_setting()}")
        if self._event_log():
            parts.append("crossovers " + ("excluded" if self.exp.exclude_crossovers else "kept"))
        return ", ".join(parts)

    def _cuped_setting(self) -> str:
        return "off" if self.options.get("cuped", "auto") is False else "on"

    def _cuped(self) -> list[dict]:
        has = bool(self.result.results.get("cuped", pd.Series(False)).fillna(False).any()) \
            or any(getattr(m, "cuped", False) for m in self.exp.metrics)
        note = "" if has else "no metric has a pre-period covariate: CUPED changes nothing"
        mine = self._cuped_setting()
        rows = []
        for setting, value in (("on", "auto"), ("off", False)):
            if setting == mine:
                rows.append(self.row("cuped", setting, self.result, baseline=True, note=note))
            else:
                res, err = self.run(cuped=value)
                rows.append(self.row("cuped", setting, res, note=note, error=err))
        return rows

    def _cappable(self) -> list:
        return [m for m in self.exp.metrics if m.kind in CAPPABLE
                and getattr(m, "level", "unit") != "event"]

    def _cap_setting(self) -> str:
        capped = [m for m in self._cappable() if m.capped]
        if not capped:
            return "none"
        if len(capped) == len(self._cappable()) and all(m.cap_value is None for m in capped):
            for label, q in CAP_LEVELS.items():
                if all(m.cap_percentile == q for m in capped):
                    return label
        return AS_ANALYSED

    def _cap(self) -> list[dict]:
        cappable = self._cappable()
        mine = self._cap_setting()
        rows = []
        if mine == AS_ANALYSED:
            defined = ", ".join(f"{m.name} at {_cap_text(m)}" for m in cappable if m.capped)
            rows.append(self.row("cap", "as defined", self.result, baseline=True,
                                 note=f"the metrics' own caps: {defined}"))
        if not cappable:
            note = "no mean or ratio metric: nothing to cap"
            for setting in (*CAP_LEVELS, "none"):
                rows.append(self.row("cap", setting, self.result, baseline=setting == mine,
                                     note=note))
            return rows
        names = ", ".join(m.name for m in cappable)
        for setting in (*CAP_LEVELS, "none"):
            q = CAP_LEVELS.get(setting)
            note = (f"every mean/ratio metric winsorised at its {setting} percentile ({names})"
                    if q else f"no metric capped ({names})")
            if setting == mine:
                rows.append(self.row("cap", setting, self.result, baseline=True, note=note))
                continue
            metrics = [replace(m, cap_value=None, cap_percentile=q) if m in cappable else m
                       for m in self.exp.metrics]
            res, err = self.run(self._copy(metrics=metrics, share=False))
            rows.append(self.row("cap", setting, res, note=note, error=err))
        return rows

    def _prior_setting(self) -> str:
        o = self.options
        if o.get("prior", "proper") == "flat":
            return "flat"
        mean, sd = float(o.get("prior_mean", 0.0)), float(o.get("prior_sd", 0.3))
        return "N(0, 0.3²)" if (mean, sd) == (0.0, 0.3) else \
            f"N({fmt.number(mean)}, {fmt.number(sd)}²)"

    def _prior(self) -> list[dict]:
        bayes = self.result.method == "bayesian"
        mine = self._prior_setting() if bayes else None
        rows = []
        if bayes and mine not in ("N(0, 0.3²)", "flat"):
            rows.append(self.row("prior", mine, self.result, baseline=True))
        note = "" if bayes else "Bayesian decision (chance to win) in place of the p-value"
        for setting, opts in (("N(0, 0.3²)", dict(prior="proper", prior_mean=0.0,
                                                   prior_sd=0.3)),
                              ("flat", dict(prior="flat"))):
            if setting == mine:
                rows.append(self.row("prior", setting, self.result, baseline=True))
                continue
            res, err = self.run(method="bayesian", **opts)
            rows.append(self.row("prior", setting, res, note=note, error=err))
        return rows

    def _correction(self) -> list[dict]:
        from workbench.stats.corrections import normalise

        mine = normalise(self.result.correction)
        bayes = self.result.method == "bayesian"
        note = "a Bayesian readout is not corrected: the setting changes nothing" \
            if bayes else ""
        settings = [("holm", "holm"), ("bh", "bh"), ("none", None)]
        if mine not in ("holm", "bh", None):
            settings.insert(0, (mine, mine))
        rows = []
        for setting, value in settings:
            if value == mine:
                rows.append(self.row("correction", setting, self.result, baseline=True,
                                     note=note))
                continue
            res, err = self.run(correction=value)
            rows.append(self.row("correction", setting, res, note=note, error=err))
        return rows

    def _event_log(self) -> bool:
        return hasattr(self.exp.compiler, "exclude_crossovers") and \
            getattr(self.exp, "assignments", None) is not None

    def _crossovers(self) -> list[dict]:
        if not self._event_log():
            note = "per-unit table: each unit has one variant, there are no crossovers"
            return [self.row("crossovers", s, None, note=note) for s in ("excluded", "kept")]
        excluded = bool(self.exp.exclude_crossovers)
        n = int(getattr(self.report, "crossover_units", 0) or 0)
        note = f"{fmt.count(n)} units seen in more than one variant" + (
            "" if n else ": the setting changes nothing")
        rows = []
        for setting, flag in (("excluded", True), ("kept", False)):
            if flag == excluded:
                rows.append(self.row("crossovers", setting, self.result, baseline=True,
                                     note=note))
                continue
            if not n:
                rows.append(self.row("crossovers", setting, self.result, note=note))
                continue
            note_kept = note + ("; kept in the variant of their first exposure" if not flag
                                else "")
            compiler = replace(self.exp.compiler, exclude_crossovers=flag)
            res, err = self.run(self._copy(compiler=compiler, exclude_crossovers=flag,
                                           share=False))
            rows.append(self.row("crossovers", setting, res, note=note_kept, error=err))
        return rows

    def _method(self) -> list[dict]:
        mine = self.result.method
        rows = []
        for setting, method in (("fixed-horizon", "frequentist"), ("sequential", "sequential")):
            if method == mine:
                rows.append(self.row("method", setting, self.result, baseline=True))
                continue
            res, err = self.run(method=method)
            rows.append(self.row("method", setting, res, error=err))
        return rows


def _correction_name(method) -> str:
    from workbench.stats.corrections import normalise

    return normalise(method) or "none"


def _cap_text(m) -> str:
    if m.cap_value is not None:
        return fmt.number(m.cap_value)
    return f"the {fmt.percent(m.cap_percentile, digits=1)} percentile"
