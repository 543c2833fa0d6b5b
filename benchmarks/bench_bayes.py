"""Benchmark of the PyMC models (workbench.stats.pymc).

1. Hierarchical model, 20 segments, 4 chains x 1000 draws (+1000 tune): end to end on the first
   fit of its shape (build + nutpie compile + sample), then warm fits of the same shape (cached
   compiled model, new data through ``with_data``).
2. ESS per second: nutpie vs PyMC's default NUTS on the same model and data.
3. Beta-Binomial, 3 arms: closed form (scipy Beta posterior + 100k Monte Carlo draws for chance to
   win) vs the PyMC program.

Run: ``.venv/bin/python benchmarks/bench_bayes.py`` (about 2-3 minutes; prints medians).
"""
from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import pandas as pd

t_import = time.perf_counter()
import pymc  # noqa: E402, F401  (imported here so its import time is reported apart)

from workbench.stats import pymc as bp  # noqa: E402

t_import = time.perf_counter() - t_import

SETTINGS = dict(draws=1000, tune=1000, chains=4, progressbar=False)
REPEATS = 5


def segments(seed: int, kind: str = "mean", n_seg: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lifts = rng.normal(0.04, 0.03, n_seg)
    rows = []
    for j in range(n_seg):
        for v, lift in (("control", 0.0), ("treatment", lifts[j])):
            n = int(rng.integers(800, 3000))
            if kind == "mean":
                y = rng.gamma(2.0, 5.0 * (1 + lift), n)
                rows.append(dict(metric="orders", variant=v, kind="mean", n=n, sum=y.sum(),
                                 sum_squares=(y**2).sum(), dimension="country", segment=f"c{j:02d}"))
            else:
                rows.append(dict(metric="conversion", variant=v, kind="proportion", n=n,
                                 sum=int(rng.binomial(n, 0.08 * (1 + lift))), dimension="country",
                                 segment=f"c{j:02d}"))
    return pd.DataFrame(rows)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed_cpu(fn):
    """Wall and CPU seconds (all threads of this process): CPU time is what contention hides."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def ess_per_s(res, seconds):
    return float(res.diagnostics["ess_bulk_min"].iloc[0]) / seconds


def main() -> None:
    warnings.simplefilter("ignore")
    print("PyMC benchmark (2 shared cores; the machine was noisy: read ratios, not absolutes)")
    print(f"import workbench.stats.pymc + pymc: {t_import:.1f} s")

    for kind, label in (("mean", "normal likelihood (8 schools)"), ("proportion", "binomial likelihood")):
        first, first_cpu, res = timed_cpu(lambda kind=kind: bp.hierarchical(segments(0, kind), random_seed=0,
                                                                  **SETTINGS))
        warm = []
        for r in range(REPEATS):
            t, res_w = timed(lambda r=r, kind=kind: bp.hierarchical(segments(r + 1, kind), random_seed=r, **SETTINGS))
            warm.append(t)
        print(f"\nhierarchical, {label}, 20 segments, 4 chains x 1000 draws (nutpie)")
        print(f"  first fit (build + compile + sample): {first:.1f} s wall, {first_cpu:.1f} s CPU   "
              "target < 20 s")
        print(f"  warm fit, same shape, new data:       median {statistics.median(warm):.2f} s "
              f"of {REPEATS}   target < 5 s   (ratio first/warm {first / statistics.median(warm):.0f}x)")
        print(f"  min ESS bulk {res_w.diagnostics['ess_bulk_min'].iloc[0]:.0f}, "
              f"divergences {int(res_w.diagnostics['divergences'].iloc[0])}")

        if kind != "mean":
            continue
        # ESS per second of wall time, nutpie vs PyMC's default sampler, same data.
        data = segments(1, kind)
        t_nut, r_nut = timed(lambda data=data: bp.hierarchical(data, random_seed=1, **SETTINGS))
        t_pm_first, r_pm = timed(lambda data=data: bp.hierarchical(data, random_seed=1, sampler="pymc",
                                                                   **SETTINGS))
        t_pm, r_pm = timed(lambda data=data: bp.hierarchical(data, random_seed=2, sampler="pymc", **SETTINGS))
        print(f"  PyMC default NUTS: first {t_pm_first:.1f} s, warm {t_pm:.1f} s "
              f"(PyTensor's C cache in ~/.pytensor may already hold this model)")
        print(f"  min-ESS-bulk per second (warm): nutpie {ess_per_s(r_nut, t_nut):.0f}/s, "
              f"PyMC {ess_per_s(r_pm, t_pm):.0f}/s, ratio {ess_per_s(r_nut, t_nut) / ess_per_s(r_pm, t_pm):.1f}x")

    # Beta-Binomial: closed form vs PyMC.
    prop = pd.DataFrame({"metric": "conversion", "variant": ["control", "a", "b"], "kind": "proportion",
                         "n": [10_000, 10_050, 9_980], "sum": [800, 860, 790]})

    def closed_form():
        from scipy import stats

        rng = np.random.default_rng(0)
        a = 1 + prop["sum"].to_numpy()
        b = 1 + prop["n"].to_numpy() - prop["sum"].to_numpy()
        draws = stats.beta.rvs(a, b, size=(100_000, 3), random_state=rng)
        lift = draws[:, 1:] / draws[:, :1] - 1
        return a / (a + b), (lift > 0).mean(axis=0), np.quantile(lift, [0.025, 0.975], axis=0)

    cf = [timed(closed_form)[0] for _ in range(REPEATS)]
    first, res = timed(lambda: bp.beta_binomial(prop, random_seed=0, **SETTINGS))
    warm = [timed(lambda r=r: bp.beta_binomial(prop, random_seed=r, **SETTINGS))[0] for r in range(REPEATS)]
    _, (means, ctw, _) = timed(closed_form)
    print("\nBeta-Binomial, 3 arms, 4 chains x 1000 draws")
    print(f"  closed form (scipy + 100k MC draws): median {statistics.median(cf) * 1000:.1f} ms")
    print(f"  PyMC program via nutpie: first {first:.1f} s, warm median {statistics.median(warm):.2f} s "
          f"(warm / closed form {statistics.median(warm) / statistics.median(cf):.0f}x)")
    t = res.to_frame().set_index("variant")
    print(f"  chance to win a, b: closed form {ctw[0]:.3f}, {ctw[1]:.3f}; PyMC "
          f"{t.loc['a', 'chance_to_win']:.3f}, {t.loc['b', 'chance_to_win']:.3f}")


if __name__ == "__main__":
    main()
