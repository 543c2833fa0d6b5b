"""Checks of the statistics table and arguments shared by the PyMC models."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import StatsInputError
from workbench.stats.pymc import sampling
from workbench.stats.schema import GROUP_COLUMNS

DIFFERENCES = ("relative", "absolute")


def check_table(stats, control: str, need: tuple[str, ...]) -> pd.DataFrame:
    """A numeric copy of the statistics table; raises naming the column or row at fault."""
    if not isinstance(stats, pd.DataFrame):
        raise StatsInputError(f"stats must be a pandas DataFrame, got {type(stats).__name__}")
    if stats.empty:
        raise StatsInputError("the statistics table has no rows")
    missing = [c for c in ("metric", "variant", "kind", "n", "sum", *need) if c not in stats.columns]
    if missing:
        raise StatsInputError(f"the statistics table lacks column(s) {missing}")
    frame = stats.reset_index(drop=True).copy()
    for col in ("n", "sum", *need):
        try:
            frame[col] = pd.to_numeric(frame[col], errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            raise StatsInputError(f"column {col!r} of the statistics table must be numeric: "
                                  f"{exc}") from None
        bad = np.flatnonzero(~np.isfinite(frame[col].to_numpy()))
        if bad.size:
            r = frame.iloc[bad[0]]
            raise StatsInputError(f"column {col!r} is not finite in row {bad[0]} "
                                  f"(metric={r['metric']!r}, variant={r['variant']!r})")
    bad = np.flatnonzero(frame["n"].to_numpy() < 0)
    if bad.size:
        r = frame.iloc[bad[0]]
        raise StatsInputError(f"column 'n' is negative in row {bad[0]} (metric={r['metric']!r}, "
                              f"variant={r['variant']!r})")
    if control not in set(frame["variant"]):
        raise StatsInputError(f"control variant {control!r} not found in column 'variant' "
                              f"(variants: {sorted(map(str, frame['variant'].unique()))})")
    return frame


def check_args(difference: str, alpha: float) -> None:
    if difference not in DIFFERENCES:
        raise StatsInputError(f"difference must be one of {DIFFERENCES}, got {difference!r}")
    if not 0 < alpha < 1:
        raise StatsInputError(f"alpha must be in (0, 1), got {alpha!r}")


def pick(frame: pd.DataFrame, column: str, values) -> pd.DataFrame:
    """Rows whose ``column`` is one of ``values`` (a str or a list); raises naming any absent."""
    values = [values] if isinstance(values, str) else list(values)
    unknown = sorted(set(values) - set(frame[column]))
    if unknown:
        raise StatsInputError(f"{column}(s) {unknown} not in column {column!r}")
    return frame[frame[column].isin(values)]


def select_metrics(frame: pd.DataFrame, metrics, kinds: tuple[str, ...], model: str) -> pd.DataFrame:
    """Rows of the requested metrics (default: every metric of ``kinds``)."""
    if metrics is not None:
        frame = pick(frame, "metric", metrics)
        wrong = frame.loc[~frame["kind"].isin(kinds), "metric"].unique()
        if len(wrong):
            raise StatsInputError(f"the {model} model takes metrics of kind {kinds}; "
                                  f"metric(s) {sorted(wrong)} are not")
    else:
        frame = frame[frame["kind"].isin(kinds)]
        if frame.empty:
            raise StatsInputError(f"no metric of kind {kinds} in the statistics table for the "
                                  f"{model} model")
    return frame


def check_unique(block: pd.DataFrame, key_cols: list[str]) -> None:
    dup = block.duplicated(key_cols)
    if dup.any():
        r = block[dup].iloc[0]
        raise StatsInputError("duplicated rows for " + ", ".join(f"{c}={r[c]!r}" for c in key_cols))


def control_first(block: pd.DataFrame, control: str, base: dict) -> pd.DataFrame:
    """The block's rows, one per variant, the control's first."""
    check_unique(block, ["variant"])
    if control not in set(block["variant"]):
        raise StatsInputError(f"control variant {control!r} has no row for "
                              + ", ".join(f"{k}={v!r}" for k, v in base.items()))
    return pd.concat([block[block["variant"] == control], block[block["variant"] != control]])


def arm_blocks(stats, control: str, metrics, difference: str, alpha: float,
               kinds: tuple[str, ...], need: tuple[str, ...], model: str, random_seed):
    """The checked arguments and table of a multi-arm model, cut into metric x grouping blocks.

    Returns the grouping columns present and an iterator of ``(key, base, block, seed)``: the
    block's key (metric, then grouping values), its identifying columns as a dict, its rows (one
    per variant, the control's first; checked as each block is reached) and its sampler seed
    (one per block, in table order, from ``random_seed``).
    """
    check_args(difference, alpha)
    frame = check_table(stats, control, need)
    frame = select_metrics(frame, metrics, kinds, model)
    group_cols = [c for c in GROUP_COLUMNS if c in frame.columns]
    blocks = list(frame.groupby(["metric", *group_cols], sort=False, dropna=False))
    return group_cols, _arm_blocks(blocks, group_cols, control, sampling.seeds(random_seed,
                                                                                len(blocks)))


def _arm_blocks(blocks, group_cols, control, seeds) -> Iterator[tuple]:
    for (key, block), seed in zip(blocks, seeds):
        key = key if isinstance(key, tuple) else (key,)
        base = {"metric": key[0], **dict(zip(group_cols, key[1:]))}
        yield key, base, control_first(block, control, base), seed


def arm_problems(n, *checks) -> list[str]:
    """Per arm (control first), why it cannot be fitted, '' if it can: no units, else the message
    of the first ``(mask, message)`` of ``checks`` whose mask holds for it."""
    bad = ["" for _ in range(len(n))]
    for j in range(len(n)):
        if n[j] == 0:
            bad[j] = messages.NO_UNITS_CONTROL if j == 0 else messages.NO_UNITS_VARIANT
        else:
            bad[j] = next((msg for mask, msg in checks if mask[j]), "")
    return bad


def variance(frame: pd.DataFrame) -> np.ndarray:
    """Sample variance (n-1) of each row; p(1-p)-based for proportions."""
    n, s = frame["n"].to_numpy(), frame["sum"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        if "sum_squares" in frame:
            ss = frame["sum_squares"].to_numpy(dtype=float)
        else:
            ss = np.full(len(frame), np.nan)
        prop = frame["kind"].to_numpy() == "proportion"
        ss = np.where(prop & ~np.isfinite(ss), s, ss)
        var = (ss - n * mean**2) / (n - 1)
    return np.maximum(var, 0.0)
