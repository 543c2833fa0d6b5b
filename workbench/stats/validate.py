"""Validation of the sufficient-statistics input table (see :mod:`workbench.stats.schema`)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.errors import StatsInputError
from workbench.stats import schema

# Sums of squares are reconstructed from sums; floating error grows with their size.
_RTOL = 1e-9


def _where(frame: pd.DataFrame, pos: int) -> str:
    row = frame.iloc[pos]
    groups = ", ".join(f"{c}={row[c]!r}" for c in schema.GROUP_COLUMNS if c in frame.columns)
    extra = f", {groups}" if groups else ""
    return f"row {frame.index[pos]!r} (metric={row['metric']!r}, variant={row['variant']!r}{extra})"


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    try:
        return pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError) as exc:
        raise StatsInputError(f"column {column!r} of the statistics table must be numeric: {exc}") from None


def _check_not_below(frame, low_ok, label, mask):
    bad = np.flatnonzero(mask & ~low_ok)
    if bad.size:
        raise StatsInputError(f"{_where(frame, bad[0])}: {label}")


def _all_quantiles(stats: pd.DataFrame) -> bool:
    return "kind" in stats.columns and len(stats) > 0 and bool(
        (stats["kind"].astype(str).str.strip().str.lower() == "quantile").all())


def _check_quantiles(frame: pd.DataFrame, is_q: np.ndarray) -> None:
    """Quantile rows: the columns of ``schema.QUANTILE_INPUT``, a level in (0, 1) and
    ``quantile_lower <= quantile <= quantile_upper`` (NaN is degenerate, not malformed)."""
    if not is_q.any():
        return
    for col in schema.QUANTILE_INPUT:
        if col not in frame.columns:
            pos = int(np.flatnonzero(is_q)[0])
            raise StatsInputError(f"{_where(frame, pos)}: quantile metrics need column {col!r}")
    level = frame["quantile_level"].to_numpy()
    _check_not_below(frame, (level > 0) & (level < 1), "quantile_level must lie in (0, 1)", is_q)
    est, lo, hi = (frame[c].to_numpy() for c in schema.QUANTILE_INPUT[1:])
    with np.errstate(invalid="ignore"):
        tol = _RTOL * (np.abs(lo) + np.abs(hi) + np.abs(est))
        ok = ~((lo > est + tol) | (est > hi + tol))
    _check_not_below(frame, ok, "quantile_lower <= quantile <= quantile_upper is violated",
                     is_q)


def validate(stats: pd.DataFrame, control: str) -> pd.DataFrame:
    """Check the input table and return a copy with numeric columns as float.

    Parameters
    ----------
    stats : DataFrame
        One row per metric x variant (x grouping columns), columns of ``schema.INPUT_COLUMNS``.
    control : str
        Name of the control variant; it must occur in the table.

    Raises
    ------
    StatsInputError
        Missing column, non-numeric value, unknown kind, negative ``n``, impossible sums
        (``sum_squares < sum^2/n``, proportion ``sum`` outside ``[0, n]``), duplicated
        metric x variant, a metric with mixed kinds, or a control that never occurs. The
        message names the row (index, metric, variant).
    """
    if not isinstance(stats, pd.DataFrame):
        raise StatsInputError(f"stats must be a pandas DataFrame, got {type(stats).__name__}")
    missing = [c for c in schema.REQUIRED_INPUT if c not in stats.columns
               and not (c == "sum" and _all_quantiles(stats))]  # quantile rows need no sums
    if missing:
        raise StatsInputError(f"the statistics table lacks required column(s) {missing}; "
                              f"expected {list(schema.REQUIRED_INPUT)}")
    frame = stats.copy()
    if "sum" not in frame.columns:
        frame["sum"] = np.nan
    if frame.empty:
        raise StatsInputError("the statistics table has no rows")
    for col in ("metric", "variant", "kind"):
        if frame[col].isna().any():
            pos = int(np.flatnonzero(frame[col].isna().to_numpy())[0])
            raise StatsInputError(f"row {frame.index[pos]!r}: column {col!r} is missing")
    kinds = frame["kind"].to_numpy()
    if not np.isin(kinds, schema.KINDS).all():  # normalise only when needed (it is slow)
        frame["kind"] = frame["kind"].astype(str).str.strip().str.lower()
        kinds = frame["kind"].to_numpy()
    if frame["variant"].dtype != object or not all(isinstance(v, str) for v in
                                                    frame["variant"].unique()):
        frame["variant"] = frame["variant"].astype(str)
    unknown = np.flatnonzero(~np.isin(kinds, schema.KINDS))
    if unknown.size:
        raise StatsInputError(f"{_where(frame, unknown[0])}: unknown metric kind "
                              f"{kinds[unknown[0]]!r}; expected one of {list(schema.KINDS)}")

    numeric = [c for c in schema.INPUT_COLUMNS if c in frame.columns
               and c not in schema.TEXT_INPUT]
    for col in numeric:
        frame[col] = _numeric(frame, col)

    is_prop = kinds == "proportion"
    is_mean = kinds == "mean"
    is_ratio = kinds == "ratio"
    for kind_mask, cols, kind in ((is_mean, ("sum_squares",), "mean"),
                                  (is_ratio, ("sum_squares",) + schema.RATIO_INPUT, "ratio")):
        for col in cols:
            if kind_mask.any() and col not in frame.columns:
                pos = int(np.flatnonzero(kind_mask)[0])
                raise StatsInputError(f"{_where(frame, pos)}: {kind} metrics need column {col!r}")

    _check_quantiles(frame, kinds == "quantile")
    n = frame["n"].to_numpy()
    s = frame["sum"].to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        neg = np.flatnonzero(n < 0)
        if neg.size:
            raise StatsInputError(f"{_where(frame, neg[0])}: negative n ({n[neg[0]]:g})")
        tol_p = _RTOL * np.maximum(np.abs(n), 1.0)
        _check_not_below(frame, ~((s < -tol_p) | (s > n + tol_p)),
                         "proportion sum must lie in [0, n]", is_prop)

        def _ss_check(ss_col, sum_col, mask, label):
            if ss_col not in frame.columns:
                return
            ss = frame[ss_col].to_numpy()
            sm = frame[sum_col].to_numpy()
            # ss >= sm^2/n - tol, divided by |sm| so that no intermediate overflows:
            # ss/|sm| >= |sm|/n - RTOL (ss/|sm| + |sm|/n) - 1e-12/|sm|
            a = np.abs(sm)
            nn = np.where(n > 0, n, 1.0)
            with np.errstate(divide="ignore", over="ignore"):
                lhs = ss / np.where(a > 0, a, 1.0)
                rhs = np.where(n > 0, a / nn, 0.0)
                tol = _RTOL * (np.abs(lhs) + rhs) + 1e-12 / np.where(a > 0, a, 1.0)
            ok = np.where(a > 0, ~(lhs < rhs - tol), ~(ss < -1e-12))
            _check_not_below(frame, ok, f"{ss_col} < {sum_col}^2/n ({label})", mask)

        _ss_check("sum_squares", "sum", is_mean | is_ratio, "impossible: negative variance")
        _ss_check("den_sum_squares", "den_sum", is_ratio, "impossible: negative variance")
        _ss_check("pre_sum_squares", "pre_sum", np.ones(len(frame), bool),
                  "impossible: negative variance")
        _ss_check("pre_den_sum_squares", "pre_den_sum", is_ratio, "impossible: negative variance")

    if is_ratio.any() and n.size:
        # Cauchy-Schwarz: the centred cross product cannot exceed the product of the spreads
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            nn = np.where(n > 0, n, 1.0)
            cyy = frame["sum_squares"].to_numpy() - s**2 / nn
            d = frame["den_sum"].to_numpy()
            cdd = frame["den_sum_squares"].to_numpy() - d**2 / nn
            cyd = frame["sum_product"].to_numpy() - s * d / nn
            limit = np.sqrt(np.maximum(cyy, 0) * np.maximum(cdd, 0))
            ok = ~(np.abs(cyd) > limit * (1 + 1e-7) + _RTOL * (np.abs(s * d / nn) + 1.0))
            # an intermediate overflowed: not checkable here, the engine flags the row
            ok |= ~(np.isfinite(cyy) & np.isfinite(cdd) & np.isfinite(cyd) & np.isfinite(limit))
        _check_not_below(frame, ok, "sum_product is impossible given sum_squares and "
                         "den_sum_squares (|covariance| > product of standard deviations)",
                         is_ratio & (n > 0))

    keys = ["metric", "variant"] + [c for c in schema.GROUP_COLUMNS if c in frame.columns]
    dup = frame.duplicated(keys, keep="first").to_numpy()
    if dup.any():
        raise StatsInputError(f"{_where(frame, int(np.flatnonzero(dup)[0]))}: duplicated "
                              f"{' x '.join(keys)}")
    mixed = frame.groupby("metric", sort=False)["kind"].nunique()
    if (mixed > 1).any():
        metric = mixed.index[np.flatnonzero(mixed.to_numpy() > 1)[0]]
        raise StatsInputError(f"metric {metric!r} has rows of different kinds "
                              f"{sorted(frame.loc[frame['metric'] == metric, 'kind'].unique())}")
    if not (frame["variant"] == str(control)).any():
        raise StatsInputError(f"control variant {control!r} does not occur in the statistics "
                              f"table (variants: {sorted(frame['variant'].unique())})")
    return frame
