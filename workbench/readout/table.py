"""THE results table: one row per metric x variant, the same in the notebook, the report, the
dashboard and the CLI.

Built from anything with ``results, method, difference, alpha, correction`` (an
:class:`~workbench.readout.result.AnalysisResult` or a
:class:`~workbench.readout.record.ReadoutRecord`), in the style of GrowthBook's results page:
baseline, variant, lift with its interval drawn inline (an SVG bar, zero line, colour by
verdict), the shown p-value with the raw one beside it (or, Bayesian, chance to win and risk),
verdict and role, and a caption that labels the correction.

The numbers a row shows come from :mod:`workbench.readout.numbers` (``shown_p``,
``chance_of``, ``risk_of``, ``correction_text``), as do the MLflow metrics of the readout record
(:meth:`~workbench.readout.record.ReadoutRecord.metrics`).

>>> table = results_table(result)          # or results_table(record)
>>> table.to_html()                         # notebook, report, dashboard
>>> print(table.to_text())                  # CLI
>>> table.row("conversion", "treatment_a").p_value
'0.0213'
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench import format as fmt
from workbench.readout.decision import VERDICT_HARM, VERDICT_IMPROVED, VERDICT_SRM, VERDICT_WORSE
from workbench.readout.numbers import (  # noqa: F401 - the table's numbers, re-exported
    chance_of,
    comparisons,
    corrected,
    correction_text,
    overall_rows,
    risk_of,
    shown_p,
    value_of,
)
from workbench.readout.record import BAYESIAN

GOOD, BAD, NEUTRAL = "#1a7f37", "#b00020", "#6e7781"
# Verdicts drawn in colour (bar, lift and verdict cells); any other verdict is grey.
COLOURS = {VERDICT_IMPROVED: GOOD, VERDICT_WORSE: BAD, VERDICT_HARM: BAD, VERDICT_SRM: BAD}
BAR_WIDTH, BAR_HEIGHT = 72, 16
_CELL = "padding:4px 5px;white-space:nowrap;text-align:{align}"
_HEAD_WRAP = ";white-space:normal;vertical-align:bottom"
_NUMERIC = ("baseline", "treatment", "lift", "difference", "p-value", "raw p-value",
            "chance to win", "risk", "variance reduction")


# ------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Row:
    """One metric x variant of the table: its cells as shown (text) and the bar's numbers."""

    metric: str
    variant: str
    role: str
    baseline: str
    treatment: str
    lift: str
    interval: str
    p_value: str
    p_value_raw: str
    chance: str
    risk: str
    verdict: str
    colour: str
    error: str
    effect_value: float
    lower_value: float
    upper_value: float
    variance_reduction: str = fmt.MISSING
    covariates: str = ""


