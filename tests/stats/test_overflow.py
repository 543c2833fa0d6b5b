"""Issue 17: an overflowing statistic never gives a silent answer, and never changes another row.

Numbers are checked against scipy / statsmodels on the unit values, not against the engine.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps

from workbench import messages
from workbench.errors import StatsInputError
from workbench.stats import analyze


def _units(seed=11):
    rng = np.random.default_rng(seed)
    out = []
    for i, v in enumerate(["control", "a", "b"]):
        n = 400 + 60 * i
        x = rng.normal(10, 3, n)
        y = 2 + 0.8 * x + rng.normal(0, 2, n) + 0.6 * i
        out.append(pd.DataFrame({"variant": v, "x": x, "y": y}))
    return pd.concat(out, ignore_index=True)


def _rows(u, cuped=True, scale=None):
    rows = []
    for v, g in u.groupby("variant", sort=False):
        y, x = g.y.to_numpy(), g.x.to_numpy()
        if scale and v in scale:
            y = y * scale[v]
        row = {"metric": "m", "variant": v, "kind": "mean", "n": len(y), "sum": y.sum(),
               "sum_squares": (y**2).sum()}
        if cuped:
            row.update(pre_sum=x.sum(), pre_sum_squares=(x**2).sum(),
                       pre_sum_product=(x * y).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def test_impossible_overflowing_row_is_named_not_answered():
    # the break test's row: sum = sum_squares = 1e308 is a negative variance; sum^2/n
    # overflowed to inf, inf - inf = NaN and the check let it through (p = 1.0, no message)
    frame = _rows(_units())
    frame.loc[2, ["sum", "sum_squares"]] = 1e308
    with pytest.raises(StatsInputError, match=r"row 2 \(metric='m', variant='b'\).*sum_squares < sum"):
        analyze(frame)
    # the same check still passes valid rows at the edge of the range
    ok = _rows(_units(), cuped=False)
    ok.loc[2, ["sum", "sum_squares", "n"]] = [1e154, 1e306, 1e2]
    analyze(ok, warn=False)


def test_overflowing_row_gets_a_message_and_leaves_the_other_arm_as_ancova():
    u = _units()
    # arm b in units 1e151 times larger: valid, but sum^2 overflows (sum ~ 6e154)
    frame = _rows(u, scale={"b": 1e151})
    with np.errstate(over="ignore"):
        assert np.isinf(frame["sum"].iloc[2] ** 2)
    assert np.isfinite(frame["sum_squares"]).all()
    res = analyze(frame, difference="absolute", warn=False).to_frame().set_index("variant")
    assert res.loc["b", "error_message"] == messages.NOT_FINITE
    assert np.isnan(res.loc["b", "p_value"]) and np.isnan(res.loc["b", "effect"])
    assert not res.loc["b", "cuped"]
    # arm a: CUPED stays on, as the ANCOVA regression on the control and a units
    sub = u[u.variant.isin(["control", "a"])]
    ols = smf.ols("y ~ C(variant, Treatment('control')) + x", data=sub).fit()
    slope = ols.params["x"]
    a = res.loc["a"]
    assert a["error_message"] == "" and a["cuped"]
    assert a["cuped_theta"] == pytest.approx(slope, rel=1e-8)
    assert a["effect"] == pytest.approx(ols.params["C(variant, Treatment('control'))[T.a]"],
                                        rel=1e-8)
    # Welch test on y - theta x (theta treated as known, as CUPED does), by scipy
    adj = {v: g.y - slope * g.x for v, g in sub.groupby("variant")}
    t = sps.ttest_ind(adj["a"], adj["control"], equal_var=False)
    assert a["p_value"] == pytest.approx(t.pvalue, rel=1e-6)
    # relative lift of a: over the control's adjusted mean at the pooled covariate mean
    rel = analyze(frame, warn=False).to_frame().set_index("variant").loc["a"]
    ctrl = sub[sub.variant == "control"]
    base = ctrl.y.mean() - slope * (ctrl.x.mean() - sub.x.mean())
    assert rel["effect"] == pytest.approx(ols.params.iloc[1] / base, rel=1e-8)


def test_overflowing_row_without_cuped_gets_a_message_and_other_arm_is_welch():
    u = _units()
    frame = _rows(u, cuped=False, scale={"b": 1e151})
    with pytest.warns(Warning, match="could not be computed"):
        res = analyze(frame).to_frame().set_index("variant")
    assert res.loc["b", "error_message"] == messages.NOT_FINITE
    ya, yc = u.y[u.variant == "a"], u.y[u.variant == "control"]
    t = sps.ttest_ind(ya, yc, equal_var=False)
    assert res.loc["a", "error_message"] == ""
    assert res.loc["a", "effect"] == pytest.approx(ya.mean() / yc.mean() - 1, rel=1e-10)
    absolute = analyze(frame, difference="absolute", warn=False).to_frame().iloc[0]
    assert absolute["p_value"] == pytest.approx(t.pvalue, rel=1e-6)
    assert absolute["effect"] == pytest.approx(ya.mean() - yc.mean(), rel=1e-10)


def test_overflowing_control_flags_every_comparison_of_its_block():
    frame = _rows(_units(), scale={"control": 1e151})
    res = analyze(frame, warn=False).to_frame()
    assert (res["error_message"] == messages.NOT_FINITE_CONTROL).all()
    assert res["p_value"].isna().all()
