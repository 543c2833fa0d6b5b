"""``analyze``: validate -> moments (ratio, CUPED) -> pair with control -> method -> correction."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import special

from workbench import messages
from workbench.errors import DegenerateDataWarning, ParameterError, SRMWarning, StatsInputError
from workbench.stats import bayesian, corrections, frequentist, schema, sequential
from workbench.stats import cuped as _cuped
from workbench.stats import exact as _exact
from workbench.stats import margin as _margin
from workbench.stats import quantile as _quantile
from workbench.stats import regression as _regression
from workbench.stats.moments import basic_moments
from workbench.stats.result import StatsResult
from workbench.stats.srm import SRM_THRESHOLD, srm
from workbench.stats.srm import p_values as srm_p_values
from workbench.stats.validate import validate

METHODS = ("frequentist", "sequential", "bayesian")
DIFFERENCES = ("relative", "absolute")


def _check_args(method, alpha, difference, alternative, correction, cuped_mode, tuning, prior,
                prior_sd, rope):
    def bad(name, value, expected):
        raise ParameterError(f"analyze: parameter {name}={value!r} is invalid; expected {expected}")

    if method not in METHODS:
        bad("method", method, f"one of {list(METHODS)}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        bad("alpha", alpha, "a number in (0, 1)")
    if difference not in DIFFERENCES:
        bad("difference", difference, f"one of {list(DIFFERENCES)}")
    if alternative not in frequentist.ALTERNATIVES:
        bad("alternative", alternative, f"one of {list(frequentist.ALTERNATIVES)}")
    try:
        correction = corrections.normalise(correction)
    except ValueError:
        bad("correction", correction, f"None or one of {list(corrections.METHODS)}")
    if cuped_mode not in ("auto", True, False):
        bad("cuped", cuped_mode, "'auto', True or False")
    if not (isinstance(tuning, (int, float)) and tuning > 0):
        bad("sequential_tuning", tuning, "a positive number (expected sample size)")
    if prior not in ("proper", "flat"):
        bad("prior", prior, "'proper' or 'flat'")
    if prior == "proper" and not (isinstance(prior_sd, (int, float)) and prior_sd > 0):
        bad("prior_sd", prior_sd, "a positive number")
    if rope is not None and not (isinstance(rope, (int, float)) and rope > 0):
        bad("rope", rope, "None or a positive number (half-width, in effect units)")
    return correction


def _srm_per_group(frame, group, n_groups, planned_weights, units, threshold):
    """SRM p-value per group (:func:`workbench.stats.srm.p_values`) and the SRMResult of the
    first group (or of ``units``)."""
    if units is not None:
        res = srm(units, planned_weights, threshold)
        return np.full(n_groups, res.p_value), res
    if not isinstance(planned_weights, (Mapping, pd.Series)):
        raise ParameterError("analyze: parameter planned_weights must map variant names to "
                             f"weights (a dict), got {type(planned_weights).__name__}")
    counts = (pd.DataFrame({"g": group, "v": frame["variant"].to_numpy(),
                            "n": frame["n"].to_numpy()})
              .groupby(["g", "v"], sort=False)["n"].max().unstack("v"))
    w = pd.Series(planned_weights, dtype=float).rename(index=str)
    if not set(w.index) & set(counts.columns):
        raise StatsInputError(f"no planned variant {list(w.index)} occurs in the statistics "
                              f"table (variants: {list(counts.columns)})")
    names = list(dict.fromkeys(list(w.index) + list(counts.columns)))
    obs = counts.reindex(index=np.arange(n_groups), columns=names).fillna(0.0).to_numpy()
    wv = w.reindex(names).fillna(0.0)
    first = srm(dict(zip(names, obs[0])), wv, threshold)  # validates the weights
    return srm_p_values(obs, wv.to_numpy())[1], first


def analyze(
    stats: pd.DataFrame,
    control: str = "control",
    method: str = "frequentist",
    alpha: float = 0.05,
    difference: str = "relative",
    correction: str | None = None,
    *,
    correction_family: list[str] | None = None,
    alternative: str = "two-sided",
    cuped: str | bool = "auto",
    sequential_tuning: float = sequential.DEFAULT_TUNING,
    prior: str = "proper",
    prior_mean: float = 0.0,
    prior_sd: float = 0.3,
    beta_prior: tuple[float, float] = (1.0, 1.0),
    rope: float | None = None,
    planned_weights: dict | None = None,
    units: dict | None = None,
    srm_threshold: float = SRM_THRESHOLD,
    best_draws: int = 10_000,
    seed: int = 0,
    warn: bool = True,
    exact: str | None = "auto",
) -> StatsResult:
    """Compare every treatment variant with the control, for every metric, in one pass.

    Parameters
    ----------
    stats : DataFrame
        Sufficient statistics, one row per metric x variant (x ``dimension, segment, date``);
        columns in ``workbench.stats.schema.INPUT_COLUMNS``.
    control : str
        Name of the control variant.
    method : {"frequentist", "sequential", "bayesian"}
        Fixed-horizon tests; always-valid confidence sequences; closed-form Bayesian.
    alpha : float
        Intervals are ``1 - alpha`` (two-sided equal tails for Bayesian credible intervals).
    difference : {"relative", "absolute"}
        ``variant/control - 1`` (delta method) or ``variant - control``.
    correction : {None, "bonferroni", "holm", "bh"}
        Multiple-testing correction across metrics and arms, within each combination of the
        grouping columns. Intervals are widened consistently (see ``corrections``). Ignored
        by the Bayesian method.
    correction_family : list of str, optional
        Columns whose combinations form the families of the correction, among ``metric``,
        ``variant`` and the grouping columns; default: the grouping columns present (all
        metrics x arms of a segment/day form one family). E.g. ``["metric", "variant",
        "dimension"]`` corrects across the segments of each metric x variant.
    alternative : {"two-sided", "greater", "less"}
        Frequentist and sequential only.
    cuped : {"auto", True, False}
        CUPED with the ``pre_*`` columns: "auto" for every comparison whose two rows have
        finite ones (the slope pools the rows of the block that do; a row without them, or
        whose statistics overflow, is compared unadjusted and its ``cuped`` column says so,
        while the other rows of its block stay adjusted). True: every row must have them.
    sequential_tuning : float
        Expected sample size (both arms) at which the confidence sequence is tightest.
    prior, prior_mean, prior_sd : str, float, float
        Gaussian-model prior ``N(prior_mean, prior_sd^2)`` on the relative lift ("proper"), or
        "flat".
    beta_prior : (float, float)
        Beta prior of proportions.
    rope : float, optional
        Half-width of a region of practical equivalence (effect units); adds
        ``rope_probability`` (Bayesian).
    planned_weights : dict, optional
        Planned traffic share per variant; fills ``srm_p_value``.
    units : dict, optional
        Units per variant for the SRM test; default: the largest ``n`` of the variant over
        the metrics of each grouping combination.
    srm_threshold : float
        SRM flag level (default 0.001).
    best_draws, seed : int
        Monte Carlo draws (seeded) for ``chance_to_be_best`` with 3+ arms.
    warn : bool
        Emit ``DegenerateDataWarning`` / ``SRMWarning``.
    exact : {None, "auto", "fisher", "barnard", "boschloo"}
        Exact tests of proportion comparisons (frequentist; see ``workbench.stats.exact``):
        "auto" (default) below the documented sample size (an expected cell below 5 or an arm
        under 30 units), the named test for every proportion row, or None for the z-test.
        Margins (input columns ``margin``...) are described in ``workbench.stats.margin``.

    Returns
    -------
    StatsResult
    """
    _exact.check(exact, method)
    correction = _check_args(method, alpha, difference, alternative, correction, cuped,
                             sequential_tuning, prior, prior_sd, rope)
    control = str(control)
    frame = validate(stats, control)
    gcols = [c for c in schema.GROUP_COLUMNS if c in frame.columns]
    if cuped is True:
        missing = [c for c in schema.CUPED_INPUT if c not in frame.columns]
        if missing and not _regression.n_covariates(frame):
            raise StatsInputError(f"cuped=True needs column(s) {missing}")
    n_rows = len(frame)
    block = frame.groupby(["metric"] + gcols, sort=False, dropna=False).ngroup().to_numpy()
    n_blocks = int(block.max()) + 1
    if gcols:
        group = frame.groupby(gcols, sort=False, dropna=False).ngroup().to_numpy()
    else:
        group = np.zeros(n_rows, int)
    n_groups = int(group.max()) + 1

    kind = frame["kind"].to_numpy()
    with np.errstate(over="ignore"):  # an overflow is flagged on its row below
        mom = basic_moments(frame)
    is_q = kind == "quantile"
    q_bad = np.zeros(n_rows, bool)
    if is_q.any():  # the sample quantile and its outer-CI standard error (stats/quantile.py)
        qm = _quantile.moments(frame)
        mom["mean"] = np.where(is_q, qm["mean"], mom["mean"])
        mom["var_unit"] = np.where(is_q, qm["var_unit"], mom["var_unit"])
        q_bad = is_q & qm["bad"]
    n, mean, var_unit = mom["n"], mom["mean"], mom["var_unit"]
    base_mean, base_var = mean, var_unit
    theta = np.full(n_rows, np.nan)
    used = np.zeros(n_rows, bool)
    # several covariates (stats/regression.py) replace the single CUPED covariate of a row
    reg_use = _regression.available(frame) & ~is_q if cuped is not False \
        else np.zeros(n_rows, bool)
    reg_note = np.full(n_rows, "", dtype=object)
    reg_names = np.full(n_rows, "", dtype=object)
    if cuped is not False:
        use = _cuped.available(frame) & ~is_q & ~reg_use
        if cuped is True:
            bad = np.flatnonzero(~use & ~reg_use & ~is_q)  # CUPED does not apply to quantiles
            if bad.size:
                raise StatsInputError(f"cuped=True: row {frame.index[bad[0]]!r} (metric="
                                      f"{frame['metric'].iat[bad[0]]!r}) lacks finite "
                                      "pre-period columns")
        if use.any():
            with np.errstate(over="ignore"):
                adj = _cuped.adjust(frame, mom, block, n_blocks, use)
            mean, var_unit, theta, used = adj["mean"], adj["var_unit"], adj["theta"], adj["used"]
        if reg_use.any():
            with np.errstate(over="ignore"):
                reg = _regression.adjust(frame, mom, block, n_blocks, reg_use)
            mean = np.where(reg["used"], reg["mean"], mean)
            var_unit = np.where(reg["used"], reg["var_unit"], var_unit)
            used = used | reg["used"]
            reg_note, reg_names = reg["note"], reg["covariates"]
    with np.errstate(invalid="ignore", divide="ignore"):
        var_mean = var_unit / n
        base_var_mean = base_var / n

    # row-level problems
    need = [frame["n"].to_numpy(dtype=float), frame["sum"].to_numpy(dtype=float)]
    if "sum_squares" in frame.columns:
        need.append(np.where(kind == "proportion", 0.0, frame["sum_squares"].to_numpy(dtype=float)))
    for c in schema.RATIO_INPUT:
        if c in frame.columns:
            need.append(np.where(kind == "ratio", frame[c].to_numpy(dtype=float), 0.0))
    need[1:] = [np.where(is_q, 0.0, a) for a in need[1:]]  # quantile rows: q_bad below
    nan_row = ~np.all(np.isfinite(np.vstack(need)), axis=0)
    den_zero = np.zeros(n_rows, bool)
    if "den_sum" in frame.columns:
        den_zero = (kind == "ratio") & (frame["den_sum"].to_numpy(dtype=float) == 0)
    # finite inputs whose moments are not (an intermediate overflowed): that row only
    overflow = ~nan_row & ~den_zero & (n >= 2) \
        & ~(np.isfinite(base_mean) & np.isfinite(base_var))

    is_ctrl = frame["variant"].to_numpy() == control
    ctrl_of_block = np.full(n_blocks, -1)
    ctrl_of_block[block[is_ctrl]] = np.flatnonzero(is_ctrl)
    t = np.flatnonzero(~is_ctrl)
    c = ctrl_of_block[block[t]]
    has_c = c >= 0
    cc = np.where(has_c, c, 0)

    def pick(a, rows=cc):
        return np.where(has_c, a[rows], np.nan) if a.dtype.kind == "f" else a[rows]

    # CUPED per comparison: both rows adjusted, else both unadjusted (a row that cannot be
    # adjusted never changes how the other rows of its block are compared)
    pair_used = used[t] & pick(used) & has_c
    m_t = np.where(pair_used, mean[t], base_mean[t])
    v_t = np.where(pair_used, var_mean[t], base_var_mean[t])
    m_c = np.where(pair_used, pick(mean), pick(base_mean))
    v_c = np.where(pair_used, pick(var_mean), pick(base_var_mean))
    n_t, n_c = n[t], pick(n)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        eff, se = frequentist.effect_and_se(m_t, v_t, m_c, v_c, difference)
        _, se_unadj = frequentist.effect_and_se(base_mean[t], base_var_mean[t], pick(base_mean),
                                                pick(base_var_mean), difference)

    err = np.full(t.size, "", dtype=object)

    def flag(mask, msg):
        err[(err == "") & mask] = msg

    flag(~has_c, messages.NO_CONTROL_ROW)
    flag(has_c & (n_c == 0), messages.NO_UNITS_CONTROL)
    flag(n_t == 0, messages.NO_UNITS_VARIANT)
    flag(nan_row[t] | (has_c & nan_row[cc]), messages.MISSING_STATS)
    flag(q_bad[t] | (has_c & q_bad[cc]), messages.QUANTILE_TOO_FEW)
    flag(overflow[t], messages.NOT_FINITE)
    flag(has_c & overflow[cc], messages.NOT_FINITE_CONTROL)
    flag(den_zero[t] | (has_c & den_zero[cc]), messages.ZERO_DENOMINATOR)
    flag((n_t < 2) | (n_c < 2), messages.TOO_FEW_UNITS)
    flag(~(np.isfinite(v_t) & np.isfinite(v_c)), messages.MISSING_STATS)
    flag((v_t == 0) & (v_c == 0), messages.ZERO_VARIANCE)
    if difference == "relative":
        flag(m_c == 0, messages.ZERO_BASELINE)
    flag(~(np.isfinite(eff) & np.isfinite(se)), messages.NOT_FINITE_EFFECT)
    ok = err == ""

    kind_t = kind[t]
    dof = np.full(t.size, np.inf)
    p = np.full(t.size, np.nan)
    stat = np.full(t.size, np.nan)
    lo = np.full(t.size, np.nan)
    hi = np.full(t.size, np.nan)
    ctw = np.full(t.size, np.nan)
    r_c = np.full(t.size, np.nan)
    r_v = np.full(t.size, np.nan)
    best = np.full(t.size, np.nan)
    rope_p = np.full(t.size, np.nan)
    effect_out = np.where(ok, eff, np.nan)
    se_out = np.where(ok, se, np.nan)
    interval_alpha = np.where(ok, float(alpha), np.nan)
    n_total = n_t + n_c
    x_t, x_c = frame["sum"].to_numpy(dtype=float)[t], pick(frame["sum"].to_numpy(dtype=float))
    ex_tests = _exact.select(exact if method == "frequentist" else None, ok, kind_t, pair_used,
                             x_t, n_t, x_c, n_c)
    beta_rows = np.zeros(t.size, bool)

    if method in ("frequentist", "sequential"):
        if method == "frequentist":
            dof = frequentist.welch_dof(v_t, n_t, v_c, n_c, (kind_t == "mean") & ok)
            stat, p, lo, hi = frequentist.test(eff, se, dof, alpha, alternative)
            if (ex_tests != "").any():  # exact p-values replace the z-test's before correcting
                ex_stat, ex_p = _exact.p_values(ex_tests, x_t, n_t, x_c, n_c, alternative)
                stat, p = np.where(ex_tests != "", ex_stat, stat), np.where(ex_tests != "", ex_p, p)
        else:
            stat, p, lo, hi = sequential.test(eff, se, n_total, alpha, alternative,
                                              sequential_tuning, nominal_alpha=alpha)
        p = np.where(ok, p, np.nan)
        if correction is not None:
            fam = _families(frame, t, gcols, group, correction_family)
            p_adj, levels = corrections.adjust(p, fam, correction, return_levels=True)
            interval_alpha = np.where(ok, corrections.adjusted_alpha(p, p_adj, alpha, levels),
                                      np.nan)
            if method == "frequentist":
                _, _, lo, hi = frequentist.test(eff, se, dof, interval_alpha, alternative)
            else:
                _, _, lo, hi = sequential.test(eff, se, n_total, interval_alpha, alternative,
                                               sequential_tuning, nominal_alpha=alpha)
        else:
            p_adj = p.copy()
        lo, hi = _exact.intervals(ex_tests, lo, hi, x_t, n_t, x_c, n_c, difference,
                                  interval_alpha, alternative)
    else:
        p_adj = np.full(t.size, np.nan)
        z = special.ndtri(1 - alpha / 2)
        beta_rows = ok & (kind_t == "proportion") & ~pair_used
        gauss_rows = ok & ~beta_rows
        if beta_rows.any():
            idx = np.flatnonzero(beta_rows)
            s_all = frame["sum"].to_numpy(dtype=float)
            a_t, b_t = bayesian.beta_posterior(s_all[t[idx]], n_t[idx], beta_prior)
            a_c, b_c = bayesian.beta_posterior(s_all[c[idx]], n_c[idx], beta_prior)
            res = bayesian.beta_compare(a_t, b_t, a_c, b_c, difference == "relative")
            ctw[idx], r_c[idx], r_v[idx] = res["chance_to_win"], res["risk_control"], res["risk_variant"]
            effect_out[idx], se_out[idx] = res["mean"], res["sd"]
            lo[idx], hi[idx] = res["mean"] - z * res["sd"], res["mean"] + z * res["sd"]
        if gauss_rows.any():
            idx = np.flatnonzero(gauss_rows)
            scale = 1.0 if difference == "relative" else np.abs(m_c[idx])
            mu, sd = bayesian.gaussian_posterior(eff[idx], se[idx], prior_mean,
                                                 prior_sd if prior == "proper" else None, scale)
            res = bayesian.gaussian_decision(mu, sd)
            ctw[idx], r_c[idx], r_v[idx] = res["chance_to_win"], res["risk_control"], res["risk_variant"]
            effect_out[idx], se_out[idx] = mu, sd
            lo[idx], hi[idx] = mu - z * sd, mu + z * sd
        if rope is not None:
            rope_p = np.where(ok, bayesian.rope_probability(effect_out, se_out, rope), np.nan)
        # chance to be best compares all arms of a block on one footing: adjusted where
        # every row of the block is, else unadjusted
        all_used = np.bincount(block, weights=~used, minlength=n_blocks)[block] == 0
        best = _best(frame, block, t, ok, ctw, np.where(all_used, mean, base_mean),
                     np.where(all_used, var_mean, base_var_mean), n, used & all_used, kind,
                     is_ctrl, beta_prior, best_draws, seed)

    srm_p = np.full(t.size, np.nan)
    srm_res = None
    if planned_weights is not None:
        p_group, srm_res = _srm_per_group(frame, group, n_groups, planned_weights, units,
                                          srm_threshold)
        srm_p = p_group[group[t]]

    marg = _margin.compute(
        frame, t, cc, has_c, ok, method=method, difference=difference, effect=eff, se=se,
        dof=dof, control_mean=m_c, n_total=n_total, alpha=alpha, tuning=sequential_tuning,
        post_mean=effect_out, post_sd=se_out, beta_rows=beta_rows, beta_prior=beta_prior,
        exact_rows=ex_tests != "",
        exact_margin_p=lambda sign, b: _exact.margin_p(x_t, n_t, x_c, n_c, difference, sign, b))
    tests = np.where(ex_tests != "", ex_tests, _exact.names(method, kind_t, ok, beta_rows))
    nanify = ~ok
    for arr in (stat, lo, hi, ctw, r_c, r_v, best, dof):
        arr[nanify] = np.nan
    dof = np.where(ok & (method == "frequentist"), dof, np.nan)
    out = {
        "metric": frame["metric"].to_numpy()[t],
        "variant": frame["variant"].to_numpy()[t],
        "control_mean": m_c,
        "variant_mean": m_t,
        "effect": effect_out,
        "ci_lower": lo,
        "ci_upper": hi,
        "p_value": p,
        "p_value_adjusted": p_adj,
        "chance_to_win": ctw,
        "risk_control": r_c,
        "risk_variant": r_v,
        "srm_p_value": srm_p,
        "error_message": err.astype(str),
        "test": tests,
        **marg,
        "variance_reduction": np.where(pair_used & ok,
                                       _regression.variance_reduction(se, se_unadj), np.nan),
        "covariates": np.where(pair_used, reg_names[t], "").astype(str),
        "adjustment_note": np.where(reg_note[t] != "", reg_note[t],
                                    np.where(has_c, pick(reg_note), "")).astype(str),
    }
    for gc in gcols:
        out[gc] = frame[gc].to_numpy()[t]
    out.update({
        "kind": kind_t,
        "method": method,
        "difference": difference,
        "alternative": alternative,
        "control_n": n_c,
        "variant_n": n_t,
        "se": se_out,
        "statistic": stat,
        "dof": dof,
        "interval_alpha": interval_alpha,
        "cuped": pair_used,
        "cuped_theta": np.where(pair_used, theta[t], np.nan),
        "chance_to_be_best": best,
    })
    if rope is not None:
        out["rope_probability"] = rope_p
    table = pd.DataFrame(out)
    if "test" in table.columns and is_q.any():  # the margins helper's column; z on quantiles
        table.loc[(kind_t == "quantile") & ok & (method != "bayesian"), "test"] = "quantile"
    if warn and (~ok).any():
        kinds_of = pd.Series(err[~ok]).value_counts()
        warnings.warn(f"{int((~ok).sum())} of {t.size} comparisons could not be computed: "
                      + "; ".join(f"{k} ({v})" for k, v in kinds_of.items()),
                      DegenerateDataWarning, stacklevel=2)
    if warn and srm_res is not None and np.nanmin(np.r_[srm_p, 1.0]) < srm_threshold:
        warnings.warn(srm_res.message or messages.SRM_DETECTED.format(threshold=srm_threshold),
                      SRMWarning, stacklevel=2)
    settings = {"correction_family": correction_family, "cuped": cuped,
                "sequential_tuning": sequential_tuning, "prior": prior,
                "prior_mean": prior_mean, "prior_sd": prior_sd, "beta_prior": tuple(beta_prior),
                "rope": rope, "planned_weights": planned_weights, "srm_threshold": srm_threshold,
                "best_draws": best_draws, "seed": seed, "exact": exact}
    return StatsResult(table=table, method=method, alpha=float(alpha), difference=difference,
                       alternative=alternative, correction=correction, control=control,
                       settings=settings, srm=srm_res)


def _families(frame, t, gcols, group, columns):
    if columns is None:
        return group[t]
    columns = [columns] if isinstance(columns, str) else list(columns)
    allowed = ["metric", "variant", *gcols]
    bad = [c for c in columns if c not in allowed]
    if bad:
        raise ParameterError(f"analyze: parameter correction_family={columns!r} is invalid; "
                             f"expected columns among {allowed}")
    if not columns:
        return np.zeros(t.size, int)
    sub = frame.iloc[t][columns]
    return sub.groupby(columns, sort=False, dropna=False).ngroup().to_numpy()


def _best(frame, block, t, ok, ctw, mean, var_mean, n, used, kind, is_ctrl, beta_prior,
          draws, seed):
    """Chance to be best for treatment rows: the chance to win with 2 arms, else Monte Carlo."""
    out = np.where(ok, ctw, np.nan)
    arms = np.bincount(block, minlength=int(block.max()) + 1)
    multi_rows = np.flatnonzero((arms[block] >= 3) & (n > 0))
    if multi_rows.size == 0 or draws <= 0:
        return out
    s = frame["sum"].to_numpy(dtype=float)
    beta = (kind == "proportion") & ~used
    a, b = beta_prior[0] + s, beta_prior[1] + n - s
    sub = multi_rows
    prob = bayesian.chance_to_be_best(
        block[sub], (np.where(beta[sub], a[sub], np.nan), np.where(beta[sub], b[sub], np.nan)),
        (mean[sub], np.sqrt(var_mean[sub])), draws=draws, seed=seed)
    full = np.full(len(frame), np.nan)
    full[sub] = prob
    arms_t = arms[block[t]]
    return np.where(ok & (arms_t >= 3), full[t], out)

