"""Data drift between a reference and a current dataset.

:func:`drift_table` computes a verdict per column on the FULL data with exactly the defaults of
Evidently 0.7's ``DataDriftPreset`` (method chosen by column type and size, the method's default
threshold, dataset drift when at least half the columns drift), so its verdicts agree with
Evidently's, in a fraction of the time. :func:`evidently_report` builds Evidently's own report
(HTML + JSON) on a sample, since that report embeds the data.

Default method selection, copied from ``evidently/legacy/calculations/stattests/registry.py``
(``_get_default_stattest``), after dropping NaN and +/-inf from each column:

============  ======================  ====================================  =========
column        reference rows <= 1000  reference rows > 1000                 threshold
============  ======================  ====================================  =========
numeric       KS p-value (>5 values)  normed Wasserstein (>5 values)        0.05/0.1
numeric       chi-square (3-5), Z     Jensen-Shannon (<= 5 values)          0.05/0.1
categorical   chi-square (>2), Z (2)  Jensen-Shannon                        0.05/0.1
============  ======================  ====================================  =========

p-value methods flag drift when ``p < threshold`` (KS: ``p <= threshold``), distances when
``distance >= threshold``.

One Evidently quirk is not copied: its per-column ``ValueDrift`` drops +/-inf, but its
``DriftedColumnsCount`` drops them only from columns that also hold a NaN (a numeric column with
inf and no NaN gets a NaN score there, hence "not drifted"). ``drift_table`` always drops them.
"""
from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from workbench import format as fmt
from workbench import messages
from workbench.errors import DataError
from workbench.summary import Summary

# Evidently's names (display names as they appear in its snapshot JSON).
WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"
KS = "K-S p_value"
CHI_SQUARE = "chi-square p_value"
Z_TEST = "Z-test p_value"
DEFAULT_THRESHOLDS = {WASSERSTEIN: 0.1, JENSEN_SHANNON: 0.1, KS: 0.05, CHI_SQUARE: 0.05, Z_TEST: 0.05}
P_VALUE_METHODS = {KS, CHI_SQUARE, Z_TEST}

SMALL_DATA_ROWS = 1000  # Evidently: "reference_data.shape[0] <= 1000" picks the small-data tests
INTEGER_CARDINALITY_LIMIT = 10  # Evidently: int columns with <= 10 distinct values are categorical
_KS_EXACT_MAX_N = 10_000  # scipy.stats.ks_2samp(method="auto") is exact up to this size

TABLE_COLUMNS = [
    "column", "type", "method", "statistic", "threshold", "drifted", "status", "message",
    "n_reference", "n_current", "missing_reference", "missing_current",
    "wasserstein_norm", "ks_statistic", "ks_pvalue", "jensenshannon", "psi", "chi2_pvalue",
]


def _default_method(kind: str, n_reference: int, n_values: int) -> str:
    """Evidently 0.7.23 ``_get_default_stattest`` for numeric and categorical columns."""
    if n_reference <= SMALL_DATA_ROWS:
        if kind == "numeric" and n_values > 5:
            return KS
        return CHI_SQUARE if n_values > 2 else Z_TEST
    if kind == "numeric" and n_values > 5:
        return WASSERSTEIN
    return JENSEN_SHANNON


def _is_drifted(method: str, statistic: float, threshold: float) -> bool:
    if method == KS:
        return bool(statistic <= threshold)
    if method in P_VALUE_METHODS:
        return bool(statistic < threshold)  # NaN compares False, as in Evidently
    return bool(statistic >= threshold)


# --------------------------------------------------------------------------------------------
# statistics


