"""THE formatting of numbers people read: every surface (notebook, report, dashboard, CLI) calls
these, so the same number is written the same way everywhere.

>>> percent(0.0312, signed=True)
'+3.1 %'
>>> p_value(3.041e-05)
'< 0.0001'
>>> chance(0.9971), chance(0.99993)
('99.7 %', '> 99.9 %')
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

MISSING = "-"
P_FLOOR = 1e-4


def finite(value: Any) -> bool:
    """True for a real, finite number (not None, NaN, inf, text or a bool)."""
    if value is None or isinstance(value, bool | str):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def percent(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A fraction as a percentage: ``0.0312`` -> ``3.1 %`` (``+3.1 %`` when ``signed``)."""
    if not finite(value):
        return MISSING
    v = float(value) * 100
    text = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    if text.lstrip("+-").strip("0.") == "":  # -0.0 and +0.0 read as 0
        text = f"{0:+.{digits}f}" if signed else f"{0:.{digits}f}"
    return f"{text} %"


def number(value: Any, digits: int = 4) -> str:
    """A quantity in its own units without exponent notation: ``66670.2`` -> ``66,670``,
    ``0.00342`` -> ``0.00342``, ``12.3456`` -> ``12.35``."""
    if not finite(value):
        return MISSING
    v = float(value)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(a)))
    text = f"{v:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def count(value: Any) -> str:
    """A count: ``12345`` -> ``12,345``."""
    return f"{int(round(float(value))):,}" if finite(value) else MISSING


def effect(value: Any, relative: bool) -> str:
    """A lift (relative: a signed percentage) or a difference (absolute: a signed number)."""
    if not finite(value):
        return MISSING
    if relative:
        return percent(value, signed=True)
    text = number(value)
    return text if text.startswith("-") or text == "0" else f"+{text}"


def interval(lower: Any, upper: Any, relative: bool) -> str:
    """``[-1.2 %, +3.4 %]``."""
    if not (finite(lower) and finite(upper)):
        return MISSING
    return f"[{effect(lower, relative)}, {effect(upper, relative)}]"


def p_value(value: Any) -> str:
    """``< 0.0001`` below 1e-4, else four decimals: ``0.0132``."""
    if not finite(value):
        return MISSING
    v = float(value)
    return "< 0.0001" if v < P_FLOOR else f"{v:.4f}"


def chance(value: Any) -> str:
    """A probability people read as a chance: ``> 99.9 %``, ``99.7 %``, ``< 0.1 %``."""
    if not finite(value):
        return MISSING
    v = float(value)
    if v > 0.999:
        return "> 99.9 %"
    if v < 0.001:
        return "< 0.1 %"
    return percent(v)


def risk(value: Any, relative: bool) -> str:
    """The expected loss of a choice, in the units of the effect (``0.12 %`` of the baseline
    when relative)."""
    if not finite(value):
        return MISSING
    v = abs(float(value))
    if relative:
        return "< 0.01 %" if 0 < v < 1e-4 else percent(v, digits=2)
    return number(v)


def level(alpha: Any) -> str:
    """The confidence level of intervals at ``alpha``: ``95 %`` (``99.5 %`` for 0.005)."""
    if not finite(alpha):
        return MISSING
    v = (1 - float(alpha)) * 100
    return f"{v:.0f} %" if abs(v - round(v)) < 1e-9 else f"{v:.1f} %"


def p_equals(value: Any) -> str:
    """``p = 0.0132`` or ``p < 0.0001`` (a p-value in a sentence)."""
    text = p_value(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def yes_no(value: Any) -> str:
    """A flag as ``yes`` / ``no`` (``-`` when missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, str):
        return {"true": "yes", "false": "no"}.get(value.lower(), value)
    return "yes" if bool(value) else "no"


def days(value: Any) -> str:
    """A number of days: ``12 days``, ``1 day``, ``0.5 days``."""
    if not finite(value):
        return MISSING
    text = number(value, digits=2)
    return f"{text} day" if text == "1" else f"{text} days"


def correction_label(method: str | None, comparisons: int) -> str:
    """``adjusted, Holm across 12 comparisons`` (or ``unadjusted`` without a correction)."""
    names = {"holm": "Holm", "bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni"}
    if not method:
        return "unadjusted"
    word = "comparison" if comparisons == 1 else "comparisons"
    return f"adjusted, {names.get(method, method)} across {comparisons} {word}"


def cell(value: Any) -> str:
    """Any table value as people read it: numbers by :func:`number` (integers by :func:`count`),
    booleans as ``yes``/``no``, missing values as ``-``, the rest as text."""
    if value is None:
        return MISSING
    if type(value).__name__ in ("bool", "bool_"):  # Python, numpy and pandas booleans
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or type(value).__name__.startswith(("int", "uint")):
        return count(value)
    try:
        number_value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number_value):
        return MISSING
    return number(number_value)


def table_frame(frame: Any, formats: Mapping[str, Callable[[Any], str]] | None = None,
                labels: Mapping[str, str] | None = None) -> Any:
    """A DataFrame as text cells: each column through ``formats[column]`` (default
    :func:`cell`), columns renamed by ``labels``, a fresh 0..n-1 index (never shown)."""
    import pandas as pd

    formats = dict(formats or {})
    out = pd.DataFrame({col: [formats.get(col, cell)(v) if not _missing(v) else MISSING
                              for v in frame[col]] for col in frame.columns})
    return out.rename(columns=dict(labels or {}))


def table_html(frame: Any, title: str = "",
               formats: Mapping[str, Callable[[Any], str]] | None = None,
               labels: Mapping[str, str] | None = None) -> str:
    """A titled HTML table for a report: cells by :func:`table_frame`, no index column."""
    import html as _html

    body = table_frame(frame, formats, labels).to_html(index=False, escape=True, border=0,
                                                       classes="workbench-table")
    return (f"<p><b>{_html.escape(title)}</b></p>" if title else "") + body


def _missing(value: Any) -> bool:
    """None, NaN, NaT and pd.NA (not lists or text)."""
    import pandas as pd

    try:
        return bool(pd.isna(value)) if pd.api.types.is_scalar(value) or value is None else False
    except (TypeError, ValueError):
        return False
