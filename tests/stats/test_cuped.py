"""CUPED on sufficient statistics vs the ANCOVA regression ``y ~ variant + x`` (statsmodels OLS)
and, for ratio metrics, the unit-level linearisation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from workbench.stats import analyze, cuped, moments


def _mean_row(metric, variant, y, **extra):
    return {"metric": metric, "variant": variant, "kind": "mean", "n": len(y), "sum": y.sum(),
            "sum_squares": (y**2).sum(), **extra}


def _cuped_row(metric, variant, y, x, kind="mean", **extra):
    return {"metric": metric, "variant": variant, "kind": kind, "n": len(y), "sum": y.sum(),
            "sum_squares": (y**2).sum(), "pre_sum": x.sum(), "pre_sum_squares": (x**2).sum(),
            "pre_sum_product": (x * y).sum(), **extra}


def _units(seed, arms=("control", "a", "b"), lift=0.3, binary=False):
    rng = np.random.default_rng(seed)
    out = []
    for i, v in enumerate(arms):
        n = 400 + 60 * i
        x = rng.normal(10, 3, n)
        if binary:
            y = (rng.random(n) < 0.1 + 0.02 * (x - 10) / 3 + 0.02 * i).astype(float)
        else:
            y = 2 + 0.8 * x + rng.normal(0, 2, n) + lift * i
        out.append(pd.DataFrame({"variant": v, "x": x, "y": y}))
    return pd.concat(out, ignore_index=True)


def test_cuped_equals_ancova_regression():
    rng = np.random.default_rng(3)
    rows, ys, xs, ts = [], [], [], []
    for i, v in enumerate(["control", "a", "b"]):
        n = 300 + 50 * i
        x = rng.normal(10, 3, n)
        y = 2 + 0.8 * x + rng.normal(0, 2, n) + 0.3 * i
        rows.append(_mean_row("m", v, y, pre_sum=x.sum(), pre_sum_squares=(x**2).sum(),
                              pre_sum_product=(x * y).sum()))
        ys.append(y), xs.append(x), ts.append(np.full(n, i))
    res = analyze(pd.DataFrame(rows), difference="absolute").to_frame()
    y, x, t = np.concatenate(ys), np.concatenate(xs), np.concatenate(ts)
    design = np.column_stack([np.ones_like(y), t == 1, t == 2, x]).astype(float)
    ols = sm.OLS(y, design).fit(cov_type="HC0")
    assert res.cuped.all()
    assert res.effect.to_numpy() == pytest.approx(ols.params[1:3], rel=1e-8)
    assert res.cuped_theta.iloc[0] == pytest.approx(ols.params[3], rel=1e-8)
    # the CUPED variance treats theta as known: close to the robust regression's
    assert res.se.to_numpy() == pytest.approx(ols.bse[1:3], rel=0.02)


def test_ratio_cuped_matches_unit_level_linearisation():
    rng = np.random.default_rng(5)
    rows, unit = [], {}
    for i, v in enumerate(["control", "a"]):
        n = 2000
        w = rng.poisson(3, n) + 1.0
        x = w * 2 + rng.normal(0, 2, n)
        d = w + rng.poisson(1, n)
        y = d * (2 + 0.1 * i) + 0.6 * (x - 2 * w) + rng.normal(0, 1.5, n)
        rows.append({"metric": "r", "variant": v, "kind": "ratio", "n": n, "sum": y.sum(),
                     "sum_squares": (y**2).sum(), "den_sum": d.sum(),
                     "den_sum_squares": (d**2).sum(), "sum_product": (y * d).sum(),
                     "pre_sum": x.sum(), "pre_sum_squares": (x**2).sum(),
                     "pre_sum_product": (x * y).sum(), "pre_den_sum": w.sum(),
                     "pre_den_sum_squares": (w**2).sum(), "pre_den_sum_product": (x * w).sum(),
                     "den_pre_sum_product": (d * x).sum(), "sum_pre_den_product": (y * w).sum(),
                     "den_pre_den_sum_product": (d * w).sum()})
        unit[v] = (y, d, x, w)
    res = analyze(pd.DataFrame(rows), difference="absolute").to_frame().iloc[0]
    # unit-level: linearised values, pooled within-arm slope, adjusted ratios
    zs, us, rs, rxs = {}, {}, {}, {}
    for v, (y, d, x, w) in unit.items():
        rs[v], rxs[v] = y.sum() / d.sum(), x.sum() / w.sum()
        zs[v] = (y - rs[v] * d) / d.mean()
        us[v] = (x - rxs[v] * w) / w.mean()
    theta = sum(np.sum((zs[v] - zs[v].mean()) * (us[v] - us[v].mean())) for v in unit) / sum(
        np.sum((us[v] - us[v].mean()) ** 2) for v in unit)
    eff = (rs["a"] - theta * rxs["a"]) - (rs["control"] - theta * rxs["control"])
    var = sum(np.var(zs[v] - theta * us[v], ddof=1) / len(zs[v]) for v in unit)
    assert res.cuped and res.cuped_theta == pytest.approx(theta, rel=1e-8)
    assert res.effect == pytest.approx(eff, rel=1e-8)
    assert res.se == pytest.approx(np.sqrt(var), rel=1e-8)
    plain = analyze(pd.DataFrame(rows), difference="absolute", cuped=False).to_frame().iloc[0]
    assert res.se < 0.8 * plain.se


@pytest.mark.parametrize("binary", [False, True])
def test_cuped_effect_and_se_match_ols_formula_per_segment(binary):
    rows, units = [], {}
    for seg, seed in (("mobile", 1), ("desktop", 2)):
        u = _units(seed, binary=binary)
        units[seg] = u
        kind = "proportion" if binary else "mean"
        rows += [_cuped_row("m", v, g.y.to_numpy(), g.x.to_numpy(), kind=kind, dimension="device",
                            segment=seg) for v, g in u.groupby("variant", sort=False)]
    res = analyze(pd.DataFrame(rows), difference="absolute").to_frame()
    for seg, u in units.items():
        # theta is pooled within each block (here: each segment), as one regression per segment
        ols = smf.ols("y ~ C(variant, Treatment('control')) + x", data=u).fit(cov_type="HC0")
        got = res[res.segment == seg].set_index("variant")
        assert got.cuped.all()
        assert got.loc["a", "cuped_theta"] == pytest.approx(ols.params["x"], rel=1e-8)
        for v in ("a", "b"):
            name = f"C(variant, Treatment('control'))[T.{v}]"
            assert got.loc[v, "effect"] == pytest.approx(ols.params[name], rel=1e-8)
            # the CUPED variance treats theta as known: close to the robust regression's
            assert got.loc[v, "se"] == pytest.approx(ols.bse[name], rel=0.03)
    # relative effects are the adjusted difference over the control's (unadjusted-centre) mean
    rel = analyze(pd.DataFrame(rows), difference="relative").to_frame()
    assert rel.cuped.all() and np.isfinite(rel.effect).all()


def test_adjust_directly_against_numpy():
    u = _units(7)
    frame = pd.DataFrame([_cuped_row("m", v, g.y.to_numpy(), g.x.to_numpy())
                          for v, g in u.groupby("variant", sort=False)])
    block = np.zeros(len(frame), int)
    use = cuped.available(frame, block, 1)
    assert use.all()
    out = cuped.adjust(frame, moments.basic_moments(frame), block, 1, use)
    # pooled within-variant slope, adjusted means, and the variance of y - theta x per unit
    cxy = sum(np.sum((g.x - g.x.mean()) * (g.y - g.y.mean())) for _, g in u.groupby("variant"))
    cxx = sum(np.sum((g.x - g.x.mean()) ** 2) for _, g in u.groupby("variant"))
    theta = cxy / cxx
    assert out["used"].all() and out["theta"] == pytest.approx(np.full(3, theta), rel=1e-10)
    for i, (_, g) in enumerate(u.groupby("variant", sort=False)):
        adj = g.y.mean() - theta * (g.x.mean() - u.x.mean())
        assert out["mean"][i] == pytest.approx(adj, rel=1e-10)
        assert out["var_unit"][i] == pytest.approx(np.var(g.y - theta * g.x, ddof=1), rel=1e-8)
    ols = sm.OLS(u.y, np.column_stack([np.ones(len(u)), u.variant == "a", u.variant == "b",
                                       u.x]).astype(float)).fit()
    assert out["mean"][1] - out["mean"][0] == pytest.approx(ols.params.iloc[1], rel=1e-8)


def _ancova_two_arms(u, arm):
    """statsmodels ANCOVA on the control and one arm's units: (effect, slope)."""
    sub = u[u.variant.isin(["control", arm])]
    ols = smf.ols("y ~ C(variant, Treatment('control')) + x", data=sub).fit()
    return ols.params[f"C(variant, Treatment('control'))[T.{arm}]"], ols.params["x"]


