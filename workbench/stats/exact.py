"""Exact small-sample tests for two proportions, their intervals, and the ``test`` column.

With ``x_t`` successes out of ``n_t`` (variant) and ``x_c`` out of ``n_c`` (control) the table
given to scipy is ``[[x_t, x_c], [n_t - x_t, n_c - x_c]]`` (columns are the two samples, as
``scipy.stats.barnard_exact`` / ``boschloo_exact`` expect), and ``alternative="greater"`` means
the variant's proportion is higher. p-values are exactly those of

- ``scipy.stats.fisher_exact(table, alternative)`` (conditional; two-sided sums the tables no
  more likely than the observed one),
- ``scipy.stats.barnard_exact(table, alternative, pooled=True, n=32)`` (unconditional, Wald
  statistic with pooled variance, nuisance parameter maximised over 32 points),
- ``scipy.stats.boschloo_exact(table, alternative, n=32)`` (unconditional, Fisher's p-value as
  the statistic; uniformly more powerful than Fisher's test, still exact).

The ``statistic`` column holds scipy's statistic (odds ratio, Wald statistic, or Fisher
p-value). Intervals at level ``1 - alpha`` (one-sided alternatives give the one-sided bound):

- ``difference="absolute"``: Newcombe's hybrid score interval (Newcombe 1998, method 10), from
  the two Wilson intervals ``l_i, u_i``: ``[d - sqrt((p_t-l_t)^2 + (u_c-p_c)^2),
  d + sqrt((u_t-p_t)^2 + (p_c-l_c)^2)]``; equals statsmodels
  ``confint_proportions_2indep(method="newcomb")``.
- ``difference="relative"``: the score interval of the ratio ``p_t / p_c`` (Koopman 1984 with
  the Miettinen-Nurminen ``N/(N-1)`` variance factor), found by bisection on the score
  statistic with the constrained MLE in closed form, minus 1; equals statsmodels
  ``confint_proportions_2indep(compare="ratio", method="score")``.

Margin tests of exact rows (:mod:`workbench.stats.margin`) use the same intervals: relative,
the one-sided Miettinen-Nurminen score test of the ratio at ``1 + s b``; absolute, the inverted
Newcombe interval (the one-sided level at which its bound touches the margin).

``exact="auto"`` uses an exact test for a proportion comparison (not CUPED-adjusted, counts
integer) when any expected cell count of the pooled 2x2 table is below
:data:`AUTO_MIN_EXPECTED` (Cochran's rule) or an arm has fewer than :data:`AUTO_MIN_N` units
(where the Wald z-test's size exceeds alpha; see README): Boschloo's test while both arms have
at most :data:`AUTO_BOSCHLOO_MAX_N` units (its cost grows as ``n_t n_c``: ~6 ms at 50 per arm,
~50 ms at 100, ~260 ms at 200), else Fisher's (~0.5 ms at any size). The exact tests run only
for the selected rows, one scipy call each; the other rows stay vectorised.
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

from workbench.errors import ParameterError

TESTS = ("fisher", "barnard", "boschloo")
OPTIONS = (None, "auto") + TESTS
AUTO_MIN_EXPECTED = 5.0
AUTO_MIN_N = 30
AUTO_BOSCHLOO_MAX_N = 100
NUISANCE_POINTS = 32  # scipy's default n for barnard_exact / boschloo_exact
_BISECT = 80


def check(exact, method: str):
    """Validate the ``exact`` option of :func:`workbench.stats.analyze`."""
    if exact not in OPTIONS:
        raise ParameterError(f"analyze: parameter exact={exact!r} is invalid; expected one of "
                             f"{list(OPTIONS)}")
    if exact in TESTS and method != "frequentist":
        raise ParameterError(f"analyze: parameter exact={exact!r} needs method='frequentist' "
                             f"(exact tests are fixed-horizon), got method={method!r}")


def names(method: str, kind, ok, beta_rows=None) -> np.ndarray:
    """The ``test`` column of the vectorised paths: ``welch`` (means), ``z`` (proportions),
    ``delta`` (ratios, delta-method z), ``msprt`` (sequential), ``beta`` / ``normal``
    (Bayesian posterior model); empty where the row was not computed."""
    kind = np.asarray(kind)
    if method == "frequentist":
        out = np.where(kind == "mean", "welch", np.where(kind == "ratio", "delta", "z"))
    elif method == "sequential":
        out = np.full(kind.shape, "msprt")
    else:
        out = np.where(beta_rows if beta_rows is not None else False, "beta", "normal")
    return np.where(ok, out, "").astype(object)


def select(exact, ok, kind, cuped_used, x_t, n_t, x_c, n_c) -> np.ndarray:
    """The exact test of every comparison (``""`` where none applies)."""
    out = np.full(np.shape(ok), "", dtype=object)
    if exact is None:
        return out
    x_t, n_t, x_c, n_c = (np.asarray(v, float) for v in (x_t, n_t, x_c, n_c))
    with np.errstate(invalid="ignore"):
        counts = np.vstack([x_t, n_t, x_c, n_c])
        integer = np.all(np.isfinite(counts) & (np.abs(counts - np.round(counts)) < 1e-9),
                         axis=0)
    rows = ok & (np.asarray(kind) == "proportion") & ~np.asarray(cuped_used, bool) & integer
    if exact in TESTS:
        out[rows] = exact
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (x_t + x_c) / (n_t + n_c)
        expected = np.minimum(np.minimum(n_t, n_c) * p, np.minimum(n_t, n_c) * (1 - p))
    small = rows & ((expected < AUTO_MIN_EXPECTED) | (np.minimum(n_t, n_c) < AUTO_MIN_N))
    out[small] = np.where(np.maximum(n_t, n_c)[small] <= AUTO_BOSCHLOO_MAX_N, "boschloo",
                          "fisher")
    return out


def table(x_t, n_t, x_c, n_c) -> np.ndarray:
    """The 2x2 table given to scipy: columns variant, control; rows successes, failures."""
    x_t, n_t, x_c, n_c = (int(round(v)) for v in (x_t, n_t, x_c, n_c))
    return np.array([[x_t, x_c], [n_t - x_t, n_c - x_c]])


def p_value(test: str, x_t, n_t, x_c, n_c, alternative="two-sided"):
    """``(statistic, p_value)`` of one exact test, as scipy computes them."""
    tab = table(x_t, n_t, x_c, n_c)
    if test == "fisher":
        res = stats.fisher_exact(tab, alternative=alternative)
    elif test == "barnard":
        res = stats.barnard_exact(tab, alternative=alternative, pooled=True,
                                  n=NUISANCE_POINTS)
    else:
        res = stats.boschloo_exact(tab, alternative=alternative, n=NUISANCE_POINTS)
    return float(res.statistic), min(float(res.pvalue), 1.0)


def p_values(tests, x_t, n_t, x_c, n_c, alternative="two-sided"):
    """Statistic and p-value arrays (NaN where ``tests`` is empty); loops only over the rows
    that have a test."""
    stat = np.full(len(tests), np.nan)
    p = np.full(len(tests), np.nan)
    for i in np.flatnonzero(np.asarray(tests) != ""):
        stat[i], p[i] = p_value(tests[i], x_t[i], n_t[i], x_c[i], n_c[i], alternative)
    return stat, p


# -- intervals --------------------------------------------------------------------------
def wilson(x, n, z):
    """Wilson score interval of a proportion at normal quantile ``z``."""
    x, n, z = (np.asarray(v, float) for v in (x, n, z))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        centre = (x + z**2 / 2) / (n + z**2)
        half = z / (n + z**2) * np.sqrt(np.maximum(x * (n - x) / n, 0.0) + z**2 / 4)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1), p


def newcombe(x_t, n_t, x_c, n_c, z):
    """Newcombe's hybrid score interval of ``p_t - p_c`` at normal quantile ``z``."""
    l_t, u_t, p_t = wilson(x_t, n_t, z)
    l_c, u_c, p_c = wilson(x_c, n_c, z)
    d = p_t - p_c
    return (d - np.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2),
            d + np.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2))


