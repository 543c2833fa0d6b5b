"""Regression adjustment with several covariates (CUPED++ / CURE), on sufficient statistics.

For a metric with covariates ``x_1 .. x_k`` (pre-period values of metrics, one-hot unit
attributes) each input row (one arm) carries ``n``, the sums ``s_j = sum x_j``, the cross products
``P_jl = sum x_j x_l``, ``c_j = sum y x_j`` and, for ratio metrics, ``e_j = sum d x_j`` (columns
:func:`columns`; the covariate names in ``covariates``). Within arm ``v``::

    Sxx_v = P - s s'/n            Sxy_v = c - s Y/n             (centred cross products)
    ratio: Sxy_v = (c - s Y/n - R (e - s D/n)) / dbar           (linearised z = (y - R d)/dbar)

    beta  = (sum_v Sxx_v)^-1 sum_v Sxy_v                        (pooled within-arm slopes)
    adj_v = ybar_v - beta'(xbar_v - mu)                         mu = pooled mean of x
    var_v = s_yy - 2 beta's_xy + beta' S_xx beta                (n-1 moments of the arm)

so ``adj_t - adj_c = (ybar_t - ybar_c) - beta'(xbar_t - xbar_c)``, the treatment coefficient of the
OLS ``y ~ C(variant) + x_1 + ... + x_k`` (Frisch-Waugh: the arm dummies centre y and x within
arms). The standard error is ``sqrt(var_t/n_t + var_c/n_c)``: the residual variance is taken per
arm (as :mod:`workbench.stats.cuped` does), which is robust to unequal variances between arms and
treats ``beta`` as known (its estimation error is O(1/N) of the variance). Ratio metrics: ``beta``
is the slope of the OLS of the linearised ``z`` on the covariates, and ``R_t - R_c`` is adjusted.

Guards: a covariate whose within-arm variance is zero, or which the earlier covariates of the
list explain to within ``COLLINEAR_TOL`` (pivoted Cholesky of the pooled within-arm correlation
matrix, in declared order), is dropped with a note; an arm with ``n <= k + 1`` is left unadjusted
(its comparison too), with a note.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import messages
from workbench.stats.moments import _col

COLLINEAR_TOL = 1e-9  # 1 - R^2 of a covariate on the previous ones below which it is dropped
COVARIATES = "covariates"  # input column: the covariate names, comma-separated


def columns(k: int, ratio: bool = False) -> list[str]:
    """Input columns of ``k`` covariates: ``cov_sum__j``, ``cov_prod__j__l`` (j <= l),
    ``cov_y__j`` and (ratio metrics) ``cov_d__j``."""
    out = [f"cov_sum__{j}" for j in range(k)]
    out += [f"cov_prod__{j}__{m}" for j in range(k) for m in range(j, k)]
    out += [f"cov_y__{j}" for j in range(k)]
    if ratio:
        out += [f"cov_d__{j}" for j in range(k)]
    return out


def n_covariates(frame) -> int:
    """The largest number of covariates the columns of ``frame`` hold."""
    k = 0
    while f"cov_sum__{k}" in frame.columns:
        k += 1
    return k


def names(frame) -> list[list[str]]:
    """The covariate names of every row (``covariates`` column; ``x0, x1, ...`` if absent)."""
    k = n_covariates(frame)
    if COVARIATES not in frame.columns:
        return [[f"x{j}" for j in range(k)]] * len(frame)
    return [[s.strip() for s in str(v).split(",")] if isinstance(v, str) and v else []
            for v in frame[COVARIATES]]


def available(frame) -> np.ndarray:
    """Per row: True when it has finite statistics for at least one covariate."""
    k = n_covariates(frame)
    if k == 0:
        return np.zeros(len(frame), bool)
    return np.isfinite(_col(frame, "cov_sum__0")) & np.isfinite(_col(frame, "cov_y__0"))


def _arrays(frame, k):
    rows = len(frame)
    s = np.stack([_col(frame, f"cov_sum__{j}") for j in range(k)], axis=1)
    c = np.stack([_col(frame, f"cov_y__{j}") for j in range(k)], axis=1)
    e = np.stack([_col(frame, f"cov_d__{j}") for j in range(k)], axis=1)
    p = np.full((rows, k, k), np.nan)
    for j in range(k):
        for m in range(j, k):
            p[:, j, m] = p[:, m, j] = _col(frame, f"cov_prod__{j}__{m}")
    return s, p, c, e


def _select(sxx: np.ndarray, present: np.ndarray, tol: float) -> np.ndarray:
    """Covariates kept per block: in declared order, those with positive variance whose
    residual variance given the kept earlier ones is above ``tol`` (correlation scale)."""
    nb, k, _ = sxx.shape
    diag = np.einsum("bjj->bj", sxx)
    scale = np.max(np.where(present, np.abs(diag), 0.0), axis=1, keepdims=True)
    keep = np.zeros((nb, k), bool)
    ok = present & np.isfinite(diag) & (diag > 1e-14 * np.where(scale > 0, scale, 1.0))
    sd = np.sqrt(np.where(ok, diag, 1.0))
    corr = sxx / (sd[:, :, None] * sd[:, None, :])
    eye = np.eye(k)
    for j in range(k):
        both = keep[:, :, None] & keep[:, None, :]
        m = np.where(both, np.nan_to_num(corr), eye)
        v = np.where(keep, np.nan_to_num(corr[:, :, j]), 0.0)
        explained = np.einsum("bi,bi->b", v, np.linalg.solve(m, v[:, :, None])[:, :, 0])
        keep[:, j] = ok[:, j] & (1.0 - explained > tol)
    return keep


def adjust(frame, base: dict, block: np.ndarray, n_blocks: int, use: np.ndarray,
           tol: float = COLLINEAR_TOL) -> dict:
    """Regression-adjusted means and unit variances for rows with ``use`` True.

    Parameters
    ----------
    frame : DataFrame
        Validated stats input with the columns of :func:`columns`.
    base : dict
        :func:`workbench.stats.moments.basic_moments` of ``frame``.
    block, n_blocks : array of int, int
        Block (metric x grouping) of every row; slopes are pooled within a block.
    use : array of bool
        Rows to adjust (those with covariate statistics).

    Returns
    -------
    dict
        ``mean``, ``var_unit`` (the base values where not adjusted), ``used`` (bool), ``beta``
        (rows x k, NaN where dropped or not adjusted), ``note`` (text per row: dropped
        covariates, tiny arm) and ``covariates`` (the covariates used, comma-separated).
    """
    rows = len(frame)
    k = n_covariates(frame)
    note = np.full(rows, "", dtype=object)
    used_names = np.full(rows, "", dtype=object)
    if k == 0 or not use.any():
        return {"mean": base["mean"], "var_unit": base["var_unit"], "used": np.zeros(rows, bool),
                "beta": np.full((rows, k), np.nan), "note": note, "covariates": used_names}
    kind = frame["kind"].to_numpy()
    is_ratio = kind == "ratio"
    n = base["n"]
    y = frame["sum"].to_numpy(dtype=float)
    yy = _col(frame, "sum_squares")
    yy = np.where((kind == "proportion") & ~np.isfinite(yy), y, yy)
    s, p, c, e = _arrays(frame, k)
    present_row = np.isfinite(s) & np.isfinite(c)
    # a metric with fewer covariates than the table's widest has NaN beyond its own
    present_row &= np.all(np.isfinite(p) | ~present_row[:, None, :], axis=2)
    present_row &= np.where(is_ratio[:, None], np.isfinite(e), True)
    nk = present_row.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        xbar = s / n[:, None]
        sxx = p - s[:, :, None] * xbar[:, None, :]
        sxy = c - s * (y / n)[:, None]
        syy = yy - y * y / n
        if is_ratio.any():
            d = _col(frame, "den_sum")
            dd = _col(frame, "den_sum_squares")
            yd = _col(frame, "sum_product")
            r = y / d
            dbar = d / n
            sdx = e - s * dbar[:, None]
            szx = (sxy - r[:, None] * sdx) / dbar[:, None]
            szz = (syy - 2 * r * (yd - y * d / n) + r**2 * (dd - d * d / n)) / dbar**2
            sxy = np.where(is_ratio[:, None], szx, sxy)
            syy = np.where(is_ratio, szz, syy)
        tiny = use & (n <= nk + 1)
        finite = np.isfinite(syy) & np.all(np.isfinite(np.where(present_row, sxy, 0.0)), axis=1) \
            & np.all(np.isfinite(np.where(present_row[:, :, None] & present_row[:, None, :],
                                          sxx, 0.0)), axis=(1, 2))
        pool = use & ~tiny & finite
        w = pool[:, None, None]
        sxx_b = np.zeros((n_blocks, k, k))
        sxy_b = np.zeros((n_blocks, k))
        np.add.at(sxx_b, block, np.where(w, np.nan_to_num(sxx), 0.0))
        np.add.at(sxy_b, block, np.where(pool[:, None], np.nan_to_num(sxy), 0.0))
        n_b = np.bincount(block, weights=np.where(pool, n, 0.0), minlength=n_blocks)
        arms_b = np.bincount(block, weights=pool, minlength=n_blocks)
        s_b = np.zeros((n_blocks, k))
        np.add.at(s_b, block, np.where(pool[:, None], np.nan_to_num(s), 0.0))
        # a covariate counts in a block when every pooled row of the block has it
        missing_b = np.zeros((n_blocks, k))
        np.add.at(missing_b, block, (pool[:, None] & ~present_row).astype(float))
        present_b = (missing_b == 0) & (arms_b[:, None] > 0)
        keep = _select(sxx_b, present_b, tol)
        kk = keep.sum(axis=1)
        # the pooled regression needs residual degrees of freedom: N - arms - k > 0
        keep &= (n_b - arms_b - kk > 0)[:, None]
        both = keep[:, :, None] & keep[:, None, :]
        m = np.where(both, sxx_b, np.eye(k))
        beta_b = np.linalg.solve(m, np.where(keep, sxy_b, 0.0)[:, :, None])[:, :, 0]
        beta_b = np.where(keep, beta_b, 0.0)
        mu_b = s_b / n_b[:, None]
        beta = beta_b[block]
        cen = np.where(keep[block], xbar - mu_b[block], 0.0)
        adj_mean = base["mean"] - np.einsum("rj,rj->r", beta, cen)
        sxx0 = np.where(keep[block][:, :, None] & keep[block][:, None, :], sxx, 0.0)
        sxy0 = np.where(keep[block], sxy, 0.0)
        resid = syy - 2 * np.einsum("rj,rj->r", beta, sxy0) \
            + np.einsum("rj,rjl,rl->r", beta, sxx0, beta)
        adj_var = resid / (n - 1)
        used = pool & (kk[block] > 0) & keep[block].any(axis=1) \
            & np.isfinite(adj_mean) & np.isfinite(adj_var)
    adj_var = np.where((adj_var < 0) & np.isfinite(adj_var), 0.0, adj_var)
    # texts once per distinct (names, kept, dropped) pattern, not once per block
    dropped_b = present_b & ~keep
    first = np.full(n_blocks, -1)
    first[block[use][::-1]] = np.flatnonzero(use)[::-1]
    label = frame[COVARIATES].to_numpy() if COVARIATES in frame.columns \
        else np.full(rows, "", dtype=object)
    bits = 2 ** np.arange(k)
    key = pd.DataFrame({"names": label[np.maximum(first, 0)], "keep": keep @ bits,
                        "drop": dropped_b @ bits})
    texts = {}
    for tup in key.drop_duplicates().itertuples(index=False):
        nm = [x.strip() for x in str(tup.names).split(",")] if isinstance(tup.names, str) \
            and tup.names else []
        nm = nm + [f"x{j}" for j in range(len(nm), k)]
        kept = ", ".join(nm[j] for j in range(k) if tup.keep >> j & 1)
        dropped = ", ".join(nm[j] for j in range(k) if tup.drop >> j & 1)
        texts[tuple(tup)] = (kept, messages.ADJUST_COLLINEAR.format(names=dropped)
                             if dropped else "")
    per_block = [texts[tuple(r)] for r in key.itertuples(index=False)]
    kept_b = np.array([t[0] for t in per_block], dtype=object)
    drop_note_b = np.array([t[1] for t in per_block], dtype=object)
    used_names = np.where(used, kept_b[block], "")
    note = np.where(used, drop_note_b[block], "")
    note = np.where(pool & ~used & ~keep.any(axis=1)[block], messages.ADJUST_NO_COVARIATE, note)
    for i in np.flatnonzero(tiny):
        note[i] = messages.ADJUST_TINY_ARM.format(n=int(n[i]), k=int(nk[i]))
    return {"mean": np.where(used, adj_mean, base["mean"]),
            "var_unit": np.where(used, adj_var, base["var_unit"]),
            "used": used, "beta": np.where(used[:, None] & keep[block], beta, np.nan),
            "note": note, "covariates": used_names}


def variance_reduction(se_adjusted, se_unadjusted) -> np.ndarray:
    """``1 - Var(adjusted effect) / Var(unadjusted effect)`` (NaN where either is missing)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.asarray(se_adjusted, float) ** 2 / np.asarray(se_unadjusted, float) ** 2


__all__ = ["COLLINEAR_TOL", "COVARIATES", "adjust", "available", "columns", "n_covariates",
           "names", "variance_reduction"]
