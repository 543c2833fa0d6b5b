"""Regression-adjustment benchmark: 10,000 metric x variant rows with 4 covariates each.

Contenders (medians of ``--repeat``):

- ``analyze``: ``workbench.stats.analyze`` on the sufficient statistics (n, sums, the 4 x 4
  cross products, y x_j): 5,000 metrics x 2 arms, each a regression ``y ~ variant + x1..x4``.
- ``statsmodels``: what a user would otherwise do, one ``sm.OLS(y, [1, T, X]).fit()`` per
  metric on its unit rows (arrays already in memory: a head start), timed on ``--peer``
  metrics and scaled linearly to 5,000. The script checks the two effects agree (1e-8).

    .venv/bin/python benchmarks/bench_regression.py [--metrics 5000] [--units 200] [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd


def make(metrics, units, k=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((metrics, 2, units, k))
    x[..., k - 1] = x[..., k - 1] > 0.5  # a one-hot attribute
    y = 1 + 0.1 * np.arange(2)[None, :, None] + x @ np.linspace(1, 0.2, k) \
        + rng.standard_normal((metrics, 2, units))
    return x, y


def stats_table(x, y):
    metrics, arms, units, k = x.shape
    cols = {"metric": np.repeat([f"m{i}" for i in range(metrics)], arms),
            "variant": np.tile(["control", "treatment"], metrics), "kind": "mean",
            "n": units, "sum": y.sum(-1).ravel(), "sum_squares": (y * y).sum(-1).ravel()}
    for j in range(k):
        cols[f"cov_sum__{j}"] = x[..., j].sum(-1).ravel()
        cols[f"cov_y__{j}"] = (x[..., j] * y).sum(-1).ravel()
        for m in range(j, k):
            cols[f"cov_prod__{j}__{m}"] = (x[..., j] * x[..., m]).sum(-1).ravel()
    return pd.DataFrame(cols)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", type=int, default=5000)
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--peer", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    import statsmodels.api as sm

    from workbench.stats import analyze

    x, y = make(a.metrics, a.units)
    table = stats_table(x, y)
    analyze(table, difference="absolute", warn=False)  # warm-up
    t_an = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        res = analyze(table, difference="absolute", warn=False).table
        t_an.append(time.perf_counter() - t0)
    units = a.units
    treat = np.r_[np.zeros(units), np.ones(units)]

    def peer(i):
        X = np.column_stack([np.ones(2 * units), treat, x[i].reshape(2 * units, -1)])
        return sm.OLS(y[i].ravel(), X).fit().params[1]

    t_peer = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        eff = [peer(i) for i in range(a.peer)]
        t_peer.append((time.perf_counter() - t0) * a.metrics / a.peer)
    diff = np.max(np.abs(res["effect"].to_numpy()[:a.peer] - np.array(eff)))
    assert diff < 1e-8, diff
    an, pe = statistics.median(t_an), statistics.median(t_peer)
    print(f"rows: {len(table):,} ({a.metrics:,} regressions, {a.units} units per arm, 4 covariates)")
    print(f"analyze (regression adjustment): {an * 1e3:.0f} ms")
    print(f"statsmodels OLS loop (scaled from {a.peer}): {pe:.2f} s")
    print(f"ratio: {pe / an:.0f}x; max |effect difference| {diff:.1e}")


if __name__ == "__main__":
    main()