def ratio_score(x_t, n_t, x_c, n_c, r0):
    """Miettinen-Nurminen score statistic of ``H0: p_t / p_c = r0`` (increasing in ``x_t``).

    The constrained MLE ``p_c~`` solves ``N r0 p^2 - (n_t r0 + x_t + n_c + x_c r0) p + x_t + x_c
    = 0`` (Farrington and Manning 1990), ``p_t~ = r0 p_c~``; the variance carries ``N/(N-1)``.
    """
    x_t, n_t, x_c, n_c, r0 = (np.asarray(v, float) for v in (x_t, n_t, x_c, n_c, r0))
    n = n_t + n_c
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = n * r0
        b = -(n_t * r0 + x_t + n_c + x_c * r0)
        cc = x_t + x_c
        pc = (-b - np.sqrt(np.maximum(b * b - 4 * a * cc, 0.0))) / (2 * a)
        pt = r0 * pc
        var = (pt * (1 - pt) / n_t + r0**2 * pc * (1 - pc) / n_c) * n / (n - 1)
        diff = x_t / n_t - r0 * x_c / n_c
        z = diff / np.sqrt(var)
    return np.where(var > 0, z, np.where(diff > 0, np.inf, np.where(diff < 0, -np.inf, 0.0)))


def _root_log_ratio(x_t, n_t, x_c, n_c, target):
    """``r0`` with ``ratio_score(r0) = target`` (score decreasing in ``r0``), by bisection on
    ``log r0`` in ``[-30, 30]``."""
    lo = np.full(np.shape(x_t), -30.0)
    hi = np.full(np.shape(x_t), 30.0)
    for _ in range(_BISECT):
        mid = (lo + hi) / 2
        above = ratio_score(x_t, n_t, x_c, n_c, np.exp(mid)) > target
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return np.exp((lo + hi) / 2)