@dataclass(frozen=True)
class ResultsTable:
    """The results table of a readout (build with :func:`results_table`).

    Attributes
    ----------
    rows : tuple of Row
    relative : bool
        Lifts (relative) rather than absolute differences.
    level : str
        The intervals' level, ``95 %``.
    label : str
        The correction label of the p-values and intervals (:func:`correction_text`).
    frequentist, bayesian : bool
        Whether the table shows p-values, and chance to win and risk.
    method : str
    """

    rows: tuple
    relative: bool
    level: str
    label: str
    frequentist: bool
    bayesian: bool
    method: str
    raw: bool = False
    adjusted: bool = False

    def row(self, metric: str, variant: str) -> Row:
        """The row of ``metric`` for ``variant`` (KeyError if absent)."""
        for r in self.rows:
            if r.metric == metric and r.variant == variant:
                return r
        raise KeyError((metric, variant))

    @property
    def caption(self) -> str:
        """What the numbers are: the intervals' kind and level, the p-values' correction,
        what chance to win and risk mean."""
        kind = {"bayesian": "credible", "sequential": "always-valid"}.get(self.method,
                                                                            "confidence")
        parts = [f"{self.level} {kind} intervals"]
        if self.frequentist and self.label:
            if self.raw:
                parts.append(f"p-values and intervals {self.label}; raw p-value beside")
            else:
                parts.append(f"p-values {self.label}")
        if self.bayesian:
            source = "" if self.method == "bayesian" else " (from the Bayesian readout)"
            parts.append("chance to win and risk (expected loss of shipping the variant) in "
                         f"the metric's good direction{source}")
        return "; ".join(parts)

    def columns(self) -> list[str]:
        head = ["metric", "role", "variant", "baseline", "treatment",
                "lift" if self.relative else "difference", f"{self.level} interval"]
        if self.frequentist:
            head.append("p-value")
            if self.raw:
                head.append("raw p-value")
        if self.bayesian:
            head += ["chance to win", "risk"]
        if self.adjusted:
            head.append("variance reduction")
        return head + ["verdict"]

    def _cells(self, r: Row) -> list[str]:
        cells = [r.metric, r.role, r.variant, r.baseline, r.treatment, r.lift, r.interval]
        if self.frequentist:
            cells.append(r.p_value)
            if self.raw:
                cells.append(r.p_value_raw)
        if self.bayesian:
            cells += [r.chance, r.risk]
        if self.adjusted:
            cells.append(r.variance_reduction)
        return cells + [r.verdict]

    def _html_cells(self, r: Row) -> list[str]:
        # the raw p-value goes inside the p-value cell, beside the shown one
        return [c for h, c in zip(self.columns(), self._cells(r)) if h != "raw p-value"]

    def frame(self) -> pd.DataFrame:
        """The table as text cells (no index): :meth:`AnalysisResult.summary_frame`."""
        return pd.DataFrame([self._cells(r) for r in self.rows], columns=self.columns())

    def to_text(self) -> str:
        """The caption, then the table as fixed-width text (CLI, logs)."""
        if not self.rows:
            return self.caption
        return f"{self.caption}\n{self.frame().to_string(index=False)}"

    def to_html(self) -> str:
        """The table as HTML: no index, numbers never wrap, the interval drawn inline on a
        scale shared by all rows (lifts) or per row (absolute differences, whose units
        differ), a zero line, colour by verdict, the raw p-value beside the adjusted one, and
        the caption above."""
        head = [h for h in self.columns() if h != "raw p-value"]
        scale = _scale(self.rows) if self.relative else None
        # headers of several words may wrap (numbers never do): the table stays narrow
        th = "".join(
            f"<th style='{_CELL.format(align='right' if h in _NUMERIC else 'left')};"
            f"border-bottom:2px solid #d0d7de{_HEAD_WRAP if ' ' in h else ''}'>{_esc(h)}</th>"
            for h in head)
        body = []
        for r in self.rows:
            cells = []
            for h, value in zip(head, self._html_cells(r)):
                style = _CELL.format(align="right" if h in _NUMERIC else "left")
                inner = _esc(value)
                cls = _CLASSES.get(h, "")
                if h in ("lift", "difference", "verdict") and r.colour != NEUTRAL:
                    style += f";color:{r.colour};font-weight:600"
                if h == f"{self.level} interval":
                    cls = "wb-interval"
                    inner = (_bar(r, scale or _scale([r])) + "<span style='margin-left:6px'>"
                             f"{inner}</span>")
                elif h == "p-value" and self.raw and r.p_value_raw != fmt.MISSING:
                    inner = (f"<span class='wb-p-shown'>{inner}</span> <span class='wb-p-raw' "
                             "style='color:#57606a;font-size:11px;font-weight:normal'>raw "
                             f"{_esc(r.p_value_raw)}</span>")
                elif h == "variance reduction" and r.covariates:
                    inner = f"<span title='adjusted for {_esc(r.covariates)}'>{inner}</span>"
                elif h == "verdict" and r.error:
                    inner = f"<span title='{_esc(r.error)}'>{inner}</span>"
                cells.append(f"<td class='{cls}' style='{style}'>{inner}</td>")
            body.append(f"<tr data-metric='{_esc(r.metric)}' data-variant='{_esc(r.variant)}'"
                        " style='border-bottom:1px solid #eaeef2'>" + "".join(cells) + "</tr>")
        return ("<div class='wb-results' style='overflow-x:auto;max-width:100%'>"
                "<table style='border-collapse:collapse;font-size:13px;"
                "font-variant-numeric:tabular-nums'>"
                "<caption class='wb-caption' style='caption-side:top;text-align:left;"
                f"color:#57606a;font-size:12px;padding:2px 0 6px'>{_esc(self.caption)}</caption>"
                f"<thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        return self.to_text()


_CLASSES = {"metric": "wb-metric", "variant": "wb-variant", "p-value": "wb-p",
            "raw p-value": "wb-p-raw", "chance to win": "wb-chance", "risk": "wb-risk",
            "verdict": "wb-verdict", "lift": "wb-lift", "difference": "wb-lift"}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _scale(rows) -> float:
    """Half-width of the bars' axis: the largest distance from zero, with a margin."""
    ends = [abs(v) for r in rows for v in (r.lower_value, r.upper_value, r.effect_value)
            if fmt.finite(v)]
    top = max(ends, default=0.0)
    return top * 1.1 if top > 0 else 1.0


def _bar(r: Row, scale: float) -> str:
    """The interval as an inline SVG: a bar from lower to upper end, the estimate as a tick,
    a zero line in the middle."""
    w, h = BAR_WIDTH, BAR_HEIGHT
    zero = w / 2
    line = (f"<line x1='{zero}' y1='1' x2='{zero}' y2='{h - 1}' stroke='#8c959f' "
            "stroke-width='1'/>")
    shape = ""
    if fmt.finite(r.lower_value) and fmt.finite(r.upper_value):
        def x(v: float) -> float:
            return round(min(max(zero + v / scale * zero, 0.0), w), 1)

        lo, hi = x(r.lower_value), x(r.upper_value)
        shape = (f"<rect x='{lo}' y='{h / 2 - 4}' width='{max(hi - lo, 1.0)}' height='8' "
                 f"rx='3' fill='{r.colour}' fill-opacity='0.35' stroke='{r.colour}'/>")
        if fmt.finite(r.effect_value):
            e = x(r.effect_value)
            shape += (f"<line x1='{e}' y1='{h / 2 - 6}' x2='{e}' y2='{h / 2 + 6}' "
                      f"stroke='{r.colour}' stroke-width='2'/>")
    return (f"<svg width='{w}' height='{h}' viewBox='0 0 {w} {h}' role='img' "
            f"style='vertical-align:middle'><title>{_esc(r.interval)}</title>{line}{shape}"
            "</svg>")


def _bayesian_beside(source: Any, results: pd.DataFrame) -> dict:
    """``(metric, variant) -> row`` of the Bayesian table logged beside a frequentist readout
    (a readout record's ``bayesian`` table), else empty."""
    table = getattr(source, "table", None)
    if not callable(table) or str(getattr(source, "method", "")) == "bayesian":
        return {}
    try:
        frame = overall_rows(table(BAYESIAN))
    except Exception:  # noqa: BLE001 - not a readout record
        return {}
    if frame is None or frame.empty or "chance_to_win" not in frame:
        return {}
    return {(r["metric"], r["variant"]): r for r in frame.to_dict("records")}


def results_table(source: Any) -> ResultsTable:
    """The results table of a readout.

    Parameters
    ----------
    source : AnalysisResult or ReadoutRecord
        Anything with ``results``, ``method``, ``difference``, ``alpha`` and ``correction``.
        A readout record's ``bayesian`` table (a Bayesian readout logged beside a frequentist
        one) adds its chance to win and risk to the rows.
    """
    results = overall_rows(source.results)
    results = results if results is not None else pd.DataFrame()
    method = str(getattr(source, "method", "frequentist"))
    relative = str(getattr(source, "difference", "relative")) != "absolute"
    correction = getattr(source, "correction", None)
    beside = _bayesian_beside(source, results)
    own_chance = "chance_to_win" in results and \
        pd.to_numeric(results["chance_to_win"], errors="coerce").notna().any()
    bayesian = bool(own_chance or beside)
    frequentist = comparisons(results) > 0 or (method != "bayesian" and not bayesian)
    raw = corrected(results, correction)
    rows = []
    for rec in results.to_dict("records"):
        key = (rec.get("metric"), rec.get("variant"))
        b = rec if own_chance else beside.get(key, {})
        verdict = rec.get("verdict")
        verdict = verdict if isinstance(verdict, str) and verdict else fmt.MISSING
        error = rec.get("error_message")
        lo, hi, eff = value_of(rec, "ci_lower"), value_of(rec, "ci_upper"), value_of(rec, "effect")
        role = rec.get("role")
        rows.append(Row(
            metric=str(key[0]), variant=str(key[1]),
            role=role if isinstance(role, str) and role else fmt.MISSING,
            baseline=fmt.number(value_of(rec, "control_mean")),
            treatment=fmt.number(value_of(rec, "variant_mean")),
            lift=fmt.effect(eff, relative), interval=fmt.interval(lo, hi, relative),
            p_value=fmt.p_value(shown_p(rec)),
            p_value_raw=fmt.p_value(value_of(rec, "p_value")) if raw else fmt.MISSING,
            chance=fmt.chance(chance_of(b)) if b else fmt.MISSING,
            risk=fmt.risk(risk_of(b), relative) if b else fmt.MISSING,
            verdict=verdict, colour=COLOURS.get(verdict, NEUTRAL),
            error=error if isinstance(error, str) else "",
            effect_value=float(eff), lower_value=float(lo), upper_value=float(hi),
            variance_reduction=fmt.percent(value_of(rec, "variance_reduction")),
            covariates=_covariates(rec)))
    adjusted = "variance_reduction" in results and \
        pd.to_numeric(results["variance_reduction"], errors="coerce").notna().any()
    return ResultsTable(tuple(rows), relative, fmt.level(getattr(source, "alpha", 0.05)),
                        correction_text(results, correction), frequentist, bayesian, method,
                        raw, bool(adjusted))


def _covariates(rec: Mapping[str, Any]) -> str:
    """What a row was adjusted for: its covariates (regression adjustment), else CUPED's
    pre-period value."""
    value = rec.get("covariates")
    if isinstance(value, str) and value:
        return value
    return "the pre-period value (CUPED)" if fmt.finite(rec.get("variance_reduction")) else ""


# ------------------------------------------------------------------------------- other tables
# How each column of the readout's other tables (arms, robustness, power, simulation) is
# formatted; columns not listed are shown as they are. Titles say what the table is.
TITLES = {"arms": "Arm versus arm", "robustness": "Robustness of the decision",
          "power": "Power so far", "simulation": "Simulation check",
          "phases": "Phases (staged rollout)"}
_EFFECTS = ("effect", "primary_effect", "mde", "lift")
_INTERVAL_ENDS = {"ci_lower": "ci_upper", "primary_ci_lower": "primary_ci_upper",
                  "fpr_ci_lower": "fpr_ci_upper"}
_P = ("p_value", "margin_p_value", "ks_p_value", "srm_p_value")
_CHANCES = ("chance_to_be_best", "margin_chance")
_PERCENT = ("power", "target_power", "false_positive_rate", "weight", "planned_weight")
_FLAGS = ("significant", "flips", "baseline")
_COUNTS = ("n_so_far", "n_needed", "replicates", "n_control", "n_variant", "planned_n")
_DAYS = ("days_elapsed", "days_needed", "days_left", "planned_days")
_HIDDEN = ("error_message",)
_PROSE = ("sentence", "note", "decision", "setting")  # sentences may wrap; numbers never do
_WRAP = ";white-space:normal;min-width:120px;max-width:360px"
# The contract's columns first (WAVE3); more columns after them.
CONTRACT = {
    "arms": ["metric", "variant", "versus", "effect", "interval", "p_value",
             "chance_to_be_best", "significant", "sentence"],
    "robustness": ["choice", "setting", "decision", "flips", "primary_effect", "interval",
                   "baseline", "note"],
    "power": ["metric", "variant", "mde", "power", "target_power", "n_so_far", "n_needed",
              "days_elapsed", "days_needed", "days_left"],
    "simulation": ["metric", "variant", "replicates", "lift", "false_positive_rate",
                   "interval", "ks_p_value", "power"],
    "phases": ["metric", "variant", "phase", "start_date", "end_date", "weight",
               "planned_weight", "n_control", "n_variant", "effect", "interval", "p_value",
               "srm_p_value", "note"],
}


# Columns beyond the contract worth showing (the others are for logging).
_SHOWN_EXTRA: dict = {"power": ("planned_n", "planned_days")}  # the linked plan's sizes


def _cell(column: str, value: Any, relative: bool) -> str:
    if column in _EFFECTS:
        return fmt.effect(value, relative)
    if column in _P:
        return fmt.p_value(value)
    if column in _CHANCES:
        return fmt.chance(value)
    if column in _PERCENT:
        return fmt.percent(value)
    if column in _FLAGS:
        return fmt.yes_no(value)
    if column in _COUNTS:
        return fmt.count(value)
    if column in _DAYS:
        return fmt.days(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return fmt.MISSING
    if isinstance(value, float):
        return fmt.number(value)
    return str(value)


def table_cells(name: str, frame: pd.DataFrame, relative: bool = True
                ) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of one of the readout's other tables (``arms``, ``robustness``,
    ``power``, ``simulation``), formatted by :mod:`workbench.format`: the contract's columns
    (an interval from its two ends; the shown p-value, adjusted when corrected), a few more
    worth reading; every column for a table without a contract."""
    columns = list(frame.columns)
    wanted = [c for c in CONTRACT.get(name, []) if c in columns or c == "interval"]
    pairs = [(lo, hi) for lo, hi in _INTERVAL_ENDS.items() if lo in columns and hi in columns]
    if not pairs:
        wanted = [c for c in wanted if c != "interval"]
    if name not in CONTRACT:  # a table without a contract: every column
        used = set(wanted) | {c for p in pairs for c in p} | set(_HIDDEN)
        wanted += [c for c in columns if c not in used]
    wanted += [c for c in _SHOWN_EXTRA.get(name, ()) if c in columns]
    percent_interval = name == "simulation"
    rows = []
    for rec in frame.to_dict("records"):
        cells = []
        for c in wanted:
            if c == "interval":
                lo, hi = pairs[0]
                cells.append(f"[{fmt.percent(rec[lo])}, {fmt.percent(rec[hi])}]"
                             if percent_interval else fmt.interval(rec[lo], rec[hi], relative))
            elif c == "p_value":  # adjusted when the table was corrected, as in the results
                cells.append(fmt.p_value(shown_p(rec)))
            else:
                cells.append(_cell(c, rec.get(c), relative))
        rows.append(cells)
    head = [c.replace("_", " ") for c in wanted]
    if "primary_effect" in wanted:  # name the effect when the table is about one row
        of = [c for c in ("primary_metric", "variant") if c in columns
              and frame[c].nunique(dropna=True) == 1]
        if of:
            head[wanted.index("primary_effect")] += \
                f" ({', '.join(str(frame[c].dropna().iloc[0]) for c in of)})"
    return head, rows


def table_html(name: str, frame: pd.DataFrame, relative: bool = True) -> str:
    """One of the readout's other tables as HTML (no index, no wrapping of numbers); a row
    whose ``flips`` is true (robustness) is drawn in red."""
    head, rows = table_cells(name, frame, relative)
    flips = [bool(v) if isinstance(v, bool | int) else str(v).lower() == "true"
             for v in frame["flips"]] if "flips" in frame else [False] * len(rows)
    th = "".join(f"<th style='{_CELL.format(align='left')};border-bottom:2px solid #d0d7de'>"
                 f"{_esc(h)}</th>" for h in head)
    body = "".join(
        f"<tr style='border-bottom:1px solid #eaeef2{';color:' + BAD if flip else ''}'>"
        + "".join(f"<td style='{_CELL.format(align='left')}{_WRAP if h in _PROSE else ''}'>"
                  f"{_esc(c)}</td>" for h, c in zip(head, cells))
        + "</tr>" for cells, flip in zip(rows, flips))
    return (f"<div class='wb-{_esc(name)}' style='overflow-x:auto;max-width:100%'>"
            "<table style='border-collapse:collapse;font-size:13px;"
            f"font-variant-numeric:tabular-nums'><thead><tr>{th}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")