def _numeric_stats(ref: np.ndarray, cur: np.ndarray) -> dict[str, float]:
    """Normed Wasserstein distance and two-sided KS from ONE sort of each sample.

    Same formulas as ``scipy.stats.wasserstein_distance`` / ``ks_2samp`` (both evaluate the two
    empirical CDFs on the pooled sorted values); sharing the sort is what makes this fast.
    """
    ref = np.sort(ref)
    cur = np.sort(cur)
    n1, n2 = ref.size, cur.size
    both = np.concatenate([ref, cur])
    # Two sorted runs: a stable argsort (timsort) merges them in linear time, and the running
    # count of reference values gives both CDFs without a binary search.
    order = np.argsort(both, kind="stable")
    pooled = both[order]
    n_ref_below = np.cumsum(order < n1)
    diff = n_ref_below / n1 - (np.arange(1, n1 + n2 + 1) - n_ref_below) / n2
    gaps = np.diff(pooled)
    # Inside a run of tied values the gap is 0, so the integral needs no tie handling ...
    wasserstein = float(np.dot(np.abs(diff[:-1]), gaps))
    # ... but the KS maximum must be read at the last element of each run of ties.
    ends = np.flatnonzero(gaps != 0)
    d = max(float(np.max(np.abs(diff[ends]))) if ends.size else 0.0, abs(float(diff[-1])))
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        ks_p = float(stats.ks_2samp(ref, cur).pvalue)
    else:
        # scipy's asymptotic branch is kstwo.sf(d, round(en)), which takes ~0.5 s when p is tiny;
        # below 1e-3 the limiting Kolmogorov distribution is used instead (relative error ~1%,
        # and large-data verdicts do not use this p-value anyway).
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = np.round(m * n / (m + n))
        ks_p = float(stats.kstwobign.sf(np.sqrt(en) * d))
        if ks_p > 1e-3:
            ks_p = float(np.clip(stats.kstwo.sf(d, en), 0, 1))
    # np.std is the population sd (ddof=0), floored at 0.001 as in Evidently.
    norm = max(float(np.std(ref)), 0.001)
    return {"wasserstein_norm": wasserstein / norm, "ks_statistic": d, "ks_pvalue": ks_p,
            "_n_values": int(ends.size) + 1,
            "_constant": (bool(ref[0] == ref[-1]), bool(cur[0] == cur[-1]))}


