"""10,000 metric x variant rows in one ``workbench.stats.analyze`` call vs a loop of statsmodels.

Peer: what a user would write without the engine, one statsmodels call per comparison
(``ttest_ind_from_stats`` for means, ``test_proportions_2indep`` for proportions; ratio metrics
need a hand-written delta method, done here with ``NonlinearDeltaCov``). Run:

    .venv/bin/python benchmarks/bench_stats.py
"""
from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np
import pandas as pd

from workbench.stats import analyze


def make_stats(rows=10_000, arms=2, seed=0):
    """Sufficient statistics: rows/arms metrics x arms variants, a third each kind."""
    rng = np.random.default_rng(seed)
    k = rows // arms
    n = rng.integers(5_000, 50_000, size=(k, arms)).astype(float)
    kind = np.array(["proportion", "mean", "ratio"])[np.arange(k) % 3]
    p = rng.uniform(0.02, 0.3, (k, 1))
    mu, sd = rng.uniform(1, 50, (k, 1)), rng.uniform(1, 30, (k, 1))
    s = np.where(kind[:, None] == "proportion", np.round(n * p), n * mu + rng.normal(0, 1, n.shape) * np.sqrt(n) * sd)
    ss = np.where(kind[:, None] == "proportion", s, (n - 1) * sd**2 + s**2 / n)
    dmu = rng.uniform(1, 3, (k, 1))
    d = n * dmu
    dd = (n - 1) * 0.5 + d**2 / n
    yd = (n - 1) * 0.3 * sd * 0.7 + s * d / n
    variants = ["control"] + [f"t{i}" for i in range(1, arms)]
    df = pd.DataFrame({"metric": np.repeat([f"m{i}" for i in range(k)], arms),
                       "variant": np.tile(variants, k), "kind": np.repeat(kind, arms),
                       "n": n.ravel(), "sum": s.ravel(), "sum_squares": ss.ravel()})
    is_ratio = df.kind.to_numpy() == "ratio"
    df["den_sum"] = np.where(is_ratio, d.ravel(), np.nan)
    df["den_sum_squares"] = np.where(is_ratio, dd.ravel(), np.nan)
    df["sum_product"] = np.where(is_ratio, yd.ravel(), np.nan)
    return df


def loop_statsmodels(df):
    from scipy import stats
    from statsmodels.stats._delta_method import NonlinearDeltaCov
    from statsmodels.stats.proportion import test_proportions_2indep

    out = []
    for _, g in df.groupby("metric", sort=False):
        c = g.iloc[0]
        for _, t in g.iloc[1:].iterrows():
            if t.kind == "proportion":
                r = test_proportions_2indep(t["sum"], t.n, c["sum"], c.n, method="wald",
                                            compare="diff")
                out.append(r.pvalue)
            elif t.kind == "mean":
                sd = [np.sqrt((x.sum_squares - x["sum"] ** 2 / x.n) / (x.n - 1)) for x in (t, c)]
                r = stats.ttest_ind_from_stats(t["sum"] / t.n, sd[0], t.n, c["sum"] / c.n, sd[1],
                                               c.n, equal_var=False)
                out.append(r.pvalue)
            else:
                est, var = [], []
                for x in (t, c):
                    cov = np.array([[x.sum_squares - x["sum"] ** 2 / x.n,
                                     x.sum_product - x["sum"] * x.den_sum / x.n],
                                    [x.sum_product - x["sum"] * x.den_sum / x.n,
                                     x.den_sum_squares - x.den_sum**2 / x.n]]) / (x.n - 1) / x.n
                    nd = NonlinearDeltaCov(lambda q: np.atleast_1d(q[0] / q[1]),
                                           np.array([x["sum"] / x.n, x.den_sum / x.n]), cov)
                    est.append(x["sum"] / x.den_sum)
                    var.append(float(nd.cov()[0, 0]))
                z = (est[0] - est[1]) / np.sqrt(sum(var))
                out.append(2 * stats.norm.sf(abs(z)))
    return np.array(out)


def timeit(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), res


def main(rows=10_000, repeat=7, peer_rows=1_000):
    warnings.simplefilter("ignore")
    df = make_stats(rows)
    analyze(df)  # warm-up (imports, scipy caches)
    print(f"stats engine benchmark: {rows:,} metric x variant rows "
          f"({rows // 2:,} comparisons, a third each proportion/mean/ratio)")
    results = {}
    for method in ("frequentist", "sequential", "bayesian"):
        t, res = timeit(lambda m=method: analyze(df, method=m, difference="absolute"), repeat)
        results[method] = (t, res)
        print(f"  analyze(method={method!r:14}) median {t * 1e3:8.1f} ms")
    t_corr, _ = timeit(lambda: analyze(df, correction="holm"), repeat)
    print(f"  analyze(frequentist, holm)       median {t_corr * 1e3:8.1f} ms")
    # the peer is slow: time it on a slice and scale linearly (it is a plain loop)
    peer_df = df.iloc[:peer_rows]
    t_peer, p_peer = timeit(lambda: loop_statsmodels(peer_df), 3)
    t_peer_full = t_peer * rows / peer_rows
    print(f"  loop of statsmodels calls        median {t_peer * 1e3:8.1f} ms for {peer_rows:,} rows "
          f"-> {t_peer_full:8.2f} s for {rows:,} (linear)")
    t_ours = results["frequentist"][0]
    print(f"  ratio (statsmodels loop / analyze): {t_peer_full / t_ours:,.0f}x")
    ours = results["frequentist"][1].to_frame()["p_value"].to_numpy()[: peer_rows // 2]
    print(f"  max |p difference| vs the loop: {np.max(np.abs(ours - p_peer)):.2e}")
    ok = t_ours < 0.1
    print(f"  target < 100 ms for {rows:,} rows: {'met' if ok else 'NOT met'}")
    big = make_stats(2 * rows, seed=1)
    t_big, _ = timeit(lambda: analyze(big), repeat)
    print(f"  analyze {2 * rows:,} rows ({rows:,} comparisons), frequentist: median "
          f"{t_big * 1e3:.1f} ms; vs loop (scaled): {2 * t_peer_full / t_big:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
