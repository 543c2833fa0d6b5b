"""The disk cache of compiled models, shared by every process: where it lives, keys, entries, lock.

A nutpie ``CompiledPyMCModel`` (numba backend) cannot be pickled: it holds two numba ``CFunc``
objects (``compiled_logp_func``, ``compiled_expand_func``, native code with no ``__reduce__``) and
an initial-point function closed over a ``threading.Lock`` (nutpie/compile_pymc.py,
``_wrap_with_lock``). What persists instead is the compiled code underneath it:

* PyTensor's compile dir (``base_compiledir``): its C modules and the numba cache of every
  function PyTensor generates (``<base_compiledir>/numba``, pytensor/link/numba/cache.py) — the
  logp/gradient and expand functions nutpie wraps. It is pointed under the cache folder before
  PyTensor is first imported, unless ``PYTENSOR_FLAGS`` already names a compile dir.
* numba's own cache (``NUMBA_CACHE_DIR``) for the C callbacks nutpie calls: nutpie's own cannot be
  cached (closures numba refuses), so :mod:`.native` generates cacheable ones, one small source
  file per model graph under ``native/``, and numba keeps their compiled code under ``numba/``.

Each model kind and shape has one entry ``models/<kind>-<size>-<digest>.json``: its key (kind,
size, backend and the versions of pymc, pytensor, nutpie, numba, numpy and python) and the
fingerprint of the compiled logp graph. The entry is written atomically (temp file in the same
folder, then ``os.replace``), so readers never see half a file; a per-key file lock (``flock``)
serialises compiles, so of two jobs starting at once one compiles and the other loads what it
left in the compile dirs. An unreadable entry, or one holding another key, is discarded and
rebuilt with a warning. ``workbench cache clear`` (or :func:`clear`) empties the folder.

The folder is ``WORKBENCH_CACHE`` if set, else the settings' ``cache_dir`` (``<root>/.cache``).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchWarning

__all__ = ["LIBRARIES", "cache_dir", "versions", "model_key", "entry_path", "use_cache_dirs",
           "locked", "read", "write", "fingerprint", "clear"]

LIBRARIES = ("pymc", "pytensor", "nutpie", "numba", "numpy")
FORMAT = 1  # bump when the entry's layout changes


def cache_dir() -> Path:
    """The cache folder: ``WORKBENCH_CACHE``, else the settings' ``cache_dir``."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    # config is a leaf module (it imports only errors): the settings own the default path.
    from workbench.config import get_settings

    return get_settings().cache_dir


def versions() -> dict[str, str]:
    """Installed versions of the libraries a compiled model depends on, and of Python."""
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "missing"
    out["python"] = ".".join(str(v) for v in sys.version_info[:3])
    return out


def model_key(kind: str, size: int, backend: str = "numba") -> dict[str, Any]:
    """The key of a compiled model: kind, shape, backend, entry format and library versions."""
    return {"kind": kind, "size": int(size), "backend": backend, "format": FORMAT, **versions()}


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def entry_path(key: dict) -> Path:
    """The entry file of ``key`` under the cache folder."""
    return cache_dir() / "models" / f"{key['kind']}-{key['size']}-{_digest(key)}.json"


def use_cache_dirs() -> Path | None:
    """Point PyTensor's compile dir and numba's cache under the cache folder (before import).

    Returns PyTensor's base compile dir it set, or None when PyTensor is already imported or
    ``PYTENSOR_FLAGS`` names a compile dir (then PyTensor's own setting is kept).
    """
    root = cache_dir()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(root / "numba"))
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "pytensor" in sys.modules or "compiledir" in flags:
        return None
    base = root / "pytensor"
    base.mkdir(parents=True, exist_ok=True)
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={base}") if f)
    return base


@contextlib.contextmanager
def locked(key: dict):
    """Hold the per-key file lock (blocks while another process compiles the same model)."""
    path = entry_path(key).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read(key: dict) -> dict | None:
    """The entry of ``key``, or None if there is none; a corrupt entry is removed with a warning."""
    path = entry_path(key)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if record.get("key") != key or not isinstance(record.get("fingerprint"), str):
            raise ValueError("its key or fingerprint does not match")
        return record
    except (OSError, ValueError) as exc:
        warnings.warn(f"discarding the corrupt model cache entry {path.name} ({exc}); "
                      "it is rebuilt", WorkbenchWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def write(key: dict, **fields) -> Path:
    """Write the entry of ``key`` atomically (temp file in the same folder, then os.replace)."""
    path = entry_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; other users' jobs read the entry too
        with os.fdopen(fd, "w") as handle:
            json.dump({"key": key, **fields}, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def fingerprint(compiled: Any) -> str:
    """sha256 of the compiled logp/gradient graph (PyTensor's debug print of the function)."""
    from pytensor.printing import debugprint

    text = debugprint(compiled.logp_func, file="str", print_type=True)
    return hashlib.sha256(text.encode()).hexdigest()


def clear(path: Path | None = None) -> int:
    """Remove the cache folder (model entries and compile dirs); returns the bytes freed."""
    root = Path(path) if path is not None else cache_dir()
    if not root.exists():
        return 0
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    shutil.rmtree(root, ignore_errors=True)
    return size