def _count_stats(ref_counts: pd.Series, cur_counts: pd.Series, n_ref: int, n_cur: int) -> dict:
    """Jensen-Shannon, PSI, chi-square and Z-test from category counts (Evidently's formulas)."""
    keys = ref_counts.index.union(cur_counts.index)
    rc = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype=float)
    cc = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype=float)
    p, q = rc / n_ref, cc / n_cur
    out = {"jensenshannon": float(distance.jensenshannon(p, q))}
    # PSI fills empty cells as Evidently's get_binned_data(feel_zeroes=True) does.
    pf, qf = p.copy(), q.copy()
    for arr in (pf, qf):
        small = arr[arr != 0].min()
        arr[arr == 0] = small / 10**6 if small <= 0.0001 else 0.0001
    out["psi"] = float(np.sum((pf - qf) * np.log(pf / qf)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["chi2_pvalue"] = float(stats.chisquare(cc, rc * n_cur / n_ref).pvalue)
    # Z-test on "first sorted key" vs the rest, as evidently's z_stattest.
    if len(ref_counts) == 1 and len(cur_counts) == 1 and ref_counts.index[0] == cur_counts.index[0]:
        out["z_pvalue"] = 1.0
    else:
        try:
            first = sorted(keys)[0]
        except TypeError:
            first = sorted(keys, key=str)[0]
        p1 = 1 - ref_counts.get(first, 0) / n_ref
        p2 = 1 - cur_counts.get(first, 0) / n_cur
        pooled = (p1 * n_ref + p2 * n_cur) / (n_ref + n_cur)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
        out["z_pvalue"] = float(2 * (1 - stats.norm.cdf(abs(z))))
    return out


# --------------------------------------------------------------------------------------------
# per-column preparation


def _object_types(values: pd.Series) -> list[str]:
    return sorted({type(v).__name__ for v in values.dropna().unique()[:10_000]})


def _infer_kind(s: pd.Series) -> tuple[str, str | None]:
    """Column kind by Evidently's ``infer_column_type`` rules; returns (kind, note)."""
    name = s.dtype.name
    if name.startswith(("float", "Float")):
        return "numeric", None
    if name.startswith(("int", "uint", "Int", "UInt")):
        return ("categorical" if s.nunique() <= INTEGER_CARDINALITY_LIMIT else "numeric"), None
    if name in ("bool", "boolean", "category"):
        return "categorical", None
    if name in ("string", "str", "object"):
        non_null = s.dropna()
        if non_null.empty:
            return "empty", None
        types = _object_types(non_null) if name == "object" else ["str"]
        if types != ["str"]:
            return "categorical", messages.DRIFT_MIXED_TYPES.format(types=", ".join(types))
        if non_null.nunique() > 0.5 * non_null.size:
            return "text", None
        return "categorical", None
    return "unsupported", None


def _clean_numeric(s: pd.Series) -> tuple[np.ndarray, int]:
    a = s.to_numpy(dtype=np.float64, na_value=np.nan)
    mask = np.isfinite(a)
    n_bad = int(a.size - np.count_nonzero(mask))
    return (a if n_bad == 0 else a[mask]), n_bad


def _clean_categorical(s: pd.Series, as_text: bool) -> tuple[pd.Series, int]:
    if s.dtype.kind == "f":
        s = s.replace([np.inf, -np.inf], np.nan)
    kept = s.dropna()
    if as_text:
        kept = kept.astype(str)
    return kept, int(s.size - kept.size)


def _column_drift(name: str, ref: pd.Series | None, cur: pd.Series | None) -> dict[str, Any]:
    row: dict[str, Any] = {"column": name, "type": None, "method": None, "statistic": np.nan,
                           "threshold": np.nan, "drifted": pd.NA, "status": "ok", "message": "",
                           "n_reference": 0, "n_current": 0}
    notes: list[str] = []

    def done(status: str, note: str | None = None) -> dict[str, Any]:
        if note:
            notes.append(note)
        row["status"] = status
        row["message"] = "; ".join(notes)
        return row

    for label, s in (("reference", ref), ("current", cur)):
        if s is None:
            return done("error", messages.DRIFT_MISSING_COLUMN.format(dataset=label))
    for label, s in (("reference", ref), ("current", cur)):
        if len(s) == 0:
            return done("error", messages.DRIFT_EMPTY.format(dataset=label))

    kind_ref, note_ref = _infer_kind(ref)
    kind_cur, note_cur = _infer_kind(cur)
    kind, note = (kind_ref, note_ref) if kind_ref != "empty" else (kind_cur, note_cur)
    if kind == "empty":  # object columns with no value at all
        return done("error", messages.DRIFT_ALL_MISSING.format(dataset="reference"))
    row["type"] = kind
    if kind == "text":
        return done("skipped", messages.DRIFT_TEXT_SKIPPED)
    if kind == "unsupported":
        return done("skipped", messages.DRIFT_UNSUPPORTED_TYPE.format(dtype=ref.dtype))
    as_text = note is not None or (note_cur is not None and kind_cur != "empty")
    if note:
        notes.append(note)
    elif note_cur and kind_cur != "empty":
        notes.append(note_cur)
    if kind == "numeric" and not (pd.api.types.is_numeric_dtype(ref)
                                  and pd.api.types.is_numeric_dtype(cur)):
        notes.append(messages.DRIFT_TYPE_MISMATCH.format(ref=ref.dtype, cur=cur.dtype))
        kind, as_text = "categorical", True
        row["type"] = kind
    if kind == "categorical" and pd.api.types.is_numeric_dtype(ref) != pd.api.types.is_numeric_dtype(cur):
        as_text = True

    if kind == "numeric":
        r, miss_r = _clean_numeric(ref)
        c, miss_c = _clean_numeric(cur)
        n_r, n_c = r.size, c.size
    else:
        r, miss_r = _clean_categorical(ref, as_text)
        c, miss_c = _clean_categorical(cur, as_text)
        n_r, n_c = len(r), len(c)
    row.update(n_reference=n_r, n_current=n_c,
               missing_reference=miss_r / len(ref), missing_current=miss_c / len(cur))
    for label, n in (("reference", n_r), ("current", n_c)):
        if n == 0:
            return done("error", messages.DRIFT_ALL_MISSING.format(dataset=label))

    if kind == "numeric":
        numeric = _numeric_stats(r, c)
        n_values = numeric.pop("_n_values")
        constant_r, constant_c = numeric.pop("_constant")
        row.update(numeric)
        ref_counts = cur_counts = None
    else:
        ref_counts = r.value_counts()
        cur_counts = c.value_counts()
        ref_counts = ref_counts[ref_counts > 0]
        cur_counts = cur_counts[cur_counts > 0]
        n_values = len(ref_counts.index.union(cur_counts.index))
        constant_r, constant_c = len(ref_counts) == 1, len(cur_counts) == 1
        unseen = cur_counts.index.difference(ref_counts.index)
        if len(unseen):
            examples = ", ".join(map(repr, list(unseen[:5]))) + (", ..." if len(unseen) > 5 else "")
            notes.append(messages.DRIFT_UNSEEN_CATEGORIES.format(
                n=len(unseen), ies="y" if len(unseen) == 1 else "ies", examples=examples))
    for label, constant in (("reference", constant_r), ("current", constant_c)):
        if constant:
            notes.append(messages.DRIFT_CONSTANT.format(dataset=label))

    method = _default_method(kind, n_r, n_values)
    if method in (JENSEN_SHANNON, CHI_SQUARE, Z_TEST):
        if ref_counts is None:  # numeric with few distinct values: counted as categories
            ref_counts = pd.Series(r).value_counts()
            cur_counts = pd.Series(c).value_counts()
        row.update(_count_stats(ref_counts, cur_counts, n_r, n_c))
    statistic = {WASSERSTEIN: "wasserstein_norm", KS: "ks_pvalue", JENSEN_SHANNON: "jensenshannon",
                 CHI_SQUARE: "chi2_pvalue", Z_TEST: "z_pvalue"}[method]
    threshold = DEFAULT_THRESHOLDS[method]
    row.update(method=method, statistic=row[statistic], threshold=threshold,
               drifted=_is_drifted(method, row[statistic], threshold))
    row.pop("z_pvalue", None)
    return done("warning" if notes else "ok")


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class DriftResult:
    """Per-column drift verdicts and the dataset verdict.

    Attributes
    ----------
    table : DataFrame
        One row per column, columns :data:`TABLE_COLUMNS`: ``type`` (numeric/categorical/text),
        ``method`` and ``threshold`` (Evidently's default), ``statistic`` (the value compared to
        the threshold), ``drifted`` (``<NA>`` when not computed), ``status`` (``ok``, ``warning``:
        computed with a caveat in ``message``, ``skipped``, ``error``: not computed), counts of
        non-missing values and missing shares, and the other statistics of the column's type
        (normed Wasserstein, KS statistic and p-value for numeric; Jensen-Shannon, PSI and
        chi-square p-value for categorical).
    drift_share : float
        Share of drifted columns from which the dataset counts as drifted (Evidently: 0.5).
    n_columns : int
        Columns with a verdict (status ok or warning).
    n_drifted : int
        Columns that drifted.
    share_drifted : float
        ``n_drifted / n_columns`` (NaN when no column could be compared).
    dataset_drift : bool
        ``share_drifted >= drift_share``, Evidently's rule.
    n_reference, n_current : int
        Rows of each dataset.
    """

    table: pd.DataFrame
    drift_share: float
    n_columns: int
    n_drifted: int
    share_drifted: float
    dataset_drift: bool
    n_reference: int
    n_current: int

    def to_frame(self) -> pd.DataFrame:
        """The per-column table (a copy)."""
        return self.table.copy()

    def verdicts(self) -> dict[str, bool]:
        """``{column: drifted}`` for the columns with a verdict."""
        t = self.table[self.table["drifted"].notna()]
        return {c: bool(d) for c, d in zip(t["column"], t["drifted"])}

    def verdict(self) -> str:
        """The dataset verdict in words: ``Dataset drift: no (3 of 12 columns drifted, share
        0.25 < 0.5)``."""
        if self.n_columns == 0:
            return "Dataset drift: not assessed (no column could be compared)"
        word = "columns" if self.n_columns != 1 else "column"
        sign = ">=" if self.dataset_drift else "<"
        return (f"Dataset drift: {'yes' if self.dataset_drift else 'no'} ({self.n_drifted} of "
                f"{self.n_columns} {word} drifted, share {fmt.number(self.share_drifted, 2)} "
                f"{sign} {fmt.number(self.drift_share, 2)})")

    def headline(self) -> str:
        """:meth:`verdict` and the rows compared."""
        if self.n_columns == 0:
            return self.verdict()
        return (f"{self.verdict()} on {fmt.count(self.n_reference)} reference and "
                f"{fmt.count(self.n_current)} current rows")

    def _display_frame(self) -> pd.DataFrame:
        """The per-column table as people read it: p-values by ``fmt.p_value``, distances by
        ``fmt.number``, verdicts in words."""
        t = self.table
        statistic = [fmt.p_value(v) if m in P_VALUE_METHODS else fmt.number(v)
                     for v, m in zip(t["statistic"], t["method"])]
        drifted = ["not computed" if pd.isna(d) else "yes" if d else "no" for d in t["drifted"]]
        return pd.DataFrame({
            "column": t["column"].to_numpy(), "type": t["type"].fillna("").to_numpy(),
            "method": t["method"].fillna("").to_numpy(), "statistic": statistic,
            "threshold": [fmt.number(v) for v in t["threshold"]], "drifted": drifted,
            "status": t["status"].to_numpy(), "message": t["message"].fillna("").to_numpy()})

    def summary(self) -> Summary:
        """The dataset verdict and the per-column table, as text and HTML."""
        frame = self._display_frame()
        with pd.option_context("display.max_colwidth", 70, "display.width", 200):
            text = self.headline() + "\n" + frame.to_string(index=False)
        html_text = (f"<p><b>{html.escape(self.headline())}</b></p>"
                     f"<p>Drift per column (Evidently's default method and threshold):</p>"
                     + frame.to_html(index=False, border=0))
        return Summary(text, html_text)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return f"DriftResult({self.headline()})"

    def plot(self, ax=None):
        """Bar chart of each column's score relative to its threshold (>= 1 means drift)."""
        from workbench.plots.model import plot_drift

        return plot_drift(self, ax=ax)


def drift_table(reference: pd.DataFrame, current: pd.DataFrame,
                columns: Sequence[str] | None = None, *, drift_share: float = 0.5,
                n_jobs: int | None = None) -> DriftResult:
    """Drift verdict per column on the full data, with Evidently's DataDriftPreset defaults.

    Parameters
    ----------
    reference, current : DataFrame
        The two datasets; columns are matched by name.
    columns : sequence of str, optional
        Columns to compare (default: every column of either frame).
    drift_share : float
        The dataset drifts when at least this share of compared columns drifts (Evidently: 0.5).
    n_jobs : int, optional
        Threads over columns (numpy's sorts release the GIL); default ``min(4, cpu count)``.

    Returns
    -------
    DriftResult
        Bad columns (missing, empty, all-NaN, free text, unsupported type) get a status and a
        message instead of an exception; mixed types, unseen categories and constant columns are
        compared and flagged with status ``warning``.
    """
    for label, df in (("reference", reference), ("current", current)):
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"drift_table: {label} must be a pandas DataFrame, got {type(df).__name__}")
    if not 0 < drift_share <= 1:
        raise DataError(f"drift_table: drift_share must be in (0, 1], got {drift_share!r}")
    if columns is None:
        columns = list(dict.fromkeys([*reference.columns, *current.columns]))
    else:
        columns = list(columns)
        unknown = [c for c in columns if c not in reference.columns and c not in current.columns]
        if unknown:
            raise DataError(f"drift_table: columns {unknown} are in neither reference nor current")
    if not columns:
        raise DataError("drift_table: no columns to compare")

    def one(name):
        return _column_drift(name, reference[name] if name in reference.columns else None,
                             current[name] if name in current.columns else None)

    workers = n_jobs or min(4, os.cpu_count() or 1)
    if workers > 1 and len(columns) > 1:
        with ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(one, columns))
    else:
        rows = [one(c) for c in columns]
    table = pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)
    table["drifted"] = table["drifted"].astype("boolean")
    for col in ("n_reference", "n_current"):
        table[col] = table[col].fillna(0).astype(int)
    judged = table["drifted"].notna()
    n_columns = int(judged.sum())
    n_drifted = int(table.loc[judged, "drifted"].sum())
    share = n_drifted / n_columns if n_columns else math.nan
    return DriftResult(table=table, drift_share=drift_share, n_columns=n_columns,
                       n_drifted=n_drifted, share_drifted=share,
                       dataset_drift=bool(n_columns and share >= drift_share),
                       n_reference=len(reference), n_current=len(current))


