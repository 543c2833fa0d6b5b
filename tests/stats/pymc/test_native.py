"""Cached native callbacks: PyMC's own logp and gradient, nutpie's draws, loaded in a new process."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from workbench.stats.pymc import native, sampling

# compiles nutpie models (tens of seconds each on this machine)
pytestmark = pytest.mark.slow

# hurdle data of 2 arms, different from the placeholders the model is built with
DATA = dict(n=np.array([1000, 1040]), positive_n=np.array([80, 95]), m=np.array([80.0, 95.0]),
            log_mean=np.array([3.1, 3.25]), log_ss=np.array([41.0, 52.0]), prior_alpha=1.0,
            prior_beta=1.0, prior_log_mean=3.0, prior_log_mean_sd=2.0, prior_log_sd_scale=2.0)


def _call_logp(compiled, x):
    """logp and gradient from the compiled C callback, called through ctypes."""
    proto = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.POINTER(ctypes.c_double),
                             ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                             ctypes.c_void_p)
    func = proto(compiled.compiled_logp_func.address)
    x = np.ascontiguousarray(x, dtype=float)
    grad, logp = np.zeros_like(x), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    code = func(x.size, x.ctypes.data_as(ptr), grad.ctypes.data_as(ptr), logp.ctypes.data_as(ptr),
                compiled.user_data.ctypes.data)
    return code, float(logp[0]), grad


def test_callbacks_match_pymc_logp_and_nutpie_draws(tmp_path):
    import nutpie
    import pymc as pm

    model = sampling._build("hurdle", 2)
    ours = native.compile_model(model, tmp_path / "native").with_data(**DATA)
    # the independent reference: PyMC's own logp and gradient (PyTensor's default backend)
    with model:
        pm.set_data(DATA)
    logp_fn = model.compile_logp(jacobian=True)
    dlogp_fn = model.compile_dlogp(jacobian=True)
    names, slices, shapes = ours.shape_info
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(0.0, 0.5, ours.n_dim) + np.r_[np.zeros(2), [3.0, 3.0], np.zeros(2)]
        point = {name: x[s].reshape(shape) for name, s, shape in
                 zip(names[:len(model.free_RVs)], slices, shapes)}
        code, logp, grad = _call_logp(ours, x)
        assert code == 0
        np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
        expected = np.concatenate([np.ravel(g) for g in np.atleast_1d(dlogp_fn(point))])
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-10)
    # nutpie's own compile of the same model and data: the same draws, bit for bit
    theirs = nutpie.compile_pymc_model(model).with_data(**DATA)
    runs = [nutpie.sample(c, draws=150, tune=150, chains=2, seed=11, progress_bar=False)
            for c in (ours, theirs)]
    for name in runs[1].posterior.data_vars:
        np.testing.assert_array_equal(runs[0].posterior[name].values,
                                      runs[1].posterior[name].values)


JOB = """
from workbench.stats.pymc import cache, native, sampling
model = sampling._build("beta_binomial", 2)
native.compile_model(model, cache.cache_dir() / "native")
"""


def test_a_new_process_loads_the_callbacks_instead_of_compiling_them(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env.update(WORKBENCH_CACHE=str(tmp_path / "cache"), NUMBA_DEBUG_CACHE="1")
    logs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", JOB], env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
        logs.append([line for line in done.stdout.splitlines()
                     if line.startswith("[cache]") and "/native_" in line])
    assert any("data saved" in line for line in logs[0]), logs[0]
    # the second process: both callbacks loaded from disk, nothing compiled and saved again
    assert sum("data loaded" in line for line in logs[1]) == 2, logs[1]
    assert not any("saved" in line for line in logs[1]), logs[1]
    assert len(list((tmp_path / "cache" / "native").glob("m*.py"))) == 1
