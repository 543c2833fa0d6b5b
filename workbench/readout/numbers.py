"""The numbers a results row shows, chosen in one place for every surface.

The notebook's and report's table (:mod:`workbench.readout.table`), the MLflow metrics of the
readout record (:meth:`~workbench.readout.record.ReadoutRecord.metrics`) and the dashboards all
take a row's shown p-value, chance to win and risk, and the label of the correction, from here:

>>> shown_p({"p_value": 0.01, "p_value_adjusted": 0.03})
0.03
>>> chance_of({"chance_to_win": 0.9, "higher_is_better": False})  # doctest: +ELLIPSIS
0.09999...
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from workbench import format as fmt
from workbench.readout.decision import comparisons as comparisons_in

__all__ = ["overall_rows", "value_of", "shown_p", "chance_of", "risk_of", "comparisons", "corrected",
           "correction_text"]


def overall_rows(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Rows of a results table that are neither a segment nor a day."""
    if frame is None:
        return None
    rows = frame
    if "dimension" in rows.columns:
        rows = rows[rows["dimension"].isna() | (rows["dimension"] == "(all)")]
    if "date" in rows.columns:
        rows = rows[rows["date"].isna()]
    return rows


def value_of(row: Mapping[str, Any], name: str) -> Any:
    """``row[name]`` if it is a finite number, else NaN."""
    value = row.get(name)
    return value if fmt.finite(value) else math.nan


def shown_p(row: Mapping[str, Any]) -> float:
    """The p-value a row shows: the adjusted one when a correction gave one, else the raw."""
    adjusted = value_of(row, "p_value_adjusted")
    return float(adjusted) if fmt.finite(adjusted) else float(value_of(row, "p_value"))


def chance_of(row: Mapping[str, Any]) -> float:
    """The chance to win in the metric's good direction (the engine's is P(variant >
    control); a win is a fall when lower is better)."""
    ctw = value_of(row, "chance_to_win")
    return float(ctw) if _higher_is_better(row) else 1 - float(ctw)


def risk_of(row: Mapping[str, Any]) -> float:
    """The risk (expected loss) of shipping the variant, in the metric's good direction."""
    return float(value_of(row, "risk_variant" if _higher_is_better(row) else "risk_control"))


def _higher_is_better(row: Mapping[str, Any]) -> bool:
    hib = row.get("higher_is_better", True)
    return True if hib is None or (isinstance(hib, float) and math.isnan(hib)) else bool(hib)


def comparisons(results: pd.DataFrame | None) -> int:
    """The number of comparisons corrected together: the overall rows with a p-value (the
    overall results form one family of the correction)."""
    return comparisons_in(overall_rows(results))


def corrected(results: pd.DataFrame | None, correction: str | None) -> bool:
    """Whether the shown p-values (and intervals) of ``results`` are adjusted."""
    rows = overall_rows(results)
    return bool(correction) and rows is not None and "p_value_adjusted" in rows \
        and pd.to_numeric(rows["p_value_adjusted"], errors="coerce").notna().any()


def correction_text(results: pd.DataFrame | None, correction: str | None) -> str:
    """``adjusted, Holm across 12 comparisons`` when the rows were corrected, ``unadjusted``
    when they have p-values but no correction, empty without p-values (Bayesian)."""
    n = comparisons(results)
    if not n:
        return ""
    return fmt.correction_label(correction if corrected(results, correction) else None, n)
