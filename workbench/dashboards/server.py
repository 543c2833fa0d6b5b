"""``workbench serve``: Voilà on the dashboards, with secure defaults.

Sources stripped, no tracebacks, only pictures served, no template or theme switching by URL,
localhost unless told otherwise, and secrets kept off the command line. Pages use the package's
``workbench`` Voilà template (``voila/templates/workbench``, found through ``JUPYTER_PATH``): the
experiment dashboard's decision is plain HTML in the streamed page, readable before Voilà's
JavaScript has loaded. Kernels are bounded: at most ``MAX_KERNELS`` at once (a "busy" page
beyond, see :mod:`workbench.dashboards.kernels`), and the kernel of a page that was closed (or
never opened its websocket) is culled after ``CULL_IDLE_TIMEOUT`` seconds; an open page's kernel
is never culled. SIGTERM, SIGHUP and SIGINT all stop the server the same way: its kernels shut
down, its private folder removed (:func:`serve`).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workbench.config import get_settings
from workbench.dashboards.catalogue import ALL_RUNS_ENV
from workbench.errors import PublishError
from workbench.tracking.mlflow import sqlite_path

DASHBOARDS = {"experiment": "experiment.ipynb", "model": "model.ipynb"}
# What Voilà may serve besides the rendered dashboards: pictures only, never code or notebooks.
FILE_ALLOWLIST = r".*\.(png|jpg|gif|svg)"
FILE_DENYLIST = r".*\.(ipynb|py)"
# Kernel bounds, measured (tests/dashboards/test_load.py, README): ~250 MB per kernel, so the
# default cap holds the dashboards' kernels under ~3 GB; a closed page frees its slot in 30-40 s.
MAX_KERNELS = 12  # running at once, the preheated ones (one per dashboard) included
CULL_IDLE_TIMEOUT = 30  # seconds a kernel without a connected page may stay idle
CULL_INTERVAL = 10
KERNEL_MANAGER = "workbench.dashboards.kernels.CappedKernelManager"
# Preheated kernels (measured in benchmarks/bench_dashboards.py, README "Dashboards in about a
# second"): the experiment dashboard keeps POOL_SIZE kernels waiting with their imports done and
# the newest run loaded, so views in a row never wait for a kernel to start; other dashboards
# keep one. A kernel handed to a viewer is replaced FILL_DELAY seconds later, once the viewer's
# page has rendered: a refill starting at once competes for the CPU with that page.
POOL_SIZE = 4
POOLED_DASHBOARD = "experiment.ipynb"
FILL_DELAY = 2.0
STOP_TIMEOUT = 15  # seconds Voilà gets to shut its kernels down after SIGINT/SIGTERM
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # what systemd, docker, kill and a closed terminal send
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# A private folder (in the server's config folder) where its kernels share the figures they drew
# (workbench.dashboards.widgets._png): a refilled kernel reads them instead of drawing them again.
FIGURES_ENV = "WORKBENCH_DASHBOARD_FIGURES"
TEMPLATE = "workbench"  # voila/templates/workbench here: `lab` plus the decision as plain HTML
TEMPLATE_ROOT = Path(__file__).resolve().parent  # a Jupyter data folder: holds voila/templates/


def voila_command(target: str | Path, *, port: int, ip: str = "127.0.0.1",
                  cull_idle_timeout: int = CULL_IDLE_TIMEOUT,
                  cull_interval: int = CULL_INTERVAL, preheat: bool = True) -> list[str]:
    """The Voilà command line with the secure defaults (token/password go in a config file).

    Every option is spelt as Voilà 0.5 knows it: a misspelt one is only warned about.
    ``preheat`` keeps one kernel per dashboard started with its imports done, waiting for the
    next viewer (the dashboards read the query string only once the request arrives).
    """
    return [
        sys.executable, "-m", "voila", str(target),
        "--no-browser",
        f"--port={int(port)}",
        "--Voila.port_retries=0",  # fail rather than silently serve on another port
        f"--Voila.ip={ip}",
        "--strip_sources=True",
        "--show_tracebacks=False",
        f"--VoilaConfiguration.file_allowlist={FILE_ALLOWLIST}",
        f"--VoilaConfiguration.file_denylist={FILE_DENYLIST}",
        f"--template={TEMPLATE}",  # found in TEMPLATE_ROOT (start_server puts it on JUPYTER_PATH)
        "--VoilaConfiguration.allow_template_override=NO",
        "--VoilaConfiguration.allow_theme_override=NO",
        f"--MappingKernelManager.cull_idle_timeout={int(cull_idle_timeout)}",
        f"--MappingKernelManager.cull_interval={int(cull_interval)}",
        f"--preheat_kernel={bool(preheat)}",
        f"--pool_size={1 if preheat else 0}",
    ]


def pool_sizes(max_kernels: int = MAX_KERNELS, pool_size: int = POOL_SIZE) -> dict[str, int]:
    """Preheated kernels per dashboard: ``pool_size`` for the experiment dashboard, one for the
    others, as long as the preheated ones leave at least half of ``max_kernels`` to viewers
    (else one each)."""
    others = len(DASHBOARDS) - 1
    room = int(max_kernels) // 2 - others
    return {"default": 1, POOLED_DASHBOARD: max(1, min(int(pool_size), room))}


def voila_config(token: str | None = None, password: str | None = None, *,
                 max_kernels: int = MAX_KERNELS, preheat: bool = True,
                 pool_size: int = POOL_SIZE, fill_delay: float = FILL_DELAY) -> dict:
    """Voilà configuration holding the secrets, so they never appear in ``ps`` or kernel env,
    and the kernel bounds: the capped kernel manager, no culling of a page that is still open,
    no buffering of a closed page's messages; with ``preheat``, the kernel pools
    (:func:`pool_sizes`, Voilà 0.5's ``VoilaKernelManager.kernel_pools_config``) and the delay
    before a used kernel is replaced (``VoilaKernelManager.fill_delay``)."""
    config: dict[str, Any] = {
        "VoilaConfiguration": {"multi_kernel_manager_class": KERNEL_MANAGER},
        "CappedKernelManager": {"max_kernels": int(max_kernels)},
        "MappingKernelManager": {"cull_connected": False, "buffer_offline_messages": False},
    }
    if preheat:
        config["VoilaKernelManager"] = {
            "kernel_pools_config": {name: {"pool_size": size} for name, size
                                    in pool_sizes(max_kernels, pool_size).items()},
            "fill_delay": float(fill_delay)}
    if token:
        config["Voila"] = {"token": token}
    if password:
        from jupyter_server.auth import passwd

        config["PasswordIdentityProvider"] = {"hashed_password": passwd(password)}
    return config


def dashboard_target(dashboard: str | None = None) -> Path:
    """The notebook (``experiment``, ``model`` or a file name) or the dashboards folder.

    Raises
    ------
    PublishError
        No such dashboard.
    """
    folder = get_settings().dashboards_dir
    if not dashboard:
        target = folder
    else:
        name = DASHBOARDS.get(dashboard, dashboard)
        target = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not target.exists():
        known = ", ".join(sorted(DASHBOARDS))
        raise PublishError(f"dashboard {dashboard or str(folder)!r} not found (known: {known})")
    return target


def required_token(ip: str, token: str | None, password: str | None) -> str | None:
    """The token to use: the given one, or a random one when bound beyond localhost unprotected."""
    if token or password or ip in LOOPBACK:
        return token or None
    return secrets.token_urlsafe(24)  # reachable from other machines: never without a secret


def dashboard_urls(target: str | Path, *, ip: str, port: int,
                   token: str | None = None) -> list[str]:
    """The address of every dashboard served from ``target`` (with the token to open it)."""
    target = Path(target)
    query = f"?token={token}" if token else ""
    host = f"[{ip}]" if ":" in ip else ip
    pages = ([f"voila/render/{name}" for name in sorted(p.name for p in target.glob("*.ipynb"))]
             if target.is_dir() else [""])
    return [f"http://{host}:{port}/{page}{query}" for page in pages]


def start_server(target: str | Path, *, port: int, ip: str = "127.0.0.1",
                 token: str | None = None, password: str | None = None,
                 config_dir: str | Path, env: dict | None = None,
                 cull_idle_timeout: int = CULL_IDLE_TIMEOUT, cull_interval: int = CULL_INTERVAL,
                 all_runs: bool = False, preheat: bool = True, max_kernels: int = MAX_KERNELS,
                 pool_size: int = POOL_SIZE, fill_delay: float = FILL_DELAY,
                 **popen_kwargs) -> subprocess.Popen:
    """Start Voilà in the background; the caller owns the process (:func:`stop_server`).

    ``config_dir`` becomes the server's working directory, where Voilà reads ``voila.json``:
    pass a fresh private folder (a ``voila.py`` found there would be executed).
    """
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / "voila.json"
    config_file.unlink(missing_ok=True)
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from the start
    with os.fdopen(fd, "w") as handle:
        json.dump(voila_config(token, password, max_kernels=max_kernels, preheat=preheat,
                               pool_size=pool_size, fill_delay=fill_delay), handle)
    run_env = dict(os.environ if env is None else env)
    settings = get_settings()
    run_env.setdefault("WORKBENCH_ROOT", str(settings.root))
    uri = run_env.get("MLFLOW_TRACKING_URI") or settings.tracking_uri
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():  # kernels run in the dashboards folder
        uri = f"sqlite:///{db.resolve()}"
    run_env["MLFLOW_TRACKING_URI"] = uri
    run_env.pop("JUPYTER_TOKEN", None)
    figures = config_dir / "figures"
    figures.mkdir(mode=0o700, exist_ok=True)
    run_env[FIGURES_ENV] = str(figures.resolve())
    jupyter_path = [str(TEMPLATE_ROOT), run_env.get("JUPYTER_PATH")]  # ours first
    run_env["JUPYTER_PATH"] = os.pathsep.join(p for p in jupyter_path if p)
    if all_runs:
        run_env[ALL_RUNS_ENV] = "1"
    cmd = voila_command(Path(target).resolve(), port=port, ip=ip,
                        cull_idle_timeout=cull_idle_timeout, cull_interval=cull_interval,
                        preheat=preheat)
    return subprocess.Popen(cmd, cwd=config_dir, env=run_env, **popen_kwargs)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux ``/proc``; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    """``signum`` to the server's process group if it leads one, else to the server."""
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_server(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT,
                signum: int = signal.SIGINT) -> int:
    """Stop Voilà and its kernels: ``signum`` (SIGINT as Ctrl-C, or SIGTERM) to its process
    group, then SIGKILL after ``timeout`` seconds. Kernels run in sessions of their own: any
    left once the server is gone are killed too."""
    kernels = _children(proc.pid) if proc.poll() is None else []
    _signal_group(proc, signum)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        code = proc.wait()
    deadline = time.monotonic() + 5  # orphaned kernels notice their parent is gone within ~1 s
    for pid in kernels:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return code


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class _Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def serve(target: str | Path, *, config_dir: str | Path | None = None, **kwargs) -> int:
    """Run Voilà in the foreground until it exits or this process is told to stop.

    SIGTERM, SIGHUP and SIGINT (Ctrl-C) are forwarded to the server's process group, the
    kernels are shut down and the private configuration folder (with the token) is removed.
    Returns Voilà's exit code, or 0 once stopped by SIGTERM/SIGHUP (130 for Ctrl-C).
    """
    import tempfile

    def on_signal(signum, frame):
        raise _Stop(signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-serve-",
                                         dir=config_dir) as tmp:
            proc = start_server(target, config_dir=tmp, start_new_session=True, **kwargs)
            try:
                return proc.wait()
            except (_Stop, KeyboardInterrupt) as stop:
                for s in STOP_SIGNALS:  # a second signal must not cut the clean-up short
                    signal.signal(s, signal.SIG_IGN)
                signum = getattr(stop, "signum", signal.SIGINT)
                print(f"workbench serve: {signal.Signals(signum).name} received, stopping the "
                      "server and its kernels", file=sys.stderr, flush=True)
                stop_server(proc, signum=signal.SIGTERM if signum != signal.SIGINT
                            else signal.SIGINT)
                return 130 if signum == signal.SIGINT else 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
