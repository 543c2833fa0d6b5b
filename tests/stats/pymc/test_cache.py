"""The disk cache of compiled models: two jobs at once, corrupt entries, version changes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from workbench.errors import WorkbenchWarning
from workbench.stats.pymc import cache, sampling

# two processes compiling nutpie models at once, then one here: ~1-2 min on a quiet machine
pytestmark = pytest.mark.slow

KIND, SIZE, SEED = "beta_binomial", 2, 12345
DATA = dict(successes=np.array([30, 41]), trials=np.array([200, 210]), prior_alpha=1.0,
            prior_beta=1.0)
CFG = sampling.settings(draws=40, tune=40, chains=1, random_seed=SEED, sampler="nutpie",
                        progressbar=False, target_accept=0.8, max_r_hat=1.1, min_ess=1)

# One job: fit the small model against the cache folder WORKBENCH_CACHE and save its draws.
JOB = f"""
import sys, numpy as np
from workbench.stats.pymc import sampling
cfg = sampling.settings(draws=40, tune=40, chains=1, random_seed={SEED}, sampler="nutpie",
                        progressbar=False, target_accept=0.8, max_r_hat=1.1, min_ess=1)
data = dict(successes=np.array([30, 41]), trials=np.array([200, 210]), prior_alpha=1.0,
            prior_beta=1.0)
idata, used = sampling.sample("{KIND}", {SIZE}, data, cfg, {SEED})
assert used == "nutpie", used
np.save(sys.argv[1], idata.posterior["p"].values)
"""


def _draws():
    idata, used = sampling.sample(KIND, SIZE, DATA, CFG, SEED)
    assert used == "nutpie"
    return idata.posterior["p"].values


def _files(root):
    return sorted(p.name for p in (root / "models").iterdir()) if (root / "models").exists() else []


def test_two_jobs_at_once_share_one_entry(tmp_path):
    root = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env["WORKBENCH_CACHE"] = str(root)
    jobs = [subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / f"job{i}.npy")], env=env,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]
    for job in jobs:
        _, err = job.communicate(timeout=900)
        assert job.returncode == 0, err[-2000:]
    # a fresh compile in this process (its own compile dir), same seed: the same draws
    sampling.clear_model_cache()
    expected = _draws()
    for i in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"job{i}.npy"), expected)
    # one valid entry (plus its lock file), no temp file left; both jobs set up the compile dir
    names = _files(root)
    entries = [n for n in names if n.endswith(".json")]
    assert len(entries) == 1 and not [n for n in names if n.endswith(".tmp")], names
    assert set(names) == {entries[0], entries[0].replace(".json", ".lock")}
    record = json.loads((root / "models" / entries[0]).read_text())
    assert record["key"]["kind"] == KIND and record["key"]["size"] == SIZE
    assert record["key"]["pymc"] == cache.versions()["pymc"]
    assert (root / "pytensor").is_dir() and any((root / "pytensor").rglob("*"))
    # one generated callback module for the model, its compiled code in numba's cache
    assert len(list((root / "native").glob("m*.py"))) == 1, list((root / "native").iterdir())
    assert any((root / "numba").rglob("*.nbc"))
    assert len(record["fingerprint"]) == 64


def test_corrupt_entry_is_rebuilt_and_versions_key_new_entries(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE", str(root))
    sampling.clear_model_cache()
    first = _draws()
    key = cache.model_key(KIND, SIZE)
    path = cache.entry_path(key)
    good = json.loads(path.read_text())
    path.write_text('{"key": {"kind": "beta_bin')  # half a file
    sampling.clear_model_cache()
    with pytest.warns(WorkbenchWarning, match="corrupt model cache entry"):
        again = _draws()
    np.testing.assert_array_equal(again, first)
    assert json.loads(path.read_text())["key"] == good["key"]  # a whole entry again
    # a library upgrade gives another key, hence a second entry; the first one is untouched
    real = cache.versions
    monkeypatch.setattr(cache, "versions", lambda: {**real(), "numpy": "0.0.0-test"})
    assert cache.model_key(KIND, SIZE) != key
    sampling.clear_model_cache()
    _draws()
    assert len([n for n in _files(root) if n.endswith(".json")]) == 2
    assert cache.read(key) is not None and cache.clear(root) > 0 and not root.exists()
    sampling.clear_model_cache()
