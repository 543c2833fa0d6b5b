"""Sample size, minimum detectable effect (MDE) and duration for proportions and means.

Two-sample z-test on the absolute difference ``delta`` with ``n`` units in control and
``ratio * n`` in the treatment. Its variance is ``V / n`` with::

    V = p1 (1 - p1) + p2 (1 - p2) / ratio      (proportions, p2 = p1 + delta)
    V = sd^2 (1 + 1 / ratio)                     (means, common sd)

and power (two-sided) ``Phi(lam - z) + Phi(-lam - z)``, ``lam = |delta| / sqrt(V / n)``,
``z = Phi^-1(1 - alpha/2)`` (one-sided: ``Phi(lam - Phi^-1(1 - alpha))``), exactly as
``statsmodels.stats.power.NormalIndPower`` with effect size ``delta / sqrt(V / (1 + 1/ratio))``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, special

from workbench.errors import ParameterError


def _check(kind, baseline, sd, alpha, power, ratio, alternative):
    if kind not in ("proportion", "mean"):
        raise ParameterError(f"kind={kind!r}: expected 'proportion' or 'mean'")
    if kind == "proportion" and not 0 < baseline < 1:
        raise ParameterError(f"baseline={baseline!r}: a proportion must lie in (0, 1)")
    if kind == "mean" and not (sd is not None and sd > 0):
        raise ParameterError(f"sd={sd!r}: mean metrics need the unit standard deviation sd > 0")
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha={alpha!r}: expected a number in (0, 1)")
    if not 0 < power < 1:
        raise ParameterError(f"power={power!r}: expected a number in (0, 1)")
    if not ratio > 0:
        raise ParameterError(f"ratio={ratio!r}: expected treatment/control size > 0")
    if alternative not in ("two-sided", "larger", "smaller", "greater", "less"):
        raise ParameterError(f"alternative={alternative!r}: expected 'two-sided' or one-sided")


def _power_lam(lam, alpha, alternative):
    if alternative == "two-sided":
        z = special.ndtri(1 - alpha / 2)
        return special.ndtr(lam - z) + special.ndtr(-lam - z)
    return special.ndtr(lam - special.ndtri(1 - alpha))


def _lambda_needed(alpha, power, alternative):
    """Noncentrality giving the requested power."""
    if alternative != "two-sided":
        return float(special.ndtri(1 - alpha) + special.ndtri(power))
    lo = 0.0
    hi = float(special.ndtri(1 - alpha / 2) + special.ndtri(power)) + 1.0
    return optimize.brentq(lambda lam: _power_lam(lam, alpha, alternative) - power, lo, hi,
                           xtol=1e-14, rtol=1e-15)


def _unit_variance(kind, baseline, delta, sd, ratio):
    if kind == "proportion":
        p2 = baseline + delta
        return baseline * (1 - baseline) + p2 * (1 - p2) / ratio
    return sd**2 * (1 + 1 / ratio)


def sample_size(baseline, mde, kind="proportion", sd=None, alpha=0.05, power=0.8,
                relative=True, ratio=1.0, alternative="two-sided"):
    """Units needed in the control arm (the treatment needs ``ratio`` times as many).

    Parameters
    ----------
    baseline : float
        Control proportion, or control mean (for relative MDEs of means).
    mde : float
        Effect to detect: relative lift (``relative=True``) or absolute difference.
    kind : {"proportion", "mean"}
    sd : float
        Unit standard deviation (means).
    alpha, power : float
    ratio : float
        Treatment units per control unit.
    alternative : {"two-sided", "larger", "smaller"}

    Returns
    -------
    float
        Control-arm units (not rounded; ``math.ceil`` it to plan).
    """
    _check(kind, baseline, sd, alpha, power, ratio, alternative)
    delta = mde * baseline if relative else mde
    if delta == 0:
        raise ParameterError("mde must not be zero")
    if kind == "proportion" and not 0 < baseline + delta < 1:
        raise ParameterError(f"baseline + effect = {baseline + delta:g} is not a proportion")
    lam = _lambda_needed(alpha, power, alternative)
    return float(_unit_variance(kind, baseline, delta, sd, ratio) * (lam / delta) ** 2)


def mde(baseline, n, kind="proportion", sd=None, alpha=0.05, power=0.8, relative=True,
        ratio=1.0, alternative="two-sided"):
    """Smallest positive effect detectable with ``n`` control units (same units as ``relative``)."""
    _check(kind, baseline, sd, alpha, power, ratio, alternative)
    if not n > 0:
        raise ParameterError(f"n={n!r}: expected a positive number of units")
    lam = _lambda_needed(alpha, power, alternative)
    if kind == "mean":
        delta = lam * math.sqrt(_unit_variance(kind, baseline, 0.0, sd, ratio) / n)
    else:
        f = lambda d: d - lam * math.sqrt(_unit_variance(kind, baseline, d, sd, ratio) / n)  # noqa: E731
        top = 1 - baseline - 1e-12
        if f(top) < 0:
            return float("nan")  # not detectable with this sample
        delta = optimize.brentq(f, 1e-15, top, xtol=1e-15, rtol=1e-14)
    return float(delta / baseline) if relative else float(delta)


def power_table(baseline, users_per_day, days=28, kind="proportion", sd=None, alpha=0.05,
                power=0.8, relative=True, arms=2, alternative="two-sided") -> pd.DataFrame:
    """MDE by planned duration, with traffic split equally over ``arms`` arms.

    Returns
    -------
    DataFrame
        ``day, units_per_arm, mde`` for days ``1..days`` (``days`` may be a list).
    """
    if not users_per_day > 0 or not arms >= 2:
        raise ParameterError("users_per_day must be > 0 and arms >= 2")
    dayv = np.arange(1, int(days) + 1) if np.isscalar(days) else np.asarray(days)
    n = users_per_day * dayv / arms
    m = [mde(baseline, float(k), kind, sd, alpha, power, relative, 1.0, alternative) for k in n]
    return pd.DataFrame({"day": dayv, "units_per_arm": n, "mde": m})


def duration(baseline, mde_, users_per_day, kind="proportion", sd=None, alpha=0.05, power=0.8,
             relative=True, arms=2, alternative="two-sided") -> int:
    """Days needed to detect ``mde_`` with ``users_per_day`` split equally over ``arms``."""
    if not users_per_day > 0 or not arms >= 2:
        raise ParameterError("users_per_day must be > 0 and arms >= 2")
    n = sample_size(baseline, mde_, kind, sd, alpha, power, relative, 1.0, alternative)
    return int(math.ceil(n * arms / users_per_day))
