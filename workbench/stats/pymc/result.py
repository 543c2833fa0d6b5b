"""The result of a PyMC model (:class:`BayesResult`) and the rows of its table."""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from workbench import format as fmt
from workbench.errors import ConvergenceWarning, WorkbenchError
from workbench.stats.pymc import sampling
from workbench.stats.pymc.diagnostics import Diagnostics, diagnose
from workbench.stats.schema import OUTPUT_COLUMNS
from workbench.summary import Summary

__all__ = ["BayesResult", "DIAGNOSTIC_COLUMNS", "OVERALL"]

#: Columns of the tidy table after ``OUTPUT_COLUMNS`` and the grouping columns: the worst r-hat
#: and ESS of the row's fit, its divergent transitions, whether the fit passed its checks, and
#: the sampler that produced it. ``diagnostics_ok`` is False only for rows of a fit that failed
#: (their ``error_message`` is ``messages.NOT_CONVERGED`` filled in); rows not fitted (an empty
#: arm...) keep True, NaN diagnostics, ``sampler == ''`` and their own ``error_message``.
DIAGNOSTIC_COLUMNS = ("r_hat_max", "ess_bulk_min", "ess_tail_min", "divergences",
                      "diagnostics_ok", "sampler")
#: The ``segment`` of a hierarchical fit's population row.
OVERALL = "(all)"
_DIAGNOSTICS_FRAME = ["key", "sampler", "r_hat_max", "ess_bulk_min", "ess_tail_min",
                      "divergences", "ok", "message"]
_HYPER_FRAME = ["metric", "variant", "dimension", "parameter", "scale", "mean", "sd",
                "ci_lower", "ci_upper"]


