"""Paths and settings, in one place.

Every setting can be overridden by an environment variable ``WORKBENCH_<NAME>``; paths are
resolved against the project root (the folder holding ``pyproject.toml``) unless absolute.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent


def _find_root() -> Path:
    env = os.environ.get("WORKBENCH_ROOT")
    if env:
        return Path(env).resolve()
    for parent in [PACKAGE_DIR.parent, *PACKAGE_DIR.parents]:
        if (parent / "pyproject.toml").exists() and (parent / "templates").is_dir():
            return parent
    return Path.cwd().resolve()


def _path(name: str, default: Path, root: Path) -> Path:
    value = os.environ.get(f"WORKBENCH_{name}")
    if value is None or value == "":
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root / path)


def _int(name: str, default: int) -> int:
    value = os.environ.get(f"WORKBENCH_{name}")
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"WORKBENCH_{name} must be an integer, got {value!r}") from exc


def _memory(name: str) -> str | None:
    value = (os.environ.get(f"WORKBENCH_{name}") or "").strip()
    if not value:
        return None
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", value, flags=re.IGNORECASE):
        raise ConfigError(f"WORKBENCH_{name} must be an amount of memory such as 2GB or 512MiB, "
                          f"got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`get_settings` so environment variables apply.

    Attributes
    ----------
    root : Path
        Project root (``WORKBENCH_ROOT``).
    data_dir : Path
        Where sample data is written (``WORKBENCH_DATA_DIR``, default ``<root>/data``).
    warehouse : Path
        The default DuckDB file (``WORKBENCH_WAREHOUSE``, default ``<data_dir>/warehouse.duckdb``).
    reports_dir : Path
        Outputs of template runs (``WORKBENCH_REPORTS_DIR``, default ``<root>/reports``).
    templates_dir : Path
        Parameterised notebooks (``WORKBENCH_TEMPLATES_DIR``, default ``<root>/templates``).
    dashboards_dir : Path
        Voilà dashboards (``WORKBENCH_DASHBOARDS_DIR``, default ``<root>/notebooks/dashboards``).
    tracking_uri : str
        MLflow tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/mlflow.db``.
    seed : int
        Default random seed (``WORKBENCH_SEED``, default 20261123).
    cache_dir : Path
        Compiled PyMC models and PyTensor/numba compile dirs, shared by every process
        (``WORKBENCH_CACHE``, default ``<root>/.cache``; ``workbench cache clear`` empties it).
    duckdb_memory_limit : str or None
        DuckDB's ``memory_limit`` for the connections the workbench opens
        (``WORKBENCH_DUCKDB_MEMORY_LIMIT``, e.g. ``2GB``; default DuckDB's own, 80 % of RAM).
        Larger-than-memory work then spills to ``<cache_dir>/duckdb`` instead of growing.
    """

    root: Path
    data_dir: Path
    warehouse: Path
    reports_dir: Path
    templates_dir: Path
    dashboards_dir: Path
    tracking_uri: str
    seed: int = 20261123
    extra: dict = field(default_factory=dict)
    cache_dir: Path | None = None
    duckdb_memory_limit: str | None = None


def project_path(value: Any) -> Any:
    """A relative path that does not exist from the working directory but does from the
    project root: the root's (notebooks run from ``notebooks/``)."""
    if not isinstance(value, str | Path) or "://" in str(value) or str(value) == ":memory:" \
            or "*" in str(value):
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return value
    alt = get_settings().root / path
    if not alt.exists():
        return value
    return alt if isinstance(value, Path) else str(alt)


def get_settings() -> Settings:
    """Read the settings from the environment (cheap; call it when you need them)."""
    root = _find_root()
    data_dir = _path("DATA_DIR", root / "data", root)
    warehouse = _path("WAREHOUSE", data_dir / "warehouse.duckdb", root)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    return Settings(
        root=root,
        data_dir=data_dir,
        warehouse=warehouse,
        reports_dir=_path("REPORTS_DIR", root / "reports", root),
        templates_dir=_path("TEMPLATES_DIR", root / "templates", root),
        dashboards_dir=_path("DASHBOARDS_DIR", root / "notebooks" / "dashboards", root),
        tracking_uri=tracking_uri,
        seed=_int("SEED", 20261123),
        cache_dir=_path("CACHE", root / ".cache", root),
        duckdb_memory_limit=_memory("DUCKDB_MEMORY_LIMIT"),
    )
