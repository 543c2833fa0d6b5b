"""Non-inferiority and superiority margins: one-sided tests of a shifted null.

A metric may carry a margin ``m >= 0`` (input columns ``margin``, ``margin_scale``,
``margin_kind``, ``higher_is_better``; see :data:`workbench.stats.schema.INPUT_COLUMNS`). With
``s = +1`` when higher is better and ``-1`` otherwise, the effect in the good direction is
``g = s * effect`` and the null hypothesis is::

    non-inferiority:  H0: g <= -m   (the variant is worse than the tolerated harm)
    superiority:      H0: g <= +m   (the variant is not better by the minimum worthwhile effect)

Write ``b = -m`` or ``+m`` for the boundary. ``margin_p_value`` tests H0 one-sided and
``margin_chance`` is the posterior probability of its complement ``P(g > b)``:

- frequentist: ``p = sf((s e - b) / se)`` under the row's own test (Welch t with its dof, or z);
  exact-test proportion rows invert their interval instead (:mod:`workbench.stats.exact`);
- sequential: the mixture-SPRT p-value of :mod:`workbench.stats.sequential` applied to the
  shifted estimate ``s e - b`` (1 when ``s e <= b``), so ``margin_p_value < alpha`` exactly when
  the level-``alpha`` confidence sequence of the engine lies entirely above ``b`` in the good
  direction: always valid, and conservative like the engine's one-sided tests;
- Bayesian, Gaussian rows: ``Phi((s mu - b) / sd)`` from the engine's posterior ``N(mu, sd^2)``;
  Beta-posterior proportion rows: ``P(s (p_t - p_c) > b)`` or ``P(s (p_t / p_c - 1) > b)`` by
  Gauss-Legendre quadrature (:data:`~workbench.stats.bayesian.NODES` nodes) over the sharper
  of the two Beta posteriors, the other in closed form (regularised incomplete beta).

The margin is expressed in the units of ``difference``: a relative margin with
``difference="absolute"`` becomes ``m * |control mean|``; an absolute margin with
``difference="relative"`` becomes ``m / |control mean|`` (the control mean of the comparison,
CUPED-adjusted when CUPED is used, taken as known: a plug-in conversion). Margin p-values are
not corrected for multiplicity: a decision that needs *every* guardrail to hold is an
intersection-union test, which needs no correction.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from workbench.errors import StatsInputError
from workbench.stats import bayesian, frequentist, sequential

KINDS = ("non-inferiority", "superiority")
SCALES = ("relative", "absolute")
COLUMNS = ("margin", "margin_scale", "margin_kind", "higher_is_better")


def _where(frame: pd.DataFrame, pos: int) -> str:
    return (f"row {frame.index[pos]!r} (metric={frame['metric'].iat[pos]!r}, "
            f"variant={frame['variant'].iat[pos]!r})")


def _text(frame, col, allowed, default, t, c, has_c):
    """A text column per comparison: the treatment row's value, else its control's, else the
    default; values outside ``allowed`` raise naming the row."""
    if col not in frame.columns:
        return np.full(t.size, default, dtype=object)
    raw = frame[col].to_numpy(dtype=object)
    missing = pd.isna(raw) | (pd.Series(raw).astype(str).str.strip() == "").to_numpy()
    norm = np.where(missing, None, pd.Series(raw).astype(str).str.strip().str.lower().to_numpy())
    bad = np.flatnonzero(~missing & ~np.isin(norm.astype(str), allowed))
    if bad.size:
        raise StatsInputError(f"{_where(frame, bad[0])}: column {col!r} must be one of "
                              f"{list(allowed)}, got {raw[bad[0]]!r}")
    own = norm[t]
    ctrl = np.where(has_c, norm[np.where(has_c, c, 0)], None)
    out = np.where(pd.isna(own), ctrl, own)
    return np.where(pd.isna(out), default, out).astype(object)


def _number(frame, col, t, c, has_c):
    try:
        raw = pd.to_numeric(frame[col], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (ValueError, TypeError):
        raise StatsInputError(f"column {col!r} of the statistics table must be numeric "
                              f"(or true/false)") from None
    own = raw[t]
    ctrl = np.where(has_c, raw[np.where(has_c, c, 0)], np.nan)
    return np.where(np.isnan(own), ctrl, own), raw


def inputs(frame: pd.DataFrame, t: np.ndarray, c: np.ndarray, has_c: np.ndarray,
           difference: str) -> dict:
    """Margin, its scale and kind, and the good direction of every comparison.

    Each value is the treatment row's, else its control row's. Defaults: no margin,
    ``margin_scale`` = ``difference``, ``margin_kind`` = "non-inferiority",
    ``higher_is_better`` = True.

    Raises
    ------
    StatsInputError
        A negative or infinite margin, an unknown scale or kind, naming the row.
    """
    margin = np.full(t.size, np.nan)
    if "margin" in frame.columns:
        margin, raw = _number(frame, "margin", t, c, has_c)
        bad = np.flatnonzero(~np.isnan(raw) & ~(np.isfinite(raw) & (raw >= 0)))
        if bad.size:
            raise StatsInputError(f"{_where(frame, bad[0])}: column 'margin' must be a finite "
                                  f"number >= 0 (or empty), got {raw[bad[0]]!r}")
    sign = np.ones(t.size)
    if "higher_is_better" in frame.columns:
        col = frame["higher_is_better"]
        if col.dtype == object:  # "true"/"false" text, e.g. from a CSV with empty cells
            col = col.map(lambda v: {"true": 1.0, "false": 0.0}.get(str(v).strip().lower(), v)
                          if isinstance(v, str) else v)
        hib, raw = _number(pd.DataFrame({"higher_is_better": col, "metric": frame["metric"],
                                         "variant": frame["variant"]}, index=frame.index),
                           "higher_is_better", t, c, has_c)
        bad = np.flatnonzero(~np.isnan(raw) & ~np.isin(raw, (0.0, 1.0)))
        if bad.size:
            raise StatsInputError(f"{_where(frame, bad[0])}: column 'higher_is_better' must be "
                                  f"true or false, got {frame['higher_is_better'].iat[bad[0]]!r}")
        sign = np.where(hib == 0.0, -1.0, 1.0)
    return {"margin": margin,
            "scale": _text(frame, "margin_scale", SCALES, difference, t, c, has_c),
            "kind": _text(frame, "margin_kind", KINDS, KINDS[0], t, c, has_c),
            "sign": sign}


def convert(margin, scale, difference: str, control_mean):
    """The margin in the units of ``difference`` (relative <-> absolute with ``|control mean|``)."""
    margin = np.asarray(margin, float)
    base = np.abs(np.asarray(control_mean, float))
    with np.errstate(invalid="ignore", divide="ignore"):
        if difference == "absolute":
            return np.where(scale == "relative", margin * base, margin)
        return np.where(scale == "absolute", margin / base, margin)


def boundary(margin, kind):
    """``b``: ``-margin`` (non-inferiority) or ``+margin`` (superiority)."""
    return np.where(kind == "superiority", 1.0, -1.0) * np.asarray(margin, float)


def frequentist_p(effect, se, dof, sign, b):
    """One-sided p-value of ``H0: sign * effect <= b`` (t with ``dof``, normal where inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.minimum(frequentist.sf((sign * effect - b) / se, dof), 1.0)


def sequential_p(effect, se, n_total, sign, b, alpha, tuning):
    """Always-valid one-sided p-value of ``H0: sign * effect <= b`` (the mixture SPRT of the
    shifted estimate, ``rho`` tuned at ``alpha`` as the engine's confidence sequence)."""
    shifted = sign * effect - b
    p = sequential.p_value(shifted, se, n_total, sequential.rho_squared(alpha, tuning))
    return np.where(shifted > 0, p, 1.0)


def gaussian_chance(mu, sd, sign, b):
    """``P(sign * effect > b)`` under the posterior ``N(mu, sd^2)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return special.ndtr((sign * mu - b) / sd)


def beta_chance(a_t, b_t, a_c, b_c, relative: bool, sign, b):
    """``P(sign * effect > b)`` for independent Beta posteriors of the two proportions.

    The event is ``p_t > A p_c + B`` (``sign = +1``) or ``p_t < A p_c + B`` (``sign = -1``) with
    ``A = 1, B = sign b`` (absolute) or ``A = 1 + sign b, B = 0`` (relative); it is integrated
    over the sharper posterior with the other arm's CDF in closed form.
    """
    a_t, b_t, a_c, b_c, sign, b = np.broadcast_arrays(
        *(np.asarray(v, float) for v in (a_t, b_t, a_c, b_c, sign, b)))
    A = np.where(relative, 1.0 + sign * b, 1.0)
    B = np.where(relative, 0.0, sign * b)
    above = np.full(a_t.shape, np.nan)  # P(p_t > A p_c + B)
    var_t = a_t * b_t / ((a_t + b_t) ** 2 * (a_t + b_t + 1))
    var_c = a_c * b_c / ((a_c + b_c) ** 2 * (a_c + b_c + 1))
    over_t = (var_t <= var_c) & (A > 0)
    for over, idx in ((True, np.flatnonzero(over_t)), (False, np.flatnonzero(~over_t))):
        if idx.size == 0:
            continue
        AA, BB = A[idx, None], B[idx, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            if over:  # P(p_c < (y - B) / A), y ~ p_t
                y, w = bayesian._grid(a_t[idx], b_t[idx])
                inner = special.betainc(a_c[idx, None], b_c[idx, None],
                                        np.clip((y - BB) / AA, 0.0, 1.0))
            else:     # P(p_t > A x + B), x ~ p_c
                x, w = bayesian._grid(a_c[idx], b_c[idx])
                inner = special.betaincc(a_t[idx, None], b_t[idx, None],
                                         np.clip(AA * x + BB, 0.0, 1.0))
        above[idx] = (w * inner).sum(axis=1)
    above = np.clip(above, 0.0, 1.0)
    return np.where(sign > 0, above, 1.0 - above)


def compute(frame, t, c, has_c, ok, *, method, difference, effect, se, dof, control_mean,
            n_total, alpha, tuning, post_mean, post_sd, beta_rows, beta_prior,
            exact_rows=None, exact_margin_p=None) -> dict:
    """The output columns ``margin, margin_kind, margin_p_value, margin_chance`` of the
    comparisons ``t`` (treatment rows) against ``c`` (their control rows).

    ``effect, se, dof`` are the frequentist/sequential estimate; ``post_mean, post_sd`` the
    Gaussian posterior (Bayesian); ``beta_rows`` the comparisons with Beta posteriors.
    ``exact_margin_p(sign, b)``, when given, returns the margin p-values of ``exact_rows``.
    """
    spec = inputs(frame, t, c, has_c, difference)
    has_m = ~np.isnan(spec["margin"])
    m = np.where(has_m, convert(spec["margin"], spec["scale"], difference, control_mean), np.nan)
    b = boundary(m, spec["kind"])
    sign = spec["sign"]
    live = ok & has_m & np.isfinite(m)
    p = np.full(t.size, np.nan)
    chance = np.full(t.size, np.nan)
    if live.any():
        if method == "frequentist":
            p = np.where(live, frequentist_p(effect, se, dof, sign, b), np.nan)
            if exact_rows is not None and exact_margin_p is not None:
                rows = exact_rows & live
                if rows.any():
                    p[rows] = exact_margin_p(sign, b)[rows]
        elif method == "sequential":
            p = np.where(live, sequential_p(effect, se, n_total, sign, b, alpha, tuning), np.nan)
        else:
            chance = np.where(live, gaussian_chance(post_mean, post_sd, sign, b), np.nan)
            rows = np.flatnonzero(live & beta_rows)
            if rows.size:
                s_all = frame["sum"].to_numpy(dtype=float)
                n_all = frame["n"].to_numpy(dtype=float)
                a_t, b_t = bayesian.beta_posterior(s_all[t[rows]], n_all[t[rows]], beta_prior)
                a_c, b_c = bayesian.beta_posterior(s_all[c[rows]], n_all[c[rows]], beta_prior)
                chance[rows] = beta_chance(a_t, b_t, a_c, b_c, difference == "relative",
                                           sign[rows], b[rows])
    kind = np.where(has_m, spec["kind"], None).astype(object)
    return {"margin": m, "margin_kind": kind, "margin_p_value": p, "margin_chance": chance}