@dataclass(frozen=True)
class BayesResult:
    """Result of a PyMC model: tidy table, InferenceData per fit, diagnostics.

    Attributes
    ----------
    model : str
        'hierarchical', 'revenue_hurdle', 'beta_binomial' or 'gaussian'.
    table : DataFrame
        ``OUTPUT_COLUMNS``, then the grouping columns present (``dimension, segment, date``),
        then :data:`DIAGNOSTIC_COLUMNS`. p-values and SRM are NaN. ``segment == '(all)'`` rows
        of a hierarchical fit hold the population effect (segments weighted by their units).
        ``error_message`` holds ``messages.NOT_CONVERGED`` when the fit's diagnostics fail.
    idatas : dict
        ``InferenceData`` per fit, keyed by a tuple naming the block
        (metric[, dimension][, variant] or metric plus grouping values).
    diagnostics : DataFrame
        One row per fit: key, sampler, r_hat_max, ess_bulk_min, ess_tail_min, divergences, ok,
        message.
    hyper : DataFrame
        Hierarchical fits: posterior of ``mu`` (mean effect of a segment) and ``tau``
        (between-segment sd) on the model's effect scale; empty otherwise.
    difference : str
        'relative' or 'absolute'.
    ci_level : float
        Probability of the equal-tailed credible intervals.
    priors : object
        The prior dataclass used.
    sampler : str
        'nutpie', 'pymc', or 'nutpie+pymc' when some fits fell back.
    """

    model: str
    table: pd.DataFrame
    idatas: Mapping[tuple, Any]
    diagnostics: pd.DataFrame
    hyper: pd.DataFrame
    difference: str
    ci_level: float
    priors: Any
    sampler: str

    @property
    def idata(self):
        """The InferenceData of the only fit (see ``idatas`` when there are several)."""
        if len(self.idatas) != 1:
            raise WorkbenchError(f"this result holds {len(self.idatas)} fits; use .idatas[key] "
                                 f"with one of {list(self.idatas)}")
        return next(iter(self.idatas.values()))

    @property
    def diagnostics_ok(self) -> bool:
        """True when every fit passed its r-hat, ESS and divergence checks."""
        return bool(self.diagnostics["ok"].all()) if len(self.diagnostics) else True

    def to_frame(self) -> pd.DataFrame:
        """The tidy table (a copy)."""
        return self.table.copy()

    def _notes(self) -> list[str]:
        if self.diagnostics_ok:
            notes = [f"MCMC diagnostics OK for {len(self.diagnostics)} fit(s) "
                     f"(sampler: {self.sampler})."]
        else:
            bad = self.diagnostics[~self.diagnostics["ok"]]
            notes = [f"WARNING: MCMC diagnostics FAILED for {len(bad)} of "
                     f"{len(self.diagnostics)} fit(s); do not trust those rows:"]
            notes += [f"  {k}: {m}" for k, m in zip(bad["key"], bad["message"])]
        notes.append(f"effect: {self.difference}; {self.ci_level:.0%} equal-tailed credible "
                     f"intervals; priors: {_describe(self.priors)}")
        return notes

    def summary(self) -> Summary:
        """Decision table with the convergence verdict: a ``str`` that renders as HTML too."""
        cols = [c for c in ("metric", "variant", "dimension", "segment", "date") if c in self.table]
        cols += ["control_mean", "variant_mean", "effect", "ci_lower", "ci_upper",
                 "chance_to_win", "risk_variant", "r_hat_max", "ess_bulk_min", "divergences",
                 "error_message"]
        table, notes = self.table[cols], self._notes()
        title = f"Bayesian {self.model} model (PyMC)"
        with pd.option_context("display.width", 200, "display.max_columns", 50):
            body = table.to_string(index=False)
        text = "\n".join([title, "=" * len(title), body, *notes])
        items = "".join(f"<li>{escape(n)}</li>" for n in notes)
        relative = self.difference == "relative"
        shown = fmt.table_frame(table, {
            **{c: (lambda v: fmt.effect(v, relative)) for c in ("effect", "ci_lower", "ci_upper")},
            "chance_to_win": fmt.chance, "risk_variant": lambda v: fmt.risk(v, relative),
            "r_hat_max": lambda v: f"{v:.3f}" if fmt.finite(v) else fmt.MISSING})
        html = (f"<div><h4>{escape(title)}</h4>"
                f"{shown.to_html(index=False, border=0, classes='workbench-table')}"
                f"<ul>{items}</ul></div>")
        return Summary(text, html)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


