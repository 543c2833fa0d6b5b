"""Per-variant moments from sufficient statistics vs raw-data numpy and statsmodels' delta method."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats._delta_method import NonlinearDeltaCov

from workbench.stats import analyze, moments


def _mean_row(metric, variant, y, **extra):
    return {"metric": metric, "variant": variant, "kind": "mean", "n": len(y), "sum": y.sum(),
            "sum_squares": (y**2).sum(), **extra}


def _ratio_row(metric, variant, y, d):
    return {"metric": metric, "variant": variant, "kind": "ratio", "n": len(y), "sum": y.sum(),
            "sum_squares": (y**2).sum(), "den_sum": d.sum(), "den_sum_squares": (d**2).sum(),
            "sum_product": (y * d).sum()}


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(11)
    arms = {"control": (50, 1.0, 12.0, 400), "a": (60, 1.4, 13.0, 350), "b": (70, 0.8, 11.0, 500)}
    data = {}
    for name, (_, mu_shift, sd, n) in arms.items():
        y = rng.gamma(2.0, 3.0, n) * mu_shift + rng.normal(0, sd / 4, n)
        d = rng.poisson(3, n) + 1.0
        num = d * (2.0 + mu_shift) + rng.normal(0, 2, n)
        data[name] = (y, num, d)
    return data


def _frame(raw):
    rows = []
    for v, (y, num, d) in raw.items():
        rows.append(_mean_row("m", v, y))
        rows.append(_ratio_row("r", v, num, d))
    return pd.DataFrame(rows)


def test_ratio_delta_method_matches_statsmodels_nonlinear_delta(raw):
    res = analyze(_frame(raw), difference="absolute").to_frame()
    row = res[(res.metric == "r") & (res.variant == "b")].iloc[0]
    ses = []
    for v in ("b", "control"):
        _, num, d = raw[v]
        params = np.array([num.mean(), d.mean()])
        cov = np.cov(np.vstack([num, d]), ddof=1) / len(num)
        nd = NonlinearDeltaCov(lambda p: np.atleast_1d(p[0] / p[1]), params, cov)
        ses.append(float(np.sqrt(np.diag(nd.cov()))[0]))
    assert row.variant_mean == pytest.approx(raw["b"][1].sum() / raw["b"][2].sum(), rel=1e-12)
    assert row.se == pytest.approx(np.hypot(*ses), rel=1e-6)
    assert row.p_value == pytest.approx(2 * stats.norm.sf(abs(row.effect) / np.hypot(*ses)), rel=1e-5)


def test_basic_moments_match_raw_data(raw):
    frame = _frame(raw).reset_index(drop=True)
    got = moments.basic_moments(frame)
    for i, row in frame.iterrows():
        y, num, d = raw[row["variant"]]
        if row["kind"] == "mean":
            assert got["mean"][i] == pytest.approx(y.mean(), rel=1e-12)
            assert got["var_unit"][i] == pytest.approx(y.var(ddof=1), rel=1e-9)
            assert np.isnan(got["den_mean"][i])
        else:
            r = num.sum() / d.sum()
            z = (num - r * d) / d.mean()  # linearised unit values (Deng et al. 2018)
            assert got["mean"][i] == pytest.approx(r, rel=1e-12)
            assert got["var_unit"][i] == pytest.approx(z.var(ddof=1), rel=1e-8)
            assert got["den_mean"][i] == pytest.approx(d.mean(), rel=1e-12)
        assert got["n"][i] == len(y if row["kind"] == "mean" else num)


def test_proportion_variance_and_covariance_helpers():
    frame = pd.DataFrame({"kind": ["proportion"], "n": [200.0], "sum": [30.0]})
    got = moments.basic_moments(frame)
    assert got["mean"][0] == 0.15 and got["var_unit"][0] == pytest.approx(0.15 * 0.85)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50) + 1
    cross, n = np.array([(a * b).sum()]), np.array([50.0])
    assert moments.centered(cross, a.sum(), b.sum(), n)[0] == pytest.approx(
        ((a - a.mean()) * (b - b.mean())).sum(), rel=1e-10)
    assert moments.sample_cov(cross, a.sum(), b.sum(), n)[0] == pytest.approx(
        np.cov(a, b, ddof=1)[0, 1], rel=1e-10)
    assert np.isnan(moments.sample_cov(np.array([1.0]), np.array([1.0]), np.array([1.0]),
                                       np.array([1.0]))[0])  # n < 2
