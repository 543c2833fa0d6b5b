"""Multiple-testing corrections, vectorised over many families at once.

- ``bonferroni``: ``p_adj = min(1, m p)``.
- ``holm`` (step-down): sorted ``p_(1) <= ... <= p_(m)``,
  ``p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
- ``bh`` (Benjamini-Hochberg, false discovery rate):
  ``p_adj_(i) = min_{j >= i} min(1, m p_(j) / j)``.

These equal ``statsmodels.stats.multitest.multipletests`` (methods ``bonferroni``, ``holm``,
``fdr_bh``). Adjusted intervals use, per row, the level implied by the method: ``alpha / m``
(Bonferroni), ``alpha / (m - rank + 1)`` (Holm), ``alpha * rank / m`` (BH), with ``rank`` the
row's position among the sorted p-values of its family. Where the monotonicity step of Holm/BH
makes that level disagree with the adjusted p-value, the level ``alpha * p / p_adj`` is used
instead, so an adjusted interval excludes 0 exactly when ``p_adj < alpha``.
"""
from __future__ import annotations

import numpy as np

METHODS = ("bonferroni", "holm", "bh")
_ALIASES = {"fdr_bh": "bh", "benjamini-hochberg": "bh", "bonf": "bonferroni"}


def normalise(method):
    """Canonical name of a correction (``None`` stays ``None``)."""
    if method is None:
        return None
    name = _ALIASES.get(str(method).lower(), str(method).lower())
    if name in ("none", ""):
        return None
    if name not in METHODS:
        raise ValueError(f"unknown correction {method!r}; expected one of {list(METHODS)} or None")
    return name


def adjust(p: np.ndarray, family: np.ndarray | None = None, method: str = "holm",
           return_levels: bool = False):
    """Adjusted p-values; rows with NaN p are left out of their family and stay NaN.

    Parameters
    ----------
    p : array
        Raw p-values.
    family : int array, optional
        Family id per row (each family corrected on its own); default one family.
    method : {"bonferroni", "holm", "bh"}
    return_levels : bool
        Also return the per-row multiplier of alpha implied by the method and rank
        (``1/m``, ``1/(m - rank + 1)``, ``rank/m``).
    """
    method = normalise(method)
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    levels = np.full(p.shape, np.nan)
    if method is None:
        return (p.copy(), np.ones(p.shape)) if return_levels else p.copy()
    fam = np.zeros(p.shape, int) if family is None else np.asarray(family)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return (out, levels) if return_levels else out
    _, famc = np.unique(fam[ok], return_inverse=True)
    pv = p[ok]
    order = np.lexsort((pv, famc))
    ps, fs = pv[order], famc[order]
    m = np.bincount(fs)[fs].astype(float)
    start = np.r_[0, np.flatnonzero(np.diff(fs)) + 1]
    rank = np.arange(ps.size) - np.repeat(start, np.diff(np.r_[start, ps.size])) + 1.0
    if method == "bonferroni":
        adj = np.minimum(1.0, m * ps)
        lev = 1.0 / m
    elif method == "holm":
        raw = np.minimum(1.0, (m - rank + 1.0) * ps)
        # running maximum within each family: offsets keep families apart (values in [0, 1])
        adj = np.maximum.accumulate(raw + 2.0 * fs) - 2.0 * fs
        lev = 1.0 / (m - rank + 1.0)
    else:
        raw = np.minimum(1.0, m * ps / rank)
        rev = raw[::-1] + 2.0 * fs[::-1]
        adj = (np.minimum.accumulate(rev) - 2.0 * fs[::-1])[::-1]
        lev = rank / m
    res = np.empty_like(adj)
    res[order] = adj
    out[ok] = res
    if not return_levels:
        return out
    res_l = np.empty_like(adj)
    res_l[order] = lev
    levels[ok] = res_l
    return out, levels


def adjusted_alpha(p, p_adj, alpha, levels):
    """Per-row interval level whose interval excludes 0 exactly when ``p_adj < alpha``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        a = alpha * levels
        consistent = (p < a) == (p_adj < alpha)
        fallback = np.where(p_adj > 0, alpha * p / p_adj, a)
    return np.where(consistent, a, np.minimum(fallback, alpha))