def test_row_missing_a_covariate_leaves_the_other_rows_adjusted():
    # issue 17: one arm lacking its cross product used to switch CUPED off for the whole metric
    u = _units(3)
    rows = [_cuped_row("m", v, g.y.to_numpy(), g.x.to_numpy())
            for v, g in u.groupby("variant", sort=False)]
    rows[2]["pre_sum_product"] = np.nan  # arm b lacks the cross product
    frame = pd.DataFrame(rows)
    assert cuped.available(frame).tolist() == [True, True, False]
    res = analyze(frame, difference="absolute").to_frame().set_index("variant")
    plain = analyze(frame.drop(columns=["pre_sum", "pre_sum_squares", "pre_sum_product"]),
                    difference="absolute").to_frame().set_index("variant")
    # b: compared unadjusted, and its cuped column says so; a: adjusted as ANCOVA on control + a
    assert not res.loc["b", "cuped"] and np.isnan(res.loc["b", "cuped_theta"])
    assert res.loc["b", "effect"] == pytest.approx(plain.loc["b", "effect"], rel=1e-12)
    assert res.loc["b", "se"] == pytest.approx(plain.loc["b", "se"], rel=1e-12)
    effect, slope = _ancova_two_arms(u, "a")
    assert res.loc["a", "cuped"] and res.loc["a", "cuped_theta"] == pytest.approx(slope, rel=1e-8)
    assert res.loc["a", "effect"] == pytest.approx(effect, rel=1e-8)
    assert (res["error_message"] == "").all()
    # a constant covariate has no slope: the rows are left unadjusted too
    u = _units(3)
    const = pd.DataFrame([_cuped_row("m", v, g.y.to_numpy(), np.ones(len(g)))
                          for v, g in u.groupby("variant", sort=False)])
    out = cuped.adjust(const, moments.basic_moments(const), np.zeros(3, int), 1, np.ones(3, bool))
    assert not out["used"].any() and np.isnan(out["theta"]).all()