# --------------------------------------------------------------------------------------------
# Evidently's own report


@dataclass(frozen=True, eq=False)
class EvidentlyReport:
    """Evidently's DataDriftPreset snapshot and where it was saved.

    Attributes
    ----------
    snapshot : evidently.core.report.Snapshot
        Display it in a notebook, or ``snapshot.dict()`` for its JSON.
    html_path, json_path : Path or None
        Saved files (None when no ``path`` was given).
    sampled : bool
        Whether the report was computed on a sample.
    n_reference, n_current : int
        Rows used by the report.
    note : str
        What was sampled; say it next to the report.
    columns : list of str
        Columns passed to Evidently (those :func:`drift_table` can compare).
    """

    snapshot: Any
    html_path: Path | None
    json_path: Path | None
    sampled: bool
    n_reference: int
    n_current: int
    note: str
    columns: list

    def verdicts(self) -> pd.DataFrame:
        """Per-column ``column, method, statistic, threshold, drifted`` read from the snapshot."""
        return snapshot_verdicts(self.snapshot)

    def _repr_html_(self) -> str:
        return (f"<p>{html.escape(self.note)}</p>"
                + embed_html(self.snapshot.get_html_str(as_iframe=False),
                             title="Evidently data drift report",
                             height=_report_height(len(self.columns))))


