"""Regression adjustment with several covariates (workbench.stats.regression) against statsmodels
OLS on the unit rows, and a seeded calibration simulation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from workbench import messages
from workbench.stats import analyze
from workbench.stats.regression import columns


def unit_data(n=(400, 380), seed=1, effect=0.5, ratio=False, third_arm=False):
    rng = np.random.default_rng(seed)
    arms = ["control", "treatment"] + (["t2"] if third_arm else [])
    sizes = list(n) + ([350] if third_arm else [])
    frames = []
    for v, m in zip(arms, sizes):
        x1 = rng.normal(10, 3, m)
        x2 = rng.gamma(2.0, 2.0, m)
        device = rng.choice(["ios", "android", "web"], m, p=[0.5, 0.3, 0.2])
        lift = effect * (v != "control") * (1 + (v == "t2"))
        y = 2 + lift + 0.8 * x1 - 0.5 * x2 + 1.5 * (device == "ios") + rng.normal(0, 2 + (v == "treatment"), m)
        f = pd.DataFrame({"variant": v, "y": y, "x1": x1, "x2": x2, "device": device})
        if ratio:
            f["d"] = rng.poisson(3, m) + 1.0
            f["y"] = f["d"] * (1 + 0.1 * x1 + rng.normal(0, 1, m)) + lift * f["d"] * 0.1
        frames.append(f)
    df = pd.concat(frames, ignore_index=True)
    df["dev_ios"] = (df["device"] == "ios").astype(float)
    df["dev_web"] = (df["device"] == "web").astype(float)
    return df


def stats_of(df, covs, kind="mean", metric="m", d=None):
    """The sufficient statistics of the schema, computed with numpy on the unit rows."""
    rows = []
    for v, g in df.groupby("variant", sort=False):
        y = g["y"].to_numpy()
        x = g[covs].to_numpy()
        r = {"metric": metric, "variant": v, "kind": kind, "n": len(g), "sum": y.sum(),
             "sum_squares": (y * y).sum(), "covariates": ",".join(covs)}
        for j in range(len(covs)):
            r[f"cov_sum__{j}"] = x[:, j].sum()
            r[f"cov_y__{j}"] = (y * x[:, j]).sum()
            for k in range(j, len(covs)):
                r[f"cov_prod__{j}__{k}"] = (x[:, j] * x[:, k]).sum()
        if d is not None:
            dv = g[d].to_numpy()
            r |= {"den_sum": dv.sum(), "den_sum_squares": (dv * dv).sum(),
                  "sum_product": (y * dv).sum()}
            for j in range(len(covs)):
                r[f"cov_d__{j}"] = (dv * x[:, j]).sum()
        rows.append(r)
    return pd.DataFrame(rows)


COVS = ["x1", "x2", "dev_ios", "dev_web"]


def test_columns_named_in_schema_order():
    assert columns(2, ratio=True) == ["cov_sum__0", "cov_sum__1", "cov_prod__0__0",
                                      "cov_prod__0__1", "cov_prod__1__1", "cov_y__0",
                                      "cov_y__1", "cov_d__0", "cov_d__1"]


@pytest.mark.parametrize("third_arm", [False, True])
def test_mean_metric_equals_statsmodels_ols(third_arm):
    df = unit_data(third_arm=third_arm)
    res = analyze(stats_of(df, COVS), difference="absolute", warn=False).table
    fit = smf.ols("y ~ C(variant, Treatment('control')) + x1 + x2 + C(device, Treatment('android'))",
                  df).fit()
    for v in res["variant"]:
        row = res.set_index("variant").loc[v]
        coef = fit.params[f"C(variant, Treatment('control'))[T.{v}]"]
        assert row["effect"] == pytest.approx(coef, abs=1e-8)
        assert row["cuped"]
        assert row["covariates"] == "x1, x2, dev_ios, dev_web"
        # SE: per-arm residual variance with the pooled slopes (from scratch on unit rows)
        beta = fit.params[["x1", "x2", "C(device, Treatment('android'))[T.ios]",
                           "C(device, Treatment('android'))[T.web]"]].to_numpy()
        resid = df["y"] - df[COVS].to_numpy() @ beta
        var = resid.groupby(df["variant"]).var(ddof=1) / df.groupby("variant").size()
        assert row["se"] == pytest.approx(np.sqrt(var[v] + var["control"]), rel=1e-9)
        # close to statsmodels' robust (HC2) SE, which also lets variances differ by arm
        hc = fit.get_robustcov_results("HC2").bse[list(fit.params.index).index(
            f"C(variant, Treatment('control'))[T.{v}]")]
        assert row["se"] == pytest.approx(hc, rel=0.03)
        # variance reduction: 1 - Var(adjusted) / Var(unadjusted), from the unit rows
        raw = df.groupby("variant")["y"].var(ddof=1) / df.groupby("variant").size()
        assert row["variance_reduction"] == pytest.approx(
            1 - (var[v] + var["control"]) / (raw[v] + raw["control"]), rel=1e-9)


def test_relative_lift_by_delta_method():
    df = unit_data()
    tab = analyze(stats_of(df, COVS), difference="relative", warn=False).table.iloc[0]
    fit = smf.ols("y ~ C(variant) + x1 + x2 + dev_ios + dev_web", df).fit()
    beta = fit.params[COVS].to_numpy()
    mu = df[COVS].mean().to_numpy()
    adj = {v: g["y"].mean() - (g[COVS].mean().to_numpy() - mu) @ beta
           for v, g in df.groupby("variant")}
    resid = df["y"] - df[COVS].to_numpy() @ beta
    var = resid.groupby(df["variant"]).var(ddof=1) / df.groupby("variant").size()
    mt, mc = adj["treatment"], adj["control"]
    assert tab["effect"] == pytest.approx(mt / mc - 1, rel=1e-9)
    assert tab["se"] == pytest.approx(
        np.sqrt(var["treatment"] / mc**2 + mt**2 * var["control"] / mc**4), rel=1e-9)


def test_ratio_metric_equals_ols_on_linearised_outcome():
    df = unit_data(ratio=True)
    tab = analyze(stats_of(df, COVS, kind="ratio", d="d"), difference="absolute",
                  warn=False).table.iloc[0]
    # z = (y - R_v d) / dbar_v with each arm's own ratio and mean denominator (the code's choice)
    g = df.groupby("variant")
    r = g["y"].sum() / g["d"].sum()
    dbar = g["d"].mean()
    df["z"] = (df["y"] - df["variant"].map(r) * df["d"]) / df["variant"].map(dbar)
    fit = smf.ols("z ~ C(variant) + x1 + x2 + dev_ios + dev_web", df).fit()
    raw = r["treatment"] - r["control"]
    assert tab["effect"] == pytest.approx(raw + fit.params["C(variant)[T.treatment]"], abs=1e-8)
    resid = df["z"] - df[COVS].to_numpy() @ fit.params[COVS].to_numpy()
    var = resid.groupby(df["variant"]).var(ddof=1) / g.size()
    assert tab["se"] == pytest.approx(np.sqrt(var.sum()), rel=1e-9)
    assert 0 < tab["variance_reduction"] < 1


def test_single_covariate_matches_cuped():
    df = unit_data()
    st = stats_of(df, ["x1"])
    cuped = st.drop(columns=[c for c in st.columns if c.startswith("cov") or c == "covariates"])
    cuped = cuped.assign(pre_sum=st["cov_sum__0"], pre_sum_squares=st["cov_prod__0__0"],
                         pre_sum_product=st["cov_y__0"])
    a = analyze(st, warn=False).table.iloc[0]
    b = analyze(cuped, warn=False).table.iloc[0]
    assert a["effect"] == pytest.approx(b["effect"], rel=1e-10)
    assert a["se"] == pytest.approx(b["se"], rel=1e-10)
    # the single-covariate CUPED rows get variance_reduction too
    assert b["variance_reduction"] == pytest.approx(a["variance_reduction"], rel=1e-8)
    assert b["variance_reduction"] > 0


def test_collinear_covariate_dropped_with_note():
    df = unit_data()
    df["x3"] = 2 * df["x1"] - df["x2"]  # exactly collinear
    df["const"] = 1.0
    res = analyze(stats_of(df, ["x1", "x2", "x3", "const", "dev_ios"]), difference="absolute",
                  warn=False).table.iloc[0]
    fit = smf.ols("y ~ C(variant) + x1 + x2 + dev_ios", df).fit()
    assert res["effect"] == pytest.approx(fit.params["C(variant)[T.treatment]"], abs=1e-8)
    assert res["adjustment_note"] == messages.ADJUST_COLLINEAR.format(names="x3, const")
    assert res["covariates"] == "x1, x2, dev_ios"


def test_tiny_arm_falls_back_unadjusted():
    df = unit_data()
    df = pd.concat([df[df["variant"] == "control"], df[df["variant"] == "treatment"].head(4)])
    res = analyze(stats_of(df, COVS), difference="absolute", warn=False).table.iloc[0]
    g = df.groupby("variant")["y"]
    assert not res["cuped"]
    assert np.isnan(res["variance_reduction"])
    assert res["effect"] == pytest.approx(g.mean()["treatment"] - g.mean()["control"], rel=1e-12)
    assert res["adjustment_note"] == messages.ADJUST_TINY_ARM.format(n=4, k=4)
    assert res["error_message"] == ""


def test_metric_without_covariates_untouched_in_same_table():
    df = unit_data()
    st = stats_of(df, COVS)
    plain = stats_of(df, COVS, metric="plain").drop(
        columns=[c for c in st.columns if c.startswith("cov")])
    both = pd.concat([st, plain], ignore_index=True)
    tab = analyze(both, difference="absolute", warn=False).table.set_index("metric")
    g = df.groupby("variant")["y"].mean()
    assert not tab.loc["plain", "cuped"]
    assert tab.loc["plain", "effect"] == pytest.approx(g["treatment"] - g["control"], rel=1e-12)
    assert tab.loc["m", "cuped"]


@pytest.mark.slow
def test_calibration_coverage_size_and_variance_reduction():
    """Seeded simulation with known truth: y = 1 + tau T + x'b + e, corr known, so the true
    variance reduction is R^2 = b'Sigma b / (b'Sigma b + sigma^2)."""
    rng = np.random.default_rng(20261202)
    reps, n, k = 1500, 200, 3
    b = np.array([1.0, 0.5, -0.5])
    sigma = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.0]])
    r2 = b @ sigma @ b / (b @ sigma @ b + 1.0)
    chol = np.linalg.cholesky(sigma)
    rows = []
    for i in range(reps):
        for v in ("control", "treatment"):
            x = rng.standard_normal((n, k)) @ chol.T
            x[:, 2] = (x[:, 2] > 0).astype(float)  # one binary attribute
            y = 1 + x @ b + rng.standard_normal(n)
            r = {"metric": f"m{i}", "variant": v, "kind": "mean", "n": n, "sum": y.sum(),
                 "sum_squares": (y * y).sum(), "covariates": "a,b,c"}
            for j in range(k):
                r[f"cov_sum__{j}"] = x[:, j].sum()
                r[f"cov_y__{j}"] = (y * x[:, j]).sum()
                for m in range(j, k):
                    r[f"cov_prod__{j}__{m}"] = (x[:, j] * x[:, m]).sum()
            rows.append(r)
    tab = analyze(pd.DataFrame(rows), difference="absolute", warn=False).table
    assert tab["cuped"].all()
    size = (tab["p_value"] < 0.05).mean()
    se_mc = np.sqrt(0.05 * 0.95 / reps)
    assert abs(size - 0.05) < 3.5 * se_mc
    coverage = ((tab["ci_lower"] <= 0) & (tab["ci_upper"] >= 0)).mean()
    assert abs(coverage - 0.95) < 3.5 * se_mc
    # realised SD of the effect matches the reported SE
    assert tab["effect"].std() == pytest.approx(tab["se"].mean(), rel=0.06)
    # true variance reduction (binary c: Var(c)=1/4, so recompute R^2 for the actual design)
    xs = rng.standard_normal((200_000, k)) @ chol.T
    xs[:, 2] = (xs[:, 2] > 0)
    true_vr = np.var(xs @ b) / (np.var(xs @ b) + 1.0)
    assert tab["variance_reduction"].mean() == pytest.approx(true_vr, abs=0.02)
    assert r2 > 0  # the Gaussian-attribute value, for the record


def test_metrics_with_different_numbers_of_covariates_in_one_table():
    a = stats_of(unit_data(), COVS)
    df = unit_data(ratio=True)
    b = stats_of(df, COVS[:3], kind="ratio", d="d", metric="r")
    alone = analyze(b, difference="absolute", warn=False).table.iloc[0]
    mixed = analyze(pd.concat([a, b], ignore_index=True), difference="absolute",
                    warn=False).table.set_index("metric").loc["r"]
    assert mixed["cuped"] and mixed["adjustment_note"] == ""
    assert mixed["effect"] == pytest.approx(alone["effect"], rel=1e-12)
    assert mixed["se"] == pytest.approx(alone["se"], rel=1e-12)
