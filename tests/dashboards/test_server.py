"""``workbench serve``: the Voilà command line, its secrets, and a real server's token check."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from workbench.dashboards import server
from workbench.errors import PublishError


def test_voila_command_has_the_secure_defaults():
    """The values; that Voilà recognises every option is checked on the served log (browser tests)."""
    cmd = server.voila_command("dash.ipynb", port=9999)
    assert cmd[1:4] == ["-m", "voila", "dash.ipynb"] and "--no-browser" in cmd
    values = dict(o[2:].split("=", 1) for o in cmd[4:] if "=" in o)
    assert values["Voila.ip"] == "127.0.0.1" and values["port"] == "9999"
    assert values["Voila.port_retries"] == "0"
    assert values["strip_sources"] == "True" and values["show_tracebacks"] == "False"
    assert values["VoilaConfiguration.allow_template_override"] == "NO"
    assert values["VoilaConfiguration.allow_theme_override"] == "NO"
    assert values["template"] == "workbench"  # the decision as plain HTML (browser tests)
    allow, deny = (values[f"VoilaConfiguration.file_{k}"] for k in ("allowlist", "denylist"))
    assert re.fullmatch(allow, "figures/lift.png") and re.fullmatch(allow, "a.svg")
    assert not re.fullmatch(allow, "secret.txt") and not re.fullmatch(allow, "run.json")
    assert re.fullmatch(deny, "experiment.ipynb") and re.fullmatch(deny, "workbench/config.py")
    assert int(values["MappingKernelManager.cull_idle_timeout"]) > 0
    assert int(values["MappingKernelManager.cull_interval"]) > 0
    assert values["preheat_kernel"] == "True" and values["pool_size"] == "1"
    cold = server.voila_command("dash.ipynb", port=9999, preheat=False)
    assert "--preheat_kernel=False" in cold and "--pool_size=0" in cold


def test_secrets_go_to_a_config_file_never_to_the_command_line(tmp_path):
    from jupyter_server.auth import passwd_check

    config = server.voila_config(token="tok-123", password="hunter2")
    assert config["Voila"]["token"] == "tok-123"
    hashed = config["PasswordIdentityProvider"]["hashed_password"]
    assert "hunter2" not in hashed and passwd_check(hashed, "hunter2")
    assert not any("tok-123" in part for part in server.voila_command("x", port=1))
    # bound beyond localhost without a secret: a random token is required
    assert server.required_token("127.0.0.1", None, None) is None
    assert len(server.required_token("0.0.0.0", None, None)) >= 24
    assert server.required_token("0.0.0.0", "mine", None) == "mine"
    assert server.required_token("0.0.0.0", None, "pw") is None


def test_the_config_file_is_private_and_the_kernels_find_the_store(tmp_path, monkeypatch):
    """start_server writes voila.json 0600 and gives kernels an absolute SQLite path."""
    seen = {}

    class FakePopen:  # records what would be started, starts nothing
        def __init__(self, cmd, cwd, env, **kwargs):
            seen.update(cmd=cmd, cwd=cwd, env=env)

    monkeypatch.setattr(server.subprocess, "Popen", FakePopen)
    monkeypatch.chdir(tmp_path)
    env = {"MLFLOW_TRACKING_URI": "sqlite:///rel/mlflow.db", "JUPYTER_TOKEN": "leak"}
    server.start_server("dash.ipynb", port=1, token="tok-1", config_dir=tmp_path / "cfg",
                        env=env, all_runs=True)
    config = tmp_path / "cfg" / "voila.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert '"tok-1"' in config.read_text()
    assert seen["cwd"] == tmp_path / "cfg"
    assert seen["env"]["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'rel' / 'mlflow.db'}"
    assert "JUPYTER_TOKEN" not in seen["env"]
    assert seen["env"][server.ALL_RUNS_ENV] == "1"
    assert not any("tok-1" in part for part in seen["cmd"])
    # the kernels share the figures they drew in a private folder of the server's
    figures = Path(seen["env"][server.FIGURES_ENV])
    assert figures.parent == tmp_path / "cfg" and figures.stat().st_mode & 0o777 == 0o700
    # Voilà finds the `workbench` template (extending `lab`) through JUPYTER_PATH
    root = Path(seen["env"]["JUPYTER_PATH"].split(os.pathsep)[0])
    conf = json.loads((root / "voila" / "templates" / "workbench" / "conf.json").read_text())
    assert conf["base_template"] == "lab"
    assert (root / "voila" / "templates" / "workbench" / "index.html.j2").is_file()


def test_dashboard_urls_carry_the_token_and_bracket_ipv6(tmp_path):
    (tmp_path / "b.ipynb").write_text("{}")
    (tmp_path / "a.ipynb").write_text("{}")
    assert server.dashboard_urls(tmp_path, ip="127.0.0.1", port=8866, token="t") == [
        "http://127.0.0.1:8866/voila/render/a.ipynb?token=t",
        "http://127.0.0.1:8866/voila/render/b.ipynb?token=t"]
    assert server.dashboard_urls(tmp_path / "a.ipynb", ip="::1", port=1) == ["http://[::1]:1/"]


def test_unknown_dashboard_is_a_clear_error():
    with pytest.raises(PublishError, match="not found"):
        server.dashboard_target("nope")
    assert server.dashboard_target("experiment").name == "experiment.ipynb"
    assert server.dashboard_target("model").name == "model.ipynb"


def _ctrl_c_default() -> None:
    """In the child: SIGINT as a terminal leaves it. A job started in the background (``&``, a
    CI runner) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler,
    so the Ctrl-C these tests send would be ignored (measured: the server never stopped)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_workbench_serve_requires_its_token_and_keeps_it_off_the_command_line(tmp_path):
    """``workbench serve`` end to end (no page is rendered: no kernel is started)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WORKBENCH_TOKEN="tok-" + "9" * 20,
               WORKBENCH_REPORTS_DIR=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port),
                             "--dashboard", "experiment", "--no-preheat"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_ctrl_c_default)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        base = f"http://127.0.0.1:{port}/api/kernels"

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        def where(url):  # the login page, or (authenticated) Voilà's own redirect
            try:
                response = urllib.request.build_opener(NoRedirect).open(url)
                return response.status, ""
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers.get("Location", "")

        assert where(base)[1].startswith("/login")
        assert where(base + "?token=wrong")[1].startswith("/login")
        status, location = where(base + f"?token={env['WORKBENCH_TOKEN']}")
        assert not location.startswith("/login"), (status, location)
        # the token is in no process's command line
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert env["WORKBENCH_TOKEN"] not in cmdline.read_text()
            except OSError:
                continue
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/?token=" in out
    assert proc.returncode in (0, 130)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, read from /proc independently of the code under test."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_server_its_kernels_and_removes_its_folder(tmp_path):
    """What systemd, docker and ``kill`` send: nothing may be left serving or on disk."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WORKBENCH_TOKEN="tok-" + "7" * 20, TMPDIR=str(tmp_path),
               WORKBENCH_REPORTS_DIR=str(tmp_path / "reports"),
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/m.db")
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "--port", str(port),
                             "--dashboard", "experiment"],  # preheated: a kernel is running
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (pids and _children(pids[0])):  # the server, then its preheated kernel
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no kernel started"
            pids = _children(proc.pid)
            time.sleep(0.2)
        voila = pids[0]
        kernels = _children(voila)
        folder = Path(os.readlink(f"/proc/{voila}/cwd"))  # the private folder with voila.json
        assert folder.name.startswith("workbench-serve-") and (folder / "voila.json").exists()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # to `workbench serve` alone, as docker does
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "SIGTERM" in out
        survivors = [p for p in [voila, *kernels] if _running(p)]
        assert survivors == [], survivors
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        assert not folder.exists()
    finally:
        for pid in [*pids, *(k for p in pids for k in _children(p))]:
            if _running(pid):  # an orphan left by a failed run of this test
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_kernel_bounds_go_to_the_private_config(tmp_path):
    config = server.voila_config(max_kernels=5)
    assert config["VoilaConfiguration"]["multi_kernel_manager_class"] == server.KERNEL_MANAGER
    assert config["CappedKernelManager"]["max_kernels"] == 5
    assert config["MappingKernelManager"] == {"cull_connected": False,
                                              "buffer_offline_messages": False}
    values = dict(o[2:].split("=", 1) for o in server.voila_command("x", port=1) if "=" in o)
    assert int(values["MappingKernelManager.cull_idle_timeout"]) <= 120