# --------------------------------------------------------------------------------------------
# rows of the table
# --------------------------------------------------------------------------------------------
def effect_stats(c, t, difference: str, alpha: float) -> dict:
    """Posterior summaries of the effect of t over c (arrays of draws)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = t / c - 1.0 if difference == "relative" else t - c
    lo, hi = np.quantile(eff, [alpha / 2, 1 - alpha / 2])
    return {
        "control_mean": float(np.mean(c)),
        "variant_mean": float(np.mean(t)),
        "effect": float(np.mean(eff)),
        "ci_lower": float(lo),
        "ci_upper": float(hi),
        "chance_to_win": float(np.mean(eff > 0)),
        # Expected loss, in the effect's units, of shipping the wrong arm.
        "risk_control": float(np.mean(np.maximum(eff, 0.0))),
        "risk_variant": float(np.mean(np.maximum(-eff, 0.0))),
    }


def posterior_draws(idata, name: str) -> np.ndarray:
    """Posterior draws of ``name`` as (samples, ...) with chains stacked."""
    x = np.asarray(idata.posterior[name])
    return x.reshape(-1, *x.shape[2:])


def empty_row(base: dict, message: str) -> dict:
    """A row that could not be estimated: NaN numbers, ``message`` as ``error_message``."""
    row = {c: np.nan for c in OUTPUT_COLUMNS}
    row.update({c: np.nan for c in DIAGNOSTIC_COLUMNS})
    row.update(base)
    row.update(diagnostics_ok=True, sampler="", error_message=message)
    return row


def fitted(d: Diagnostics, sampler: str) -> dict:
    """The diagnostic columns and ``error_message`` of a row estimated by a fit."""
    return {"r_hat_max": d.r_hat_max, "ess_bulk_min": d.ess_bulk_min,
            "ess_tail_min": d.ess_tail_min, "divergences": d.divergences,
            "diagnostics_ok": d.ok, "sampler": sampler, "error_message": d.message}


def fit_record(key, sampler: str, d: Diagnostics) -> tuple:
    """One row of :attr:`BayesResult.diagnostics`."""
    return (key, sampler, d.r_hat_max, d.ess_bulk_min, d.ess_tail_min, d.divergences, d.ok,
            d.message)


@dataclass
class Fits:
    """What the fits of one model call gather: table rows, hyper-parameter rows, and per fit
    its InferenceData, diagnostics record and sampler."""

    cfg: Any  # sampling.Sampling
    rows: list = field(default_factory=list)
    hyper: list = field(default_factory=list)
    idatas: dict = field(default_factory=dict)
    diags: list = field(default_factory=list)
    samplers: list = field(default_factory=list)

    def sample(self, key: tuple, kind: str, data: dict, seed, dim: str, labels) -> tuple:
        """Fit the ``kind`` model (one ``dim`` entry per label) and record it under ``key``.

        Returns its InferenceData (``dim`` relabelled) and the diagnostic columns of its rows.
        """
        idata, used = sampling.sample(kind, len(labels), data, self.cfg, seed)
        idata = sampling.relabel(idata, dim, labels)
        self.samplers.append(used)
        d = diagnose(idata, max_r_hat=self.cfg.max_r_hat, min_ess=self.cfg.min_ess)
        self.idatas[key] = idata
        self.diags.append(fit_record(key, used, d))
        return idata, fitted(d, used)

    def finish(self, model, group_cols, difference, alpha, priors) -> BayesResult:
        """Assemble the result (the statistics engine's column order) and warn of failed fits."""
        cols = list(OUTPUT_COLUMNS) + list(group_cols) + list(DIAGNOSTIC_COLUMNS)
        table = pd.DataFrame(self.rows, columns=cols)
        table["error_message"] = table["error_message"].fillna("").astype(str)
        for c in OUTPUT_COLUMNS:
            if c not in ("metric", "variant", "error_message"):
                table[c] = table[c].astype(float)
        table["diagnostics_ok"] = table["diagnostics_ok"].astype(bool)
        table["sampler"] = table["sampler"].fillna("").astype(str)
        diag = pd.DataFrame(self.diags, columns=_DIAGNOSTICS_FRAME)
        bad = diag[~diag["ok"].astype(bool)]
        if len(bad):
            warnings.warn(f"{len(bad)} of {len(diag)} {model} fit(s) failed MCMC diagnostics: "
                          + "; ".join(f"{k}: {m}" for k, m in zip(bad["key"], bad["message"])),
                          ConvergenceWarning, stacklevel=4)
        used = sorted(set(self.samplers))
        sampler = "+".join(used) if used else "none"
        hyper = pd.DataFrame(self.hyper, columns=_HYPER_FRAME)
        return BayesResult(model=model, table=table, idatas=dict(self.idatas), diagnostics=diag,
                           hyper=hyper, difference=difference, ci_level=1 - alpha, priors=priors,
                           sampler=sampler)


def _describe(priors: Any) -> str:
    """Prior settings as people read them (``mu_sd 0.3, tau_sd 0.2``), not a dataclass repr."""
    from dataclasses import fields, is_dataclass

    if priors is None:
        return "defaults"
    if not is_dataclass(priors):
        return str(priors)
    parts = []
    for f in fields(priors):
        value = getattr(priors, f.name)
        parts.append(f"{f.name} ({_describe(value)})" if is_dataclass(value)
                     else f"{f.name} {fmt.cell(value)}")
    return ", ".join(parts)
