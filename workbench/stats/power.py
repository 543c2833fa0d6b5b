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


# -- mid-experiment power -------------------------------------------------------------------
def _sequential_power(lam, n_total, se, alpha, tuning):
    """Chance that the confidence sequence at ``n_total`` excludes 0 when the true effect is
    ``lam * se``: the boundary in standard errors is ``h / se`` (:mod:`.sequential`)."""
    from workbench.stats import sequential

    rho2 = sequential.rho_squared(alpha, tuning)
    c = sequential.halfwidth(np.ones_like(n_total), n_total, alpha, rho2)
    return special.ndtr(lam - c) + special.ndtr(-lam - c)


def reached_power(se, n_so_far, mde, alpha=0.05, target_power=0.8, days_elapsed=np.nan,
                  alternative="two-sided", method="frequentist", tuning=None) -> pd.DataFrame:
    """Power reached so far for a planned MDE, and the units and days still needed.

    The standard error of the effect shrinks as ``1 / sqrt(N)`` with the units ``N`` of the
    comparison (both arms, at the current split), so with the observed ``se`` after
    ``n_so_far`` units the standard error after ``N`` units is ``se * sqrt(n_so_far / N)``.
    Fixed horizon (z-test)::

        power = Phi(mde / se - z) + Phi(-mde / se - z),   z = Phi^-1(1 - alpha/2)
        n_needed = n_so_far * (lam * se / mde)^2           (lam: the noncentrality of target_power)

    Sequential (``method="sequential"``): the chance that the confidence sequence *at* ``N``
    excludes 0, ``Phi(mde/se - c(N)) + Phi(-mde/se - c(N))`` with ``c(N)`` the boundary in
    standard errors (:func:`workbench.stats.sequential.halfwidth`); a lower bound on the chance
    of having stopped by ``N``. Days: ``days_needed = days_elapsed * n_needed / n_so_far`` (the
    traffic so far continues), ``days_left = max(0, days_needed - days_elapsed)``.

    Parameters
    ----------
    se : array
        Standard error of the effect, in the units of ``mde`` (relative lift or difference).
    n_so_far : array
        Units of the comparison so far (control + variant).
    mde : array
        Planned minimum detectable effect (> 0, same units as ``se``).
    alpha, target_power : float
    days_elapsed : array or float
        Days of traffic behind ``n_so_far`` (NaN: days are not computed).
    alternative : {"two-sided", "greater", "less"}
    method : {"frequentist", "sequential", "bayesian"}
        Bayesian readouts get the frequentist figures (a normal approximation).
    tuning : float, optional
        Sequential tuning (expected sample size; default ``sequential.DEFAULT_TUNING``).

    Returns
    -------
    DataFrame
        ``power, n_needed, days_needed, days_left`` (NaN where ``se`` is not finite or
        positive).
    """
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha={alpha!r}: expected a number in (0, 1)")
    if not 0 < target_power < 1:
        raise ParameterError(f"target_power={target_power!r}: expected a number in (0, 1)")
    se, n0, d = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float))
                                     for v in (se, n_so_far, mde)))
    if np.any(~(np.abs(d) > 0)):
        raise ParameterError(f"planned_mde={mde!r}: expected effects different from 0")
    days = np.broadcast_to(np.asarray(days_elapsed, float), se.shape)
    ok = np.isfinite(se) & (se > 0) & (n0 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = np.abs(d) / se
        one = "two-sided" if alternative == "two-sided" else "larger"
        if method == "sequential":
            from workbench.stats import sequential

            tun = float(tuning or sequential.DEFAULT_TUNING)
            power = _sequential_power(lam, n0, se, alpha, tun)

            def at(n, i):  # power after n units of comparison i
                return _sequential_power(lam[i] * np.sqrt(n / n0[i]), np.asarray(n, float),
                                         se[i], alpha, tun) - target_power

            need = np.full(se.shape, np.nan)
            for i in np.flatnonzero(ok):
                hi = n0[i]
                if at(hi, i) >= 0:  # reached: the first N with enough power, below n_so_far
                    lo = 2.0
                    need[i] = optimize.brentq(at, lo, hi, args=(i,), xtol=1e-6) \
                        if at(lo, i) < 0 else lo
                    continue
                while at(hi, i) < 0 and hi < 1e18:
                    hi *= 4
                need[i] = optimize.brentq(at, n0[i], hi, args=(i,), xtol=1e-6, rtol=1e-12)
        else:
            power = _power_lam(lam, alpha, one)
            need = n0 * (_lambda_needed(alpha, target_power, one) / lam) ** 2
        days_needed = days * need / n0
        days_left = np.maximum(0.0, days_needed - days)
    nan = np.where(ok, 1.0, np.nan)
    return pd.DataFrame({"power": power * nan, "n_needed": need * nan,
                         "days_needed": days_needed * nan, "days_left": days_left * nan})


# -- calibration of a test by simulation ------------------------------------------------------
def wilson_interval(successes, trials, alpha=0.05):
    """Wilson score interval of a binomial proportion (arrays; NaN where ``trials`` is 0)::

        (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    """
    k, n = np.broadcast_arrays(np.asarray(successes, float), np.asarray(trials, float))
    z = special.ndtri(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    bad = ~(n > 0)
    return np.where(bad, np.nan, centre - half), np.where(bad, np.nan, centre + half)


def calibration(p_values, alpha=0.05, rejected=None) -> dict:
    """False-positive rate (with its Wilson interval) and uniformity of null p-values.

    Parameters
    ----------
    p_values : array
        p-values of replicates where the null holds (NaN: replicate not computed, left out).
    alpha : float
    rejected : array of bool, optional
        Which replicates rejected (default ``p_values < alpha``).

    Returns
    -------
    dict
        ``replicates, false_positive_rate, fpr_ci_lower, fpr_ci_upper, ks_p_value`` (the
        one-sample Kolmogorov-Smirnov test against Uniform(0, 1), ``scipy.stats.kstest``).
    """
    from scipy import stats as sps

    p = np.asarray(p_values, float)
    keep = np.isfinite(p)
    rej = (p < alpha) if rejected is None else np.asarray(rejected, bool)
    n = int(keep.sum())
    k = int((rej & keep).sum())
    lo, hi = wilson_interval(k, n, alpha)
    ks = float(sps.kstest(p[keep], "uniform").pvalue) if n >= 2 else np.nan
    return {"replicates": n, "false_positive_rate": k / n if n else np.nan,
            "fpr_ci_lower": float(lo), "fpr_ci_upper": float(hi), "ks_p_value": ks}


# -- planning on measured moments ---------------------------------------------------------------
def _sequential_lambda(n_total, alpha, power, tuning):
    """Noncentrality ``lam`` (effect / se) at which the confidence sequence at ``n_total``
    excludes 0 with probability ``power`` (:func:`_sequential_power`)."""
    n = np.asarray([float(n_total)])
    return optimize.brentq(lambda lam: float(_sequential_power(
        np.asarray([lam]), n, n, alpha, tuning)[0]) - power, 0.0, 50.0, xtol=1e-12)


def design(var_unit, baseline, mde, shares=(0.5, 0.5), units_per_day=np.nan, days=np.nan,
           alpha=0.05, power=0.8, relative=True, alternative="two-sided",
           tuning=None) -> pd.DataFrame:
    """Sample size, duration and MDE of a two-arm comparison, fixed horizon and sequential.

    With a share ``s_c`` of the experiment's units in control and ``s_t`` in the variant, the
    standard error of the effect after ``N`` experiment units is ``se1 / sqrt(N)``::

        se1 = sqrt(var_unit (1/s_c + 1/s_t)) / (|baseline| if relative else 1)

    Fixed horizon: ``N = (lam se1 / mde)^2`` (``lam`` the noncentrality of ``power``, as
    :func:`sample_size`; the same as ``statsmodels`` ``NormalIndPower`` with effect size
    ``mde |baseline| / sqrt(var_unit)``, ``nobs1 = s_c N`` and ``ratio = s_t / s_c``), and
    ``MDE(N) = lam se1 / sqrt(N)``. Sequential: the first ``N`` at which the confidence
    sequence excludes 0 with probability ``power`` (:func:`reached_power`, ``method=
    "sequential"``), and the MDE whose noncentrality reaches it at ``N``. Durations:
    ``days = ceil(N / units_per_day)``; the MDEs are at ``N = units_per_day * days``.

    Parameters
    ----------
    var_unit, baseline, mde : array
        Variance of one unit's (linearised) value, the baseline mean and the effect to detect
        (relative lift or absolute, as ``relative``), one entry per row.
    shares : (float, float)
        Share of the experiment's units in the control and in the variant.
    units_per_day : array or float
        Experiment units per day (traffic already applied).
    days : float
        Planned duration for the MDE columns.
    alpha, power : float
    alternative : {"two-sided", "larger", "smaller"}
    tuning : float, optional
        Sequential tuning (default ``sequential.DEFAULT_TUNING``, as the readout).

    Returns
    -------
    DataFrame
        ``se1, n_fixed, days_fixed, mde_fixed, n_sequential, days_sequential,
        mde_sequential`` (NaN where the variance or baseline cannot give a plan).
    """
    from workbench.stats import sequential

    s_c, s_t = (float(s) for s in shares)
    if not (s_c > 0 and s_t > 0):
        raise ParameterError(f"weights={shares!r}: the compared arms need shares > 0")
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha={alpha!r}: expected a number in (0, 1)")
    if not 0 < power < 1:
        raise ParameterError(f"power={power!r}: expected a number in (0, 1)")
    var, base, d, upd = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float))
                                             for v in (var_unit, baseline, mde, units_per_day)))
    if np.any(~(np.abs(d) > 0)):
        raise ParameterError(f"mde={mde!r}: expected effects different from 0")
    tun = float(tuning or sequential.DEFAULT_TUNING)
    one = "two-sided" if alternative == "two-sided" else "larger"
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.abs(base) if relative else np.ones_like(base)
        se1 = np.sqrt(var * (1 / s_c + 1 / s_t)) / scale
        ok = np.isfinite(se1) & (se1 > 0)
        lam = _lambda_needed(alpha, power, one)
        n_fixed = (lam * se1 / np.abs(d)) ** 2
        n_days = upd * float(days)
        mde_fixed = lam * se1 / np.sqrt(n_days)
        n_seq = np.full(se1.shape, np.nan)
        mde_seq = np.full(se1.shape, np.nan)
        for i in np.flatnonzero(ok):
            n0 = max(float(n_fixed[i]), 4.0)
            n_seq[i] = reached_power(se1[i] / np.sqrt(n0), n0, d[i], alpha=alpha,
                                     target_power=power, method="sequential",
                                     tuning=tun)["n_needed"].iloc[0]
            if np.isfinite(n_days[i]) and n_days[i] > 0:
                mde_seq[i] = _sequential_lambda(n_days[i], alpha, power, tun) \
                    * se1[i] / np.sqrt(n_days[i])
        nan = np.where(ok, 1.0, np.nan)
        days_fixed = np.ceil(n_fixed / upd)
        days_seq = np.ceil(n_seq / upd)
    return pd.DataFrame({"se1": se1 * nan, "n_fixed": n_fixed * nan,
                         "days_fixed": days_fixed * nan, "mde_fixed": mde_fixed * nan,
                         "n_sequential": n_seq * nan, "days_sequential": days_seq * nan,
                         "mde_sequential": mde_seq * nan})


def power_curve(se1, mde, n_total, alpha=0.05, alternative="two-sided",
                method="fixed", tuning=None) -> np.ndarray:
    """Power to detect ``mde`` after ``n_total`` units when the standard error is
    ``se1 / sqrt(n_total)`` (:func:`design`); ``method="sequential"``: the chance the
    confidence sequence at ``n_total`` excludes 0."""
    from workbench.stats import sequential

    se1, d, n = np.broadcast_arrays(*(np.asarray(v, float) for v in (se1, mde, n_total)))
    with np.errstate(invalid="ignore", divide="ignore"):
        se = se1 / np.sqrt(n)
        lam = np.abs(d) / se
        if method == "sequential":
            return _sequential_power(lam, n, se, alpha,
                                     float(tuning or sequential.DEFAULT_TUNING))
        one = "two-sided" if alternative == "two-sided" else "larger"
        return _power_lam(lam, alpha, one)