# ----------------------------------------------------------------------------- embedding
# Runs inside the embedded document (a srcdoc iframe has its parent's origin): the frame
# follows the height of its content as Evidently's React app draws it and as rows expand.
# Evidently's own iframe HTML looks for its iframe before the browser has parsed it (a static
# page such as report.html), so the frame keeps the browser's default 150 px.
_FIT_SCRIPT = """<script>
(function () {
  var frame = window.frameElement;
  if (!frame) { return; }
  function fit() {
    var body = document.body, root = document.documentElement;
    var height = Math.max(body ? body.scrollHeight : 0, body ? body.offsetHeight : 0,
                          root.offsetHeight);
    if (height > 0) { frame.style.height = (height + 16) + "px"; }
  }
  if (window.ResizeObserver) {
    var observer = new ResizeObserver(fit);
    observer.observe(document.documentElement);
    if (document.body) { observer.observe(document.body); }
  }
  if (window.MutationObserver) {
    new MutationObserver(fit).observe(document.documentElement,
                                      {childList: true, subtree: true, attributes: true});
  }
  window.addEventListener("load", fit);
  document.addEventListener("click", function () { setTimeout(fit, 100); });
  fit();
})();
</script>"""
EMBED_CLASS = "workbench-embed"  # what a report test looks for


