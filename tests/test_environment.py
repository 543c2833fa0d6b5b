"""pyproject.toml, requirements.lock and environment.yml must describe the same environment."""
from __future__ import annotations

import importlib.metadata as md
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"python-duckdb": "duckdb"}
CONDA_ONLY = {"python", "openjdk"}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(3)
    return pins


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _conda() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        name, _, version = dep.partition("=")
        if name in CONDA_ONLY:
            continue
        pins[canonicalize_name(CONDA_TO_PIP.get(name, name))] = version
    return pins


def test_every_pyproject_requirement_is_locked_within_its_range():
    lock = _lock()
    for req in _pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is in pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"{req.name}: lock has {lock[name]}, pyproject.toml asks {req.specifier}"
        )


def test_environment_yml_pins_the_same_packages_and_versions_as_the_lock():
    lock, conda = _lock(), _conda()
    direct = {canonicalize_name(r.name) for r in _pyproject_requirements()}
    assert set(conda) == direct, (
        f"only in environment.yml: {sorted(set(conda) - direct)}; "
        f"only in pyproject.toml: {sorted(direct - set(conda))}"
    )
    for name, version in conda.items():
        assert lock[name] == version, f"{name}: environment.yml {version}, lock {lock[name]}"


def test_pandas_is_below_3_because_evidently_07_needs_it():
    assert int(_lock()["pandas"].split(".")[0]) < 3


@pytest.mark.parametrize("name", ["numpy", "pandas", "pymc", "mlflow", "evidently", "duckdb"])
def test_installed_versions_match_the_lock(name):
    assert md.version(name) == _lock()[canonicalize_name(name)]


@pytest.mark.parametrize("module", ["mlflow", "pymc", "pytensor", "ibis", "papermill", "ipykernel"])
def test_installed_packages_are_imported_from_bytecode(module):
    """`make setup` compiles the venv (``uv pip install --compile-bytecode``): without it, a
    process under PYTHONDONTWRITEBYTECODE (as here) compiles ~2,400 modules on every start
    (~4 s of the CLI, more in each kernel; benchmarks/README.md "template")."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    cached = Path(importlib.util.cache_from_source(spec.origin))
    assert cached.exists(), f"{module}: no bytecode at {cached} (run make setup)"
    assert cached.stat().st_mtime >= Path(spec.origin).stat().st_mtime - 1
