"""Statistics engine: A/B comparisons on sufficient statistics, vectorised over all rows.

``analyze`` compares every treatment with the control for every metric (and segment/date) in
one call: frequentist (Welch t / z), sequential (always-valid confidence sequences) or Bayesian
(closed form), with CUPED, ratio metrics (delta method), multiple-testing corrections and SRM.
``srm`` and the power helpers stand alone. Pure numpy/scipy.
"""
from __future__ import annotations

from workbench.stats import power
from workbench.stats.analysis import analyze
from workbench.stats.power import duration, mde, power_table, sample_size
from workbench.stats.result import StatsResult
from workbench.stats.srm import SRMResult, srm

__all__ = ["analyze", "StatsResult", "srm", "SRMResult", "power", "sample_size", "mde",
           "power_table", "duration", "main"]


def main(args) -> int:
    """``workbench analyze STATS.csv|.parquet``: print the summary or write CSV/JSON."""
    from pathlib import Path

    import pandas as pd

    from workbench.errors import DataError, ParameterError

    path = Path(args.stats)
    if not path.is_file():
        raise DataError(f"statistics file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            frame = pd.read_csv(path)
        else:
            raise DataError(f"{str(path)!r}: expected a .csv or .parquet file")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    result = analyze(frame, control=args.control, method=args.method, alpha=args.alpha,
                     difference=args.difference, correction=args.correction,
                     alternative=getattr(args, "alternative", "two-sided"),
                     sequential_tuning=getattr(args, "sequential_tuning", 5000))
    out = getattr(args, "output", None)
    if out is None:
        print(result.summary())
        return 0
    out = Path(out)
    table = result.to_frame()
    if out.suffix.lower() == ".json":
        out.write_text(table.to_json(orient="records", indent=2, date_format="iso"))
    elif out.suffix.lower() == ".csv":
        table.to_csv(out, index=False)
    else:
        raise ParameterError(f"--output {str(out)!r}: expected a .csv or .json file")
    print(f"{len(table)} comparisons written to {out}")
    return 0