def _report_height(n_columns: int) -> int:
    """Initial height (px) of an embedded drift report before its script sizes it: the
    summary plus one row per column, so that even without scripts little is clipped."""
    return int(max(600, 320 + 56 * n_columns))


def embed_html(document: str, title: str = "", height: int = 800) -> str:
    """A complete HTML document (an Evidently report) embedded at the height of its content.

    The document goes in an iframe's ``srcdoc`` (its styles and scripts stay apart from the
    page's) with a script that sizes the frame to the content and follows it.

    Parameters
    ----------
    document : str
        The HTML page.
    title : str
        The frame's accessible title.
    height : int
        Initial height in px (before the script runs; all of it where scripts do not run).
    """
    marker = document.lower().rfind("</body>")
    page = (document[:marker] + _FIT_SCRIPT + document[marker:] if marker >= 0
            else document + _FIT_SCRIPT)
    return (f'<iframe class="{EMBED_CLASS}" title="{html.escape(title)}" '
            f'style="width: 100%; height: {int(height)}px; border: 0;" '
            f'srcdoc="{html.escape(page, quote=True)}"></iframe>')


def snapshot_verdicts(snapshot) -> pd.DataFrame:
    """Per-column verdicts from an Evidently 0.7 DataDriftPreset snapshot (its JSON dict)."""
    rows = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, value = config["method"], float(config["threshold"]), metric["value"]
        value = float(value) if value is not None else math.nan
        rows.append({"column": config["column"], "method": method, "statistic": value,
                     "threshold": threshold, "drifted": _is_drifted(method, value, threshold)})
    return pd.DataFrame(rows, columns=["column", "method", "statistic", "threshold", "drifted"])


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, *, max_rows: int = 50_000,
                     seed: int = 0, path: str | Path | None = None,
                     columns: Sequence[str] | None = None) -> EvidentlyReport:
    """Evidently's ``Report([DataDriftPreset()])`` on (a sample of) the data.

    Columns are typed as :func:`drift_table` types them (explicit ``DataDefinition``); columns it
    cannot compare (missing, empty, all-NaN, free text, unsupported) are left out, and object
    columns of mixed types are passed as strings, since such columns crash Evidently.

    Parameters
    ----------
    reference, current : DataFrame
    max_rows : int
        Each dataset larger than this is sampled down to it (without replacement, ``seed``):
        the report's HTML embeds the data and Evidently is slow on millions of rows. The full-data
        verdicts come from :func:`drift_table`.
    seed : int
        Sampling seed.
    path : str or Path, optional
        Directory where ``evidently_drift.html`` and ``evidently_drift.json`` are written.
    columns : sequence of str, optional
        Columns to include (default: all).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if max_rows < 1:
        raise DataError(f"evidently_report: max_rows must be positive, got {max_rows!r}")
    ref = reference if len(reference) <= max_rows else reference.sample(max_rows, random_state=seed)
    cur = current if len(current) <= max_rows else current.sample(max_rows, random_state=seed)
    sampled = len(ref) < len(reference) or len(cur) < len(current)
    # Type the columns on the data Evidently sees, so both tools judge the same thing.
    typed = drift_table(ref, cur, columns, n_jobs=1).table
    usable = typed[typed["drifted"].notna()]
    numerical = usable.loc[usable["type"] == "numeric", "column"].tolist()
    categorical = usable.loc[usable["type"] == "categorical", "column"].tolist()
    if not numerical and not categorical:
        raise DataError("evidently_report: no column can be compared (see drift_table statuses)")
    keep = numerical + categorical
    ref, cur = ref[keep].copy(), cur[keep].copy()
    for name in usable.loc[usable["message"].str.contains("text categories"), "column"]:
        ref[name] = ref[name].where(ref[name].isna(), ref[name].astype(str))
        cur[name] = cur[name].where(cur[name].isna(), cur[name].astype(str))
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    if sampled:
        note = (f"Evidently report on a random sample (seed {seed}) of {len(ref):,} of "
                f"{len(reference):,} reference rows and {len(cur):,} of {len(current):,} current "
                "rows; the verdict table (drift_table) uses the full data.")
    else:
        note = (f"Evidently report on all {len(ref):,} reference and {len(cur):,} current rows.")
    html_path = json_path = None
    if path is not None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        html_path, json_path = folder / "evidently_drift.html", folder / "evidently_drift.json"
        snapshot.save_html(str(html_path))
        snapshot.save_json(str(json_path))
    return EvidentlyReport(snapshot=snapshot, html_path=html_path, json_path=json_path,
                           sampled=sampled, n_reference=len(ref), n_current=len(cur), note=note,
                           columns=keep)
