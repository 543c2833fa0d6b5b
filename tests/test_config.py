"""Settings: defaults relative to the project root, WORKBENCH_* overrides, bad values."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from workbench.config import get_settings
from workbench.errors import ConfigError

VARS = ["WORKBENCH_ROOT", "WORKBENCH_DATA_DIR", "WORKBENCH_WAREHOUSE", "WORKBENCH_REPORTS_DIR",
        "WORKBENCH_TEMPLATES_DIR", "WORKBENCH_DASHBOARDS_DIR", "WORKBENCH_SEED",
        "MLFLOW_TRACKING_URI"]


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WORKBENCH_ROOT", str(tmp_path))
    return monkeypatch


def test_defaults_hang_off_the_root(env, tmp_path):
    s = get_settings()
    root = tmp_path.resolve()
    assert s.root == root
    assert s.data_dir == root / "data"
    assert s.warehouse == root / "data" / "warehouse.duckdb"
    assert s.reports_dir == root / "reports"
    assert s.templates_dir == root / "templates"
    assert s.dashboards_dir == root / "notebooks" / "dashboards"
    assert s.tracking_uri == f"sqlite:///{root / 'mlflow.db'}"
    assert s.seed == 20261123


def test_overrides_relative_absolute_and_empty(env, tmp_path):
    root = tmp_path.resolve()
    env.setenv("WORKBENCH_DATA_DIR", "elsewhere")
    assert get_settings().warehouse == root / "elsewhere" / "warehouse.duckdb"
    env.setenv("WORKBENCH_WAREHOUSE", "/abs/wh.duckdb")
    assert get_settings().warehouse == Path("/abs/wh.duckdb")
    env.setenv("WORKBENCH_REPORTS_DIR", "")  # empty means default
    assert get_settings().reports_dir == root / "reports"
    env.setenv("WORKBENCH_SEED", "12")
    env.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    s = get_settings()
    assert (s.seed, s.tracking_uri) == (12, "http://mlflow:5000")


def test_bad_integer_names_the_variable(env):
    env.setenv("WORKBENCH_SEED", "twelve")
    with pytest.raises(ConfigError, match="WORKBENCH_SEED"):
        get_settings()


def test_settings_are_frozen(env):
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_settings().seed = 1


def test_root_found_from_the_package(monkeypatch):
    monkeypatch.delenv("WORKBENCH_ROOT", raising=False)
    assert (get_settings().root / "pyproject.toml").exists()


def test_duckdb_memory_limit_is_checked(env):
    assert get_settings().duckdb_memory_limit is None
    env.setenv("WORKBENCH_DUCKDB_MEMORY_LIMIT", "1.5GB")
    assert get_settings().duckdb_memory_limit == "1.5GB"
    env.setenv("WORKBENCH_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ConfigError, match="WORKBENCH_DUCKDB_MEMORY_LIMIT"):
        get_settings()
