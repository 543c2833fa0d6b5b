"""Fixtures of the tracking tests: one SQLite MLflow store per module, a classification set."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench import tracking


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    # one database per module: creating MLflow's tables takes seconds
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture()
def sqlite_env(sqlite_uri, tmp_path, monkeypatch):
    """MLflow on the module's SQLite file, reports under ``tmp_path``, not attached to a run."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("WORKBENCH_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv(tracking.ENV_RUN_DIR, raising=False)
    return sqlite_uri


@pytest.fixture(scope="module")
def classification():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (X["a"] + 0.5 * rng.normal(size=200) > 0).astype(int)
    return X, y