def ratio_interval(x_t, n_t, x_c, n_c, z):
    """Score interval of ``p_t / p_c`` at normal quantile ``z`` (lower end 0 when ``x_t = 0``)."""
    x_t = np.asarray(x_t, float)
    z = np.broadcast_to(np.asarray(z, float), x_t.shape)
    lower = np.where(x_t > 0, _root_log_ratio(x_t, n_t, x_c, n_c, z), 0.0)
    upper = _root_log_ratio(x_t, n_t, x_c, n_c, -z)
    return lower, upper


def intervals(tests, lo, hi, x_t, n_t, x_c, n_c, difference, alpha, alternative):
    """``lo, hi`` with the exact rows' intervals (Newcombe / ratio score) at ``1 - alpha``."""
    rows = np.flatnonzero(np.asarray(tests) != "")
    if rows.size == 0:
        return lo, hi
    lo, hi = lo.copy(), hi.copy()
    a = np.broadcast_to(np.asarray(alpha, float), np.shape(lo))[rows]
    z = special.ndtri(1 - a / 2) if alternative == "two-sided" else special.ndtri(1 - a)
    args = (x_t[rows], n_t[rows], x_c[rows], n_c[rows], z)
    if difference == "absolute":
        low, upp = newcombe(*args)
    else:
        low, upp = ratio_interval(*args)
        low, upp = low - 1.0, upp - 1.0
    lo[rows] = low if alternative != "less" else -np.inf
    hi[rows] = upp if alternative != "greater" else np.inf
    return lo, hi


def margin_p(x_t, n_t, x_c, n_c, difference, sign, b):
    """One-sided p-value of ``H0: sign * effect <= b`` consistent with the exact rows' intervals.

    Relative: the score test of the ratio at ``r0 = 1 + sign b`` (``sf(z)`` for ``sign=+1``,
    ``cdf(z)`` for ``-1``). Absolute: ``Phi(-z*)`` where the one-sided Newcombe bound at ``z*``
    in the good direction equals ``b`` (``Phi(z*)`` with the other bound when the estimate is
    on the wrong side of ``b``).
    """
    x_t, n_t, x_c, n_c, sign, b = np.broadcast_arrays(
        *(np.asarray(v, float) for v in (x_t, n_t, x_c, n_c, sign, b)))
    if difference == "relative":
        r0 = 1.0 + sign * b
        z = ratio_score(x_t, n_t, x_c, n_c, np.maximum(r0, 1e-300))
        p = np.where(sign > 0, special.ndtr(-z), special.ndtr(z))
        return np.where(r0 > 0, p, np.where(sign > 0, 0.0, 1.0))
    g = sign * (x_t / n_t - x_c / n_c)

    def good_bounds(z):
        low, upp = newcombe(x_t, n_t, x_c, n_c, z)
        return np.where(sign > 0, low, -upp), np.where(sign > 0, upp, -low)

    above = g > b
    lo = np.zeros(x_t.shape)
    hi = np.full(x_t.shape, 40.0)
    for _ in range(_BISECT):
        mid = (lo + hi) / 2
        gl, gu = good_bounds(mid)
        # above: find z where the lower bound falls to b; else where the upper bound rises to b
        still = np.where(above, gl > b, gu < b)
        lo = np.where(still, mid, lo)
        hi = np.where(still, hi, mid)
    zs = (lo + hi) / 2
    return np.where(above, special.ndtr(-zs), special.ndtr(zs))
