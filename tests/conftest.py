"""Shared fixtures: small generated warehouses with known truth (session-scoped, cheap)."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from workbench.data.sample import generate  # noqa: E402

SMALL_USERS = 20_000
SMALL_SEED = 7


@pytest.fixture(scope="session")
def _small(tmp_path_factory):
    path = tmp_path_factory.mktemp("warehouse") / "small.duckdb"
    truth = generate(path, seed=SMALL_SEED, n_users=SMALL_USERS, progress=False)
    return path, truth


@pytest.fixture(scope="session")
def small_warehouse(_small):
    """Path to a clean DuckDB sample (20,000 users, seed 7). Open it read-only."""
    return _small[0]


@pytest.fixture(scope="session")
def small_truth(_small):
    """The :class:`~workbench.data.sample.SampleTruth` of ``small_warehouse``."""
    return _small[1]


@pytest.fixture(scope="session")
def _faulty(tmp_path_factory):
    path = tmp_path_factory.mktemp("warehouse_faulty") / "faulty.duckdb"
    truth = generate(path, seed=SMALL_SEED, n_users=SMALL_USERS, srm=True, crossover=0.02,
                     missing=0.01, progress=False)
    return path, truth


@pytest.fixture(scope="session")
def faulty_warehouse(_faulty):
    """Path to a faulty sample: SRM (10 % of treatment_b lost), 2 % crossover, 1 % NaN revenue."""
    return _faulty[0]


@pytest.fixture(scope="session")
def faulty_truth(_faulty):
    """The :class:`~workbench.data.sample.SampleTruth` of ``faulty_warehouse`` (``.faults``)."""
    return _faulty[1]
