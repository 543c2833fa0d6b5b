"""The readout record: everything one readout produced, in one versioned shape.

A template logs it in one call (``tracking.log_record(record)``), a dashboard loads it in one
call (``ReadoutRecord.from_logged(run.summary, run.tables)``) and renders it; nothing downstream
re-derives a verdict, a decision or a threshold. The table names below are the only place they
are written.

>>> record = ReadoutRecord.from_result(result, bayesian=bayes)
>>> tracking.log_record(record)                        # tables, metrics, tags, summary
>>> again = ReadoutRecord.from_logged(summary, tables)  # what the dashboard reads
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.errors import DataError
from workbench.readout.numbers import chance_of, correction_text, overall_rows, risk_of, shown_p

SCHEMA_VERSION = 1
SCHEMA_KEY = "readout_schema"

# The readout's table names: written here only.
RESULTS = "results"
SEGMENTS = "segments"
HETEROGENEITY = "heterogeneity"
TIMESERIES = "timeseries"
VALIDATION = "validation"
BAYESIAN = "bayesian"
REVENUE_HURDLE = "revenue_hurdle"
HIERARCHICAL = "hierarchical"
STATS = "stats"
ARMS = "arms"
ROBUSTNESS = "robustness"
POWER = "power"
SIMULATION = "simulation"
PHASES = "phases"
TABLES = (RESULTS, SEGMENTS, HETEROGENEITY, TIMESERIES, VALIDATION, BAYESIAN, REVENUE_HURDLE,
          HIERARCHICAL, STATS, ARMS, ROBUSTNESS, POWER, SIMULATION, PHASES)

# The PyMC tables and the diagnostic columns their rows carry (workbench.stats.pymc).
PYMC_TABLES = (REVENUE_HURDLE, HIERARCHICAL)
MCMC_COLUMNS = ("r_hat_max", "ess_bulk_min", "ess_tail_min", "divergences")
MCMC_OK = "diagnostics_ok"

# MLflow metric fields per overall row, key suffix -> what it holds: the numbers the results
# table shows (workbench.readout.table), so MLflow reads like the notebook and the dashboard.
# ``p_value`` is the SHOWN p-value (adjusted when a correction applied, labelled by the run's
# ``workbench.p_values`` tag and run.json's ``p_value_label``), ``p_value_raw`` the unadjusted
# one beside it; ``chance_to_win`` and ``risk`` are in the metric's good direction.
METRIC_FIELDS = {"lift": "effect", "ci_lower": "ci_lower", "ci_upper": "ci_upper",
                 "p_value": "shown p-value (numbers.shown_p)", "p_value_raw": "p_value",
                 "chance_to_win": "numbers.chance_of", "risk": "numbers.risk_of",
                 "margin": "margin", "margin_p_value": "margin_p_value",
                 "margin_chance": "margin_chance", "variance_reduction": "variance_reduction"}
P_VALUE_TAG = "workbench.p_values"
ROBUST_TAG = "workbench.robust"
PLAN_RUN_TAG = "workbench.plan_run"  # the run id of the plan the readout links to
_SCALARS = ("experiment_id", "method", "alpha", "difference", "control", "correction",
            "decision", "srm_p_value", "trustworthy", "plan_run")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class ReadoutRecord:
    """What a readout decided and the tables it decided from.

    Attributes
    ----------
    experiment_id, method, difference, control : str
    alpha : float
    correction : str or None
        Correction across the metrics x variants of the results table.
    decision : str
        The one-line decision, worded by :mod:`workbench.readout.decision`.
    decisions : dict
        Variant -> its decision.
    reasons : dict
        Variant -> the sentences that explain its decision (may be empty).
    srm_p_value : float
    trustworthy : bool
        False when a data-quality error (SRM included) makes the results unreliable.
    notes : list of str
        One sentence per section that was skipped or adapted, and why.
    tables : dict of str to DataFrame
        Keyed by the names in :data:`TABLES`; absent sections are absent keys.
    schema_version : int
    plan_run : str or None
        Run id of the ``plan`` run the readout links to (tag ``workbench.plan_run``).
    """

    experiment_id: str
    method: str
    alpha: float
    difference: str
    control: str
    decision: str
    srm_p_value: float
    trustworthy: bool
    correction: str | None = None
    decisions: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    tables: dict = field(default_factory=dict, repr=False)
    schema_version: int = SCHEMA_VERSION
    plan_run: str | None = None

    # -- building ----------------------------------------------------------------------
    @classmethod
    def from_result(cls, result: Any, *, bayesian: Any = None,
                    extra: Mapping[str, pd.DataFrame] | None = None,
                    notes: Sequence[str] = ()) -> ReadoutRecord:
        """The record of an :class:`~workbench.readout.result.AnalysisResult`.

        Parameters
        ----------
        result : AnalysisResult
        bayesian : AnalysisResult, optional
            A Bayesian readout of the same experiment (its results become ``bayesian``).
        extra : mapping, optional
            More tables by name (``revenue_hurdle``, ``hierarchical``); each name must be one
            of :data:`TABLES`.
        notes : sequence of str
            Sentences about skipped sections.
        """
        tables = {RESULTS: result.results, VALIDATION: result.validation.to_frame(),
                  STATS: result.stats}
        for name, frame in ((SEGMENTS, result.segments), (HETEROGENEITY, result.heterogeneity),
                            (TIMESERIES, result.timeseries),
                            (ARMS, getattr(result, "arms", None)),
                            (ROBUSTNESS, getattr(result, "robustness", None)),
                            (POWER, getattr(result, "power", None)),
                            (PHASES, getattr(result, "phases", None))):
            if frame is not None and len(frame):
                tables[name] = frame
        if bayesian is not None:
            tables[BAYESIAN] = bayesian.results
        for name, frame in (extra or {}).items():
            if name not in TABLES:
                raise DataError(f"unknown readout table {name!r}; expected one of {TABLES}")
            if frame is not None:
                tables[name] = frame
        return cls(experiment_id=result.experiment_id, method=result.method,
                   alpha=float(result.alpha), difference=result.difference,
                   control=result.control, correction=getattr(result, "correction", None),
                   decision=result.decision, decisions=dict(result.decisions),
                   reasons={k: list(v) for k, v in (getattr(result, "reasons", {}) or {}).items()},
                   srm_p_value=float(result.srm_p_value),
                   trustworthy=bool(result.trustworthy),
                   notes=[*getattr(result, "notes", ()), *notes],
                   tables={k: v.reset_index(drop=True) for k, v in tables.items()},
                   plan_run=getattr(result, "plan_run", None))

    @classmethod
    def from_logged(cls, summary: Mapping[str, Any],
                    tables: Mapping[str, pd.DataFrame]) -> ReadoutRecord:
        """The record as a run logged it (``run.json``'s summary and the run's tables).

        Raises
        ------
        DataError
            The summary is not a readout record, or one of another schema version.
        """
        version = summary.get(SCHEMA_KEY)
        if version is None:
            raise DataError("this run logged no readout record (no "
                            f"{SCHEMA_KEY!r} in its summary)")
        if int(version) != SCHEMA_VERSION:
            raise DataError(f"readout record schema {version} is not supported "
                            f"(this workbench reads schema {SCHEMA_VERSION})")
        srm = summary.get("srm_p_value")
        return cls(experiment_id=str(summary.get("experiment_id", "")),
                   method=str(summary.get("method", "")),
                   alpha=float(summary.get("alpha", 0.05)),
                   difference=str(summary.get("difference", "relative")),
                   control=str(summary.get("control", "")),
                   correction=summary.get("correction"),
                   decision=str(summary.get("decision", "")),
                   decisions=dict(summary.get("decisions") or {}),
                   reasons={k: list(v) for k, v in (summary.get("reasons") or {}).items()},
                   srm_p_value=float("nan") if srm is None else float(srm),
                   trustworthy=bool(summary.get("trustworthy", False)),
                   notes=list(summary.get("notes") or []),
                   tables={k: v for k, v in tables.items() if k in TABLES},
                   schema_version=int(version), plan_run=summary.get("plan_run") or None)

    # -- reading -----------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame | None:
        """The table ``name`` (one of :data:`TABLES`), or None when the readout has none."""
        if name not in TABLES:
            raise DataError(f"unknown readout table {name!r}; expected one of {TABLES}")
        return self.tables.get(name)

    @property
    def results(self) -> pd.DataFrame:
        """The overall results (one row per metric x treatment variant)."""
        return overall_rows(self.tables[RESULTS])

    def summary_dict(self) -> dict:
        """The JSON-able scalars of the record (``run.json``'s ``summary``)."""
        out = {name: getattr(self, name) for name in _SCALARS}
        out.update(decisions=self.decisions, reasons=self.reasons, notes=list(self.notes),
                   tables=sorted(self.tables), p_value_label=self.p_value_label)
        out[SCHEMA_KEY] = self.schema_version
        return _jsonable(out)

    @property
    def p_value_label(self) -> str:
        """What the shown p-values and intervals are: ``adjusted, Holm across 12
        comparisons``, ``unadjusted``, or empty without p-values
        (:func:`workbench.readout.numbers.correction_text`)."""
        return correction_text(self.tables.get(RESULTS), self.correction)

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: ``<metric>.<variant>.<field>`` (:data:`METRIC_FIELDS`) for every
        overall results row (the same numbers every surface shows: ``p_value`` is the shown,
        adjusted one, ``p_value_raw`` the raw one), ``bayes.``-prefixed for the Bayesian table,
        ``srm_p_value``, and ``comparisons`` / ``comparisons_computed`` (overall rows, and those
        computed: 0 when nothing could be). Non-finite values are left out."""
        out: dict[str, float] = {}
        for prefix, name in (("", RESULTS), ("bayes.", BAYESIAN)):
            frame = overall_rows(self.tables.get(name))
            if frame is None:
                continue
            for row in frame.to_dict("records"):
                for label, value in _row_metrics(row).items():
                    if value is not None and isinstance(value, int | float) \
                            and math.isfinite(float(value)):
                        out[f"{prefix}{row['metric']}.{row['variant']}.{label}"] = float(value)
        if math.isfinite(self.srm_p_value):
            out["srm_p_value"] = self.srm_p_value
        results = overall_rows(self.tables.get(RESULTS))
        if results is not None:
            from workbench.readout.decision import not_computed

            out["comparisons"] = float(len(results))
            out["comparisons_computed"] = float(len(results) - not_computed(results).sum())
        return out

    @property
    def computable(self) -> str:
        """``all``, ``some`` or ``none``: how many overall results rows were computed
        (:func:`workbench.readout.decision.computable`)."""
        from workbench.readout.decision import computable

        return computable(self.results if RESULTS in self.tables else None)

    def tags(self) -> dict[str, str]:
        """MLflow tags: schema version, trustworthiness, how much was computed
        (``workbench.computable``: all, some, none), the decision, what the shown p-values
        are (``workbench.p_values``: :attr:`p_value_label`) and, for the PyMC tables
        (``revenue_hurdle``, ``hierarchical``), their MCMC diagnostics (:meth:`mcmc_tags`);
        ``workbench.robust`` (:attr:`robust`); ``workbench.plan_run`` (the linked plan's run
        id) when the readout links to a plan."""
        return {"workbench.readout_schema": str(self.schema_version),
                "workbench.trustworthy": str(self.trustworthy).lower(),
                "workbench.computable": self.computable,
                "workbench.decision": self.decision[:250],
                **({P_VALUE_TAG: self.p_value_label} if self.p_value_label else {}),
                ROBUST_TAG: self.robust, **self.mcmc_tags(),
                **({PLAN_RUN_TAG: str(self.plan_run)} if self.plan_run else {})}

    @property
    def robust(self) -> str:
        """``true`` / ``false`` / ``not checked``: whether the decision holds under every
        other analysis choice of the ``robustness`` table (the ``workbench.robust`` tag)."""
        from workbench.readout.robustness import robust_tag

        return robust_tag(self.tables.get(ROBUSTNESS))

    def mcmc_tags(self) -> dict[str, str]:
        """``workbench.mcmc.*`` tags read off the diagnostic columns of the PyMC tables.

        Per table ``workbench.mcmc.<table>.{ok,fits,sampler,r_hat_max,ess_bulk_min,
        ess_tail_min,divergences}`` and over all of them ``workbench.mcmc.{ok,r_hat_max,ess_bulk_min,
        ess_tail_min,divergences}``. A fit is a distinct (r-hat, ESS, divergences) tuple of the
        fitted rows (the rows of one fit repeat its diagnostics). Empty without PyMC tables.
        """
        fits = []
        out: dict[str, str] = {}
        for name in PYMC_TABLES:
            frame = self.tables.get(name)
            if frame is None or not set(MCMC_COLUMNS) <= set(frame.columns):
                continue
            rows = frame[frame[list(MCMC_COLUMNS)].notna().any(axis=1)]
            ok = bool(rows[MCMC_OK].astype(bool).all()) if MCMC_OK in rows else True
            per = rows.drop_duplicates(list(MCMC_COLUMNS))
            out.update(_mcmc(f"workbench.mcmc.{name}", per, ok))
            out[f"workbench.mcmc.{name}.fits"] = str(len(per))
            if "sampler" in rows:
                used = sorted(set(rows["sampler"].dropna().astype(str)) - {""})
                out[f"workbench.mcmc.{name}.sampler"] = "+".join(used) or "none"
            fits.append((per, ok))
        if fits:
            out.update(_mcmc("workbench.mcmc", pd.concat([f for f, _ in fits]),
                             all(ok for _, ok in fits)))
        return out


def _row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one results row as MLflow logs them (:data:`METRIC_FIELDS`)."""
    return {"lift": row.get("effect"), "ci_lower": row.get("ci_lower"),
            "ci_upper": row.get("ci_upper"), "p_value": shown_p(row),
            "p_value_raw": row.get("p_value"), "chance_to_win": chance_of(row),
            "risk": risk_of(row), "margin": row.get("margin"),
            "margin_p_value": row.get("margin_p_value"), "margin_chance": row.get("margin_chance"),
            "variance_reduction": row.get("variance_reduction")}


def _mcmc(prefix: str, fits: pd.DataFrame, ok: bool) -> dict[str, str]:
    def fmt(x: float) -> str:
        return f"{x:.4g}" if math.isfinite(x) else "nan"

    return {f"{prefix}.ok": str(ok).lower(),
            f"{prefix}.r_hat_max": fmt(float(fits["r_hat_max"].max())) if len(fits) else "nan",
            f"{prefix}.ess_bulk_min": fmt(float(fits["ess_bulk_min"].min()))
            if len(fits) else "nan",
            f"{prefix}.ess_tail_min": fmt(float(fits["ess_tail_min"].min()))
            if len(fits) else "nan",
            f"{prefix}.divergences": str(int(fits["divergences"].fillna(0).sum()))}
