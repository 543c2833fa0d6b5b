"""``workbench analyze``: reads CSV/parquet statistics, prints or writes CSV/JSON, exit codes."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.cli import main as cli_main
from workbench.stats import analyze


def _good():
    return pd.DataFrame({
        "metric": ["conv", "conv", "conv", "rev", "rev", "rev"],
        "variant": ["control", "a", "b"] * 2,
        "kind": ["proportion"] * 3 + ["mean"] * 3,
        "n": [1000.0, 1010, 990, 1000, 1010, 990],
        "sum": [100.0, 120, 95, 5000, 5300, 4900],
        "sum_squares": [100.0, 120, 95, 60000, 65000, 59000]})


def test_cli_reads_csv_and_parquet_and_writes_csv_json(tmp_path, capsys):
    df = _good()
    src = tmp_path / "stats.csv"
    df.to_csv(src, index=False)
    pq = tmp_path / "stats.parquet"
    df.to_parquet(pq)
    out = tmp_path / "out.json"
    assert cli_main(["analyze", str(src), "--method", "frequentist", "--correction", "holm",
                     "--difference", "absolute", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())
    ref = analyze(df, correction="holm", difference="absolute").to_frame()
    assert [r["p_value_adjusted"] for r in rows] == pytest.approx(ref.p_value_adjusted.tolist())
    assert cli_main(["analyze", str(pq), "--output", str(tmp_path / "o.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 4
    assert cli_main(["analyze", str(pq), "--method", "sequential", "--alternative", "greater",
                     "--sequential-tuning", "20000", "--output", str(tmp_path / "s.csv")]) == 0
    seq = pd.read_csv(tmp_path / "s.csv")
    ref = analyze(df, method="sequential", alternative="greater", sequential_tuning=20000).to_frame()
    assert seq.ci_lower.to_numpy() == pytest.approx(ref.ci_lower.to_numpy())
    assert cli_main(["analyze", str(pq), "--method", "bayesian"]) == 0
    assert "chance_to_win" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    df.assign(n=-1).to_csv(bad, index=False)
    assert cli_main(["analyze", str(bad)]) == 2
    assert "negative n" in capsys.readouterr().err
    assert cli_main(["analyze", str(tmp_path / "missing.csv")]) == 2
