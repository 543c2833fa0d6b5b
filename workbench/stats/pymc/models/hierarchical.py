"""Hierarchical model of a treatment effect across the segments of a dimension (partial pooling).

Segment effects ``theta_j = mu + tau * z_j`` (non-centred "8 schools"). Proportions use a binomial
likelihood on the counts (effect on the log-odds scale); means a normal likelihood on each
segment's observed difference with its standard error.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workbench import messages
from workbench.errors import StatsInputError
from workbench.stats.pymc import sampling
from workbench.stats.pymc.models.inputs import (
    check_args,
    check_table,
    check_unique,
    pick,
    select_metrics,
    variance,
)
from workbench.stats.pymc.priors import HierarchicalPriors
from workbench.stats.pymc.result import (
    OVERALL,
    BayesResult,
    Fits,
    effect_stats,
    empty_row,
    posterior_draws,
)

__all__ = ["hierarchical"]

_HIERARCHICAL = HierarchicalPriors()  # default (frozen: one serves every call)


def segment_effects(c: pd.DataFrame, t: pd.DataFrame, difference: str):
    """Observed per-segment effect and its standard error (delta method for the lift)."""
    nc, nt = c["n"].to_numpy(), t["n"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        mc, mt = c["sum"].to_numpy() / nc, t["sum"].to_numpy() / nt
        vc, vt = variance(c) / nc, variance(t) / nt  # variances of the means
        if difference == "relative":
            eff = mt / mc - 1.0
            se = np.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
        else:
            eff = mt - mc
            se = np.sqrt(vt + vc)
    return mc, mt, eff, se


def hierarchical(stats: pd.DataFrame, *, control: str = "control", metrics=None, dimensions=None,
                 difference: str = "relative", alpha: float = 0.05, likelihood: str = "auto",
                 priors: HierarchicalPriors = _HIERARCHICAL, draws: int = 1000, tune: int = 1000,
                 chains: int = 4, random_seed: int | None = None, sampler: str = "nutpie",
                 progressbar: bool = True, target_accept: float = 0.99, max_r_hat: float = 1.01,
                 min_ess: float = 400.0) -> BayesResult:
    """Treatment effect across the segments of a dimension, with partial pooling.

    For each metric x dimension x treatment variant, segment effects are
    ``theta_j = mu + tau * z_j`` (non-centred), ``z_j ~ Normal(0, 1)``:

    * ``likelihood='binomial'`` (default for proportions): ``logit p_c_j = a_j``,
      ``logit p_t_j = a_j + theta_j`` and binomial counts per arm; ``theta`` is a log odds ratio.
    * ``likelihood='normal'`` (default for means): the observed segment effect
      ``d_j ~ Normal(s * theta_j, se_j)`` (lift by the delta method, or difference of means; ``s`` is
      the control's pooled sd for absolute differences, else 1) - the "8 schools" model.

    Each segment row reports the shrunk effect, its credible interval, chance to win and expected
    losses; a ``segment='(all)'`` row reports the population effect, the segments weighted by their
    units. ``result.hyper`` holds ``mu`` (effect of a typical segment) and ``tau`` (between-segment
    sd). Segments with no units in an arm, or (normal) fewer than 2 units or zero variance, are left
    out of the fit with ``error_message`` set.

    Parameters
    ----------
    stats : DataFrame
        Sufficient statistics with ``dimension, segment`` columns: one row per metric x dimension x
        segment x variant. Rows whose dimension is missing or ``'(all)'`` are ignored.
    control, metrics, difference, alpha
        As in :func:`~workbench.stats.pymc.beta_binomial` (``metrics`` default: every proportion and mean metric).
    dimensions : str or list of str, optional
        Dimensions to analyse; default all.
    likelihood : {'auto', 'binomial', 'normal'}
        'binomial' needs proportion metrics.
    priors : HierarchicalPriors
        ``mu_sd`` (0.3), ``tau_scale`` (0.2), ``baseline_sd`` (2.0).
    draws, tune, chains, random_seed, sampler, progressbar, target_accept, max_r_hat, min_ess
        As in :func:`~workbench.stats.pymc.beta_binomial`. ``target_accept`` defaults to 0.99: with few segments the
        posterior of ``tau`` reaches zero (a funnel) and 0.8-0.95 left a few divergences on the
        sample data; the models are small, so the smaller steps cost little.

    Returns
    -------
    BayesResult
        ``idatas`` keyed by ``(metric, dimension, variant)``.
    """
    cfg = sampling.settings(draws, tune, chains, random_seed, sampler, progressbar, target_accept,
                            max_r_hat, min_ess)
    return fit(stats, control, metrics, dimensions, difference, alpha, likelihood, priors, cfg)


def fit(stats, control, metrics, dimensions, difference, alpha, likelihood, priors, cfg,
        prior_only=False, prior_draws=500):
    """Fit every metric x dimension x treatment variant (or, ``prior_only``, return the prior
    predictive draws of the first one)."""
    check_args(difference, alpha)
    if likelihood not in ("auto", "binomial", "normal"):
        raise StatsInputError(f"likelihood must be 'auto', 'binomial' or 'normal', got {likelihood!r}")
    if isinstance(stats, pd.DataFrame) and not {"dimension", "segment"} <= set(stats.columns):
        raise StatsInputError("the hierarchical model needs columns 'dimension' and 'segment' "
                              "(a segment breakdown of the statistics table)")
    frame = check_table(stats, control, ())
    if "date" in frame.columns and frame["date"].nunique(dropna=True) > 1:
        raise StatsInputError("the hierarchical model takes one period: filter column 'date' to one value")
    frame = frame[frame["dimension"].notna() & (frame["dimension"].astype(str) != OVERALL)]
    frame = frame[frame["segment"].notna() & (frame["segment"].astype(str) != OVERALL)]
    if frame.empty:
        raise StatsInputError("no segment rows (dimension and segment set, not '(all)') in the statistics table")
    if dimensions is not None:
        frame = pick(frame, "dimension", dimensions)
    frame = select_metrics(frame, metrics, ("proportion", "mean"), "hierarchical")
    if likelihood == "binomial" and (frame["kind"] != "proportion").any():
        raise StatsInputError("likelihood='binomial' needs proportion metrics; "
                              f"{sorted(frame.loc[frame['kind'] != 'proportion', 'metric'].unique())} are not")
    if likelihood == "normal" or (frame["kind"] == "mean").any():
        if "sum_squares" not in frame.columns and (frame["kind"] == "mean").any():
            raise StatsInputError("mean metrics need column 'sum_squares'")
    if "sum_squares" in frame.columns:
        frame["sum_squares"] = pd.to_numeric(frame["sum_squares"], errors="coerce")

    blocks = []
    for (metric, dim), block in frame.groupby(["metric", "dimension"], sort=False):
        check_unique(block, ["segment", "variant"])
        for v in [v for v in block["variant"].unique() if v != control]:
            blocks.append((metric, dim, v, block))
    seeds = sampling.seeds(cfg.random_seed, len(blocks))
    fits = Fits(cfg)
    for (metric, dim, variant, block), seed in zip(blocks, seeds):
        base = {"metric": metric, "variant": variant, "dimension": dim}
        c = block[block["variant"] == control].set_index("segment")
        t = block[block["variant"] == variant].set_index("segment")
        segs = [s for s in c.index if s in t.index]
        missing = [s for s in list(c.index) + list(t.index) if s not in segs]
        for s in dict.fromkeys(missing):
            msg = messages.NO_UNITS_VARIANT if s in c.index else messages.NO_UNITS_CONTROL
            fits.rows.append(empty_row({**base, "segment": s}, msg))
        c, t = c.loc[segs], t.loc[segs]
        kind = c["kind"].iloc[0] if len(c) else "mean"
        lik = likelihood if likelihood != "auto" else ("binomial" if kind == "proportion" else "normal")
        nc, nt = c["n"].to_numpy(), t["n"].to_numpy()
        mc, mt, eff, se = segment_effects(c.reset_index(), t.reset_index(), difference)
        bad = np.where(nc == 0, messages.NO_UNITS_CONTROL, np.where(nt == 0, messages.NO_UNITS_VARIANT, ""))
        if lik == "normal":
            bad = np.where((bad == "") & ((nc < 2) | (nt < 2)), messages.TOO_FEW_UNITS, bad)
            bad = np.where((bad == "") & ~(se > 0), messages.ZERO_VARIANCE, bad)
            if difference == "relative":
                bad = np.where((bad == "") & (mc == 0), messages.ZERO_BASELINE, bad)
        for j in np.flatnonzero(bad != ""):
            fits.rows.append(empty_row({**base, "segment": segs[j]}, str(bad[j])))
        ok = np.flatnonzero(bad == "")
        if ok.size == 0:
            continue
        names = [segs[j] for j in ok]
        weights = (nc + nt)[ok] / (nc + nt)[ok].sum()
        model_kind, data, scale, scale_name = _model_data(c, t, ok, lik, eff, se, difference,
                                                          priors)
        if prior_only:
            return sampling.prior_draws(model_kind, len(ok), data, prior_draws, seed, "segment", names)
        idata, diag_cols = fits.sample((metric, dim, variant), model_kind, data, seed, "segment",
                                       names)
        for pname in ("mu", "tau"):
            x = posterior_draws(idata, pname) * scale
            lo, hi = np.quantile(x, [alpha / 2, 1 - alpha / 2])
            fits.hyper.append({**base, "parameter": pname, "scale": scale_name.replace(" / control sd", ""),
                          "mean": float(x.mean()), "sd": float(x.std()), "ci_lower": float(lo),
                          "ci_upper": float(hi)})
        if lik == "binomial":
            pc, pt = posterior_draws(idata, "p_control"), posterior_draws(idata, "p_variant")
            for i, s in enumerate(names):
                fits.rows.append({**base, "segment": s, **effect_stats(pc[:, i], pt[:, i], difference, alpha),
                             **diag_cols})
            row = effect_stats(pc @ weights, pt @ weights, difference, alpha)
        else:
            th = posterior_draws(idata, "theta") * scale
            for i, s in enumerate(names):
                j = ok[i]
                st = effect_stats(np.zeros(1), th[:, i], "absolute", alpha)
                st.update(control_mean=float(mc[j]), variant_mean=float(mt[j]))
                fits.rows.append({**base, "segment": s, **st, **diag_cols})
            # Population effect: segments weighted by units (and, for the lift, control means).
            w = weights * (mc[ok] if difference == "relative" else 1.0)
            st = effect_stats(np.zeros(1), th @ (w / w.sum()), "absolute", alpha)
            st.update(control_mean=float(np.sum(weights * mc[ok])), variant_mean=float(np.sum(weights * mt[ok])))
            row = st
        fits.rows.append({**base, "segment": OVERALL, **row, **diag_cols})
    return fits.finish("hierarchical", ["dimension", "segment"], difference, alpha, priors)


def _model_data(c, t, ok, lik, eff, se, difference, priors):
    """The model kind, its data, and the scale (and its name) of its effect parameter."""
    nc, nt = c["n"].to_numpy()[ok], t["n"].to_numpy()[ok]
    if lik == "binomial":
        yc, yt = c["sum"].to_numpy()[ok], t["sum"].to_numpy()[ok]
        pooled = (yc.sum() + 0.5) / (nc.sum() + 1.0)
        data = {"y_control": yc.astype("int64"), "n_control": nc.astype("int64"),
                "y_variant": yt.astype("int64"), "n_variant": nt.astype("int64"),
                "baseline_mu": float(np.log(pooled / (1 - pooled))),
                "baseline_sd": float(priors.baseline_sd), "mu_sd": float(priors.mu_sd),
                "tau_scale": float(priors.tau_scale)}
        return "hier_binomial", data, 1.0, "log odds ratio"
    if difference == "absolute":
        vc = variance(c.reset_index())[ok]
        scale = float(np.sqrt(np.sum((nc - 1) * vc) / max(np.sum(nc - 1), 1)))
        scale, scale_name = (scale if scale > 0 else 1.0), "absolute difference / control sd"
    else:
        scale, scale_name = 1.0, "relative lift"
    data = {"effect": eff[ok], "se": se[ok], "scale": scale, "mu_sd": float(priors.mu_sd),
            "tau_scale": float(priors.tau_scale)}
    return "hier_normal", data, scale, scale_name
