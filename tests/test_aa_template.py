"""The aa_test template executed through papermill on the small sample."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd

from workbench import runner, tracking

ROOT = Path(__file__).resolve().parents[1]


def test_aa_test_template_runs_and_logs_the_simulation(small_warehouse, tmp_path, monkeypatch):
    path = ROOT / "templates" / "aa_test.ipynb"
    params = runner.read_parameters(path)  # literals only
    assert "source" in params
    for cell in nbformat.read(path, as_version=4).cells:
        assert "\ndef " not in f"\n{cell.source}" and "\nclass " not in f"\n{cell.source}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    result = runner.run_template("aa_test", {"source": str(small_warehouse), "replicates": 40,
                                             "simulated_metrics": ["conversion"]},
                                 progress=False)
    assert result.ok, result.message
    table = pd.read_parquet(result.run_dir / "tables" / "simulation.parquet")
    assert set(table["metric"]) == {"conversion"} and (table["replicates"] == 40).all()
    assert table["false_positive_rate"].between(0, 1).all()
    assert "qq" in result.record["figures"]
