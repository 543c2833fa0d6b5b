"""A/A and power simulation on an experiment's own units, re-randomised inside the engine.

>>> sim = exp.simulate(replicates=200, lift={"conversion": 0.05}, seed=0)
>>> sim.summary()       # false-positive rate, p-value uniformity, power per metric x variant
>>> sim.plot_qq()

Each replicate ``r`` gives every unit a pseudo-variant drawn with the experiment's planned
weights from a hash of ``(unit id, seed, r)`` (:func:`hash_expr`), computed in the engine on
the compiler's unit table cross-joined with a table of ``replicates`` rows; the sufficient
statistics per replicate x pseudo-variant come back in one query (only
``replicates x arms x metrics`` rows leave the engine) and the analysis of all replicates is one
vectorised :func:`workbench.stats.analyze` call (``replicate`` is a grouping column, so CUPED
slopes and correction families are per replicate).

Injected lift ``l`` (power), applied to the pseudo-treatments' unit values in the same query:

- mean and ratio metrics: ``y -> (1 + l) y`` (ratios: the numerator); covariates unchanged;
- proportions: a hashed Bernoulli flip, so that the proportion becomes ``p (1 + l)`` exactly in
  expectation: for ``l > 0`` a unit with ``y = 0`` becomes 1 with probability
  ``q = l p / (1 - p)`` (``p`` the pooled proportion of the simulated units), for ``l < 0`` a
  unit with ``y = 1`` becomes 0 with probability ``-l``.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from workbench import format as fmt

# THE hash (modulo 2^31 - 1, equal on DuckDB, Spark and numpy) lives in workbench.data.hashing;
# salts: ASSIGN the pseudo-variant, FLIP the proportion flips.
from workbench.data.hashing import (  # noqa: F401  (hash_expr, hash_numpy: re-exported)
    PRIME,
    hash_columns,
    hash_expr,
    hash_numpy,
    thresholds,
)
from workbench.data.hashing import SIMULATION_ASSIGN as ASSIGN
from workbench.data.hashing import SIMULATION_FLIP as FLIP
from workbench.errors import ParameterError
from workbench.summary import Summary, with_notes

LIFTED = "@lift"     # suffix of the lifted copies of the metrics in the engine query
POOLS = ("all", "control")
COLUMNS = ("metric", "variant", "replicates", "lift", "false_positive_rate", "fpr_ci_lower",
           "fpr_ci_upper", "ks_p_value", "power")


def assign_numpy(unit, replicate, variants: Sequence[str], weights: Sequence[float],
                 seed: int = 0) -> np.ndarray:
    """The pseudo-variants :func:`simulate` gives (numpy, for tests)."""
    h = hash_numpy(unit, replicate, seed)
    return np.asarray(variants, object)[np.searchsorted(thresholds(weights), h, side="right")]


@dataclass(frozen=True)
class SimulationResult:
    """A/A and power simulation of an experiment's readout on its own units.

    Attributes
    ----------
    experiment_id, method : str
    alpha : float
    correction : str or None
        Multiple-testing correction applied within each replicate.
    difference : str
    replicates : int
        Re-randomisations asked for.
    seed : int
    pool : str
        'all' (every unit, its own arm ignored) or 'control' (control units only).
    lift : dict
        Metric -> injected relative lift (metrics without one have no power).
    table : DataFrame
        One row per metric x treatment variant: ``metric, variant, replicates, lift,
        false_positive_rate, fpr_ci_lower, fpr_ci_upper, ks_p_value, power`` (replicates:
        those computed; the Wilson interval at ``1 - alpha``; the KS test of the null
        p-values against Uniform(0, 1); power: share of lifted replicates significant in the
        lift's direction), then ``power_ci_lower, power_ci_upper, failed``.
    runs : DataFrame
        One row per metric x variant x replicate: ``effect, p_value`` (null) and
        ``lifted_effect, lifted_p_value``, ``error_message``.
    stats : DataFrame
        The sufficient statistics per replicate x pseudo-variant (null, then the lifted
        metrics named ``<metric>@lift``): what left the engine.
    notes : tuple of str
    """

    experiment_id: str
    method: str
    alpha: float
    correction: str | None
    difference: str
    replicates: int
    seed: int
    pool: str
    lift: dict
    table: pd.DataFrame
    runs: pd.DataFrame = field(repr=False)
    stats: pd.DataFrame = field(repr=False)
    notes: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        """The summary table (a copy), for logging (record table ``simulation``)."""
        return self.table.copy()

    def summary_frame(self) -> pd.DataFrame:
        """The table in words: rates as percentages, the interval, p-values."""
        t = self.table
        return pd.DataFrame({
            "metric": t["metric"], "variant": t["variant"],
            "replicates": t["replicates"].map(fmt.count),
            "false positives": t["false_positive_rate"].map(fmt.percent),
            f"{1 - self.alpha:.0%} interval": [
                f"[{fmt.percent(lo)}, {fmt.percent(hi)}]"
                for lo, hi in zip(t["fpr_ci_lower"], t["fpr_ci_upper"])],
            "uniformity (KS p)": t["ks_p_value"].map(fmt.p_value),
            "lift": t["lift"].map(lambda v: fmt.percent(v, signed=True) if v else "-"),
            "power": t["power"].map(fmt.percent),
        }).reset_index(drop=True)

    def _headline(self) -> str:
        return (f"{self.experiment_id}: {self.replicates} re-randomisations ({self.pool} units, "
                f"{self.method}, alpha {fmt.number(self.alpha)}, "
                f"{fmt.correction_label(self.correction, self._family())}); expected false-"
                f"positive rate {fmt.percent(self.alpha)}")

    def _family(self) -> int:
        return int(len(self.table))

    def summary(self) -> Summary:
        """A headline and :meth:`summary_frame`, as text and HTML."""
        frame = self.summary_frame()
        text = self._headline() + "\n" + frame.to_string(index=False)
        rich = (f"<p><b>{html.escape(self._headline())}</b></p>"
                + frame.to_html(index=False))
        return with_notes(text, rich, self.notes)

    def __str__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def plot_qq(self, ax=None, metric: str | None = None, **kw):
        """QQ plot of the null p-values against Uniform(0, 1)
        (:func:`workbench.plots.simulation.plot_qq`)."""
        from workbench.plots.simulation import plot_qq

        return plot_qq(self, ax=ax, metric=metric, **kw)


def _lifts(lift, names: list[str]) -> dict[str, float]:
    if isinstance(lift, Mapping):
        bad = [k for k in lift if k not in names]
        if bad:
            raise ParameterError(f"lift names {bad}, not a simulated metric (metrics: {names})")
        out = {str(k): v for k, v in lift.items()}
    else:
        out = {n: lift for n in names}
    for k, v in out.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) \
                or v <= -1:
            raise ParameterError(f"lift for {k!r} must be a number > -1 (a relative lift), "
                                 f"got {v!r}")
    return {k: float(v) for k, v in out.items() if v != 0}


def _unit_ids(t):
    """An integer id per unit: ``user_id`` if it is an integer, else a row number ordered by
    the id (unique) or, without one, by every value column (tied rows are identical, so which
    one gets which number does not change any statistic)."""
    import ibis

    if "user_id" in t.columns and t.user_id.type().is_integer():
        return t.user_id
    keys = ["user_id"] if "user_id" in t.columns else \
        [c for c in t.columns if "__" in c] + ["variant"]
    return ibis.row_number().over(order_by=[t[k] for k in keys])


def simulate(experiment, replicates: int = 200, lift: float | Mapping[str, float] = 0.0, *,
             method: str = "frequentist", alpha: float = 0.05, seed: int = 0,
             metrics: Sequence[str] | str | None = None, correction: str | None = None,
             difference: str = "relative", pool: str = "all",
             **stats_options) -> SimulationResult:
    """See :meth:`workbench.readout.experiment.Experiment.simulate`."""
    import ibis

    from workbench.data.sources import execute
    from workbench.metrics.compiler import _column
    from workbench.stats import analyze as stats_analyze
    from workbench.stats.power import calibration, wilson_interval

    if isinstance(replicates, bool) or not isinstance(replicates, int | np.integer) \
            or not 2 <= replicates <= 100_000:
        raise ParameterError(f"replicates must be an integer in [2, 100000], got {replicates!r}")
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ParameterError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ParameterError(f"seed must be an integer, got {seed!r}")
    if pool not in POOLS:
        raise ParameterError(f"pool must be one of {POOLS}, got {pool!r}")
    names = [m.name for m in experiment.metrics]
    if metrics is not None:
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        bad = [m for m in metrics if m not in names]
        if bad:
            raise ParameterError(f"metrics {bad} are not metrics of the experiment ({names})")
        names = metrics
    defs = [m for m in experiment.metrics if m.name in names]
    lifts = _lifts(lift, names)
    window = experiment.window
    control, variants, weights = window.control, list(window.variants), list(window.planned_weights)
    if len(variants) < 2:
        raise ParameterError("simulate needs at least two planned variants")

    compiler = experiment.compiler.with_metrics(defs)
    units = compiler.unit_values()
    if pool == "control":
        units = units.filter(units.variant == control)
    units = units.mutate(__unit=_unit_ids(units))
    reps = ibis.memtable({"replicate": np.arange(int(replicates), dtype=np.int64)})
    # both draws as columns, one SELECT per hash round (hash_expr inlined is megabytes of SQL)
    j = hash_columns(units.drop("variant").cross_join(reps), "__unit",
                     {"__h": ("replicate", seed, ASSIGN), "__flip": ("replicate", seed, FLIP)})
    h = j["__h"]
    cut = thresholds(weights)
    arm = ibis.cases(*[(h < int(c), v) for c, v in zip(cut[:-1], variants[:-1])],
                     else_=variants[-1])
    j = j.mutate(variant=arm)
    treated = j.variant != control

    lifted, cols, notes = [], {}, []
    base = experiment.sufficient_stats()
    for m in defs:
        if m.name not in lifts:
            continue
        l_ = lifts[m.name]
        lm = replace(m, name=m.name + LIFTED)
        lifted.append(lm)
        for tag, _, _ in m.parts:
            cols[_column(lm.name, tag)] = j[_column(m.name, tag)]
        y = j[_column(m.name, "y")]
        if m.kind == "proportion":
            rows = base[base["metric"] == m.name]
            if pool == "control":
                rows = rows[rows["variant"] == control]
            p = float(rows["sum"].sum() / rows["n"].sum()) if rows["n"].sum() else np.nan
            q = -l_ if l_ < 0 else (l_ * p / (1 - p) if 0 < p < 1 else np.inf)
            if not q <= 1:
                raise ParameterError(f"lift {l_:g} for proportion {m.name!r} (pooled p = "
                                     f"{p:.4g}) would need a proportion above 1")
            flip = j["__flip"] < int(round(q * PRIME))
            src, dst = (0.0, 1.0) if l_ > 0 else (1.0, 0.0)
            cols[_column(lm.name, "y")] = ibis.ifelse(treated & flip & (y == src), dst, y)
        else:
            cols[_column(lm.name, "y")] = ibis.ifelse(treated, y * (1.0 + l_), y)
    if cols:
        j = j.mutate(**cols)
    every = compiler.with_metrics(defs + lifted)
    expr = j.group_by("replicate", "variant").aggregate(**every._statistics(j, defs + lifted))
    wide = execute(expr)
    stats = every._to_long(wide, ["variant", "replicate"])
    # a pseudo-variant no unit drew in a replicate gets an empty row (the engine says so)
    stats = _complete(stats, variants)
    kw = dict(control=control, method=method, alpha=alpha, difference=difference,
              correction=correction, warn=False, **stats_options)
    null_stats = stats[~stats["metric"].str.endswith(LIFTED)]
    null = stats_analyze(null_stats, **kw).to_frame()
    runs = null[["metric", "variant", "replicate", "effect", "error_message"]].copy()
    runs["p_value"] = _p(null, method, correction)
    runs["lifted_effect"] = np.nan
    runs["lifted_p_value"] = np.nan
    if lifted:
        lift_stats = stats[stats["metric"].str.endswith(LIFTED)].copy()
        lift_stats["metric"] = lift_stats["metric"].str[:-len(LIFTED)]
        lr = stats_analyze(lift_stats, **kw).to_frame()
        lr = lr.assign(lifted_p_value=_p(lr, method, correction))[
            ["metric", "variant", "replicate", "effect", "lifted_p_value"]].rename(
            columns={"effect": "lifted_effect"})
        runs = runs.drop(columns=["lifted_effect", "lifted_p_value"]).merge(
            lr, on=["metric", "variant", "replicate"], how="left")
    rows = []
    for (metric, variant), g in runs.groupby(["metric", "variant"], sort=False):
        cal = calibration(g["p_value"].to_numpy(float), alpha)
        l_ = lifts.get(metric, 0.0)
        power = lo = hi = np.nan
        if l_:
            lp = g["lifted_p_value"].to_numpy(float)
            keep = np.isfinite(lp)
            hit = keep & (lp < alpha) & (np.sign(g["lifted_effect"].to_numpy(float)) == np.sign(l_))
            if keep.any():
                power = hit.sum() / keep.sum()
                lo, hi = (float(v) for v in wilson_interval(hit.sum(), keep.sum(), alpha))
        rows.append({"metric": metric, "variant": variant, **cal, "lift": l_, "power": power,
                     "power_ci_lower": lo, "power_ci_upper": hi,
                     "failed": int(replicates) - cal["replicates"]})
    table = pd.DataFrame(rows)
    table = table[list(COLUMNS) + ["power_ci_lower", "power_ci_upper", "failed"]]
    if method == "sequential":
        notes.append("sequential p-values are always valid, hence conservative at one look: "
                     "a false-positive rate below alpha and a low KS p-value are expected")
    if method == "bayesian":
        notes.append("bayesian: the 'p-value' is 2 min(chance to win, 1 - chance to win); with a "
                     "proper prior it is not uniform under the null")
    if (table["failed"] > 0).any():
        notes.append("some replicates could not be computed (see runs.error_message); the rates "
                     "are over the computed ones")
    return SimulationResult(
        experiment_id=experiment.experiment_id, method=method, alpha=float(alpha),
        correction=correction, difference=difference, replicates=int(replicates),
        seed=int(seed), pool=pool, lift=lifts, table=table, runs=runs.reset_index(drop=True),
        stats=stats, notes=tuple(notes))


def _p(frame: pd.DataFrame, method: str, correction: str | None) -> np.ndarray:
    if method == "bayesian":
        c = frame["chance_to_win"].to_numpy(float)
        return 2 * np.minimum(c, 1 - c)
    col = "p_value_adjusted" if correction else "p_value"
    return frame[col].to_numpy(float)


def _complete(stats: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Rows of zeros for the planned variants that no unit drew in a replicate."""
    keys = stats[["metric", "kind", "replicate"]].drop_duplicates()
    full = keys.merge(pd.DataFrame({"variant": variants}), how="cross")
    out = full.merge(stats, on=["metric", "kind", "replicate", "variant"], how="left")
    if len(out) == len(stats):
        return stats
    value = [c for c in stats.columns if c not in ("metric", "variant", "kind", "replicate")]
    out[value] = out[value].fillna(0.0)
    out["n"] = out["n"].astype("int64")
    return out[stats.columns].sort_values(["metric", "replicate"], kind="stable") \
        .reset_index(drop=True)
