"""SHAP values of an xgboost model on 100k rows x 20 features: native contributions vs shap.

``workbench.explain.explain`` uses xgboost's ``Booster.predict(pred_contribs=True)``; the peer is
``shap.TreeExplainer(model)(X)``. Both are exact TreeSHAP; the script checks they agree, prints
the median of ``--repeat`` runs of each and the ratio.

    .venv/bin/python benchmarks/bench_explain.py [--rows 100000] [--trees 100] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import shap
    import xgboost as xgb

    from workbench.explain import explain

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(args.rows, 20)), columns=[f"f{i:02d}" for i in range(20)])
    logit = X["f00"] - X["f01"] + 0.5 * X["f02"] * X["f03"] + 0.3 * X.iloc[:, 4:].sum(axis=1) / 4
    y = (rng.random(args.rows) < 1 / (1 + np.exp(-logit))).astype(int)
    model = xgb.XGBClassifier(n_estimators=args.trees, max_depth=6, tree_method="hist",
                              random_state=0, n_jobs=args.threads).fit(X, y)
    print(f"xgboost {xgb.__version__}, shap {shap.__version__}: {args.rows:,} rows x 20 features, "
          f"{args.trees} trees of depth 6, {args.threads} threads")

    def timed(fn):
        times, out = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), times, out

    ours, ours_t, e = timed(lambda: explain(model, X, max_samples=None))
    theirs, theirs_t, sv = timed(lambda: shap.TreeExplainer(model)(X, check_additivity=False))
    diff = float(np.max(np.abs(e.values - sv.values)))
    print(f"native pred_contribs (workbench.explain): median {ours:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in ours_t)})")
    print(f"shap.TreeExplainer:                      median {theirs:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in theirs_t)})")
    print(f"ratio shap / native: {theirs / ours:.1f}x; max |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
