"""A real Voilà server (``start_server``, as ``workbench serve`` starts it) under viewer load.

One server for the module, with a small kernel cap and short culling so the test is quick: a
crafted widget message gets no traceback back, and 50 sequential page loads keep the kernels and
their memory bounded, every page answered (the dashboard or the "busy" page). Loopback only;
kernel processes and their RSS are read from /proc, independently of the server's own counts.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from workbench.dashboards import kernels, server
from workbench.dashboards.widgets import WIDGET_MESSAGE_REFUSED

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

ROOT = Path(__file__).resolve().parents[2]
MAX_KERNELS = 3  # two preheated (one per dashboard) + one viewer; a pooled kernel handed to a
# viewer is replaced only once a slot frees, so kernels never exceed the cap
POOL = 2
CULL_IDLE, CULL_INTERVAL = 20, 2  # short: a slot frees during the loop
KERNEL_RSS_BOUND_MB = 450  # per kernel; measured ~250 MB for a rendered experiment dashboard
PAGE = "/voila/render/experiment.ipynb"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Served:
    def __init__(self, port, process, log):
        self.port, self.process, self.log = port, process, log
        self.url = f"http://127.0.0.1:{port}"

    def kernels(self) -> list[int]:
        return _children(self.process.pid)

    def get(self, path: str = PAGE) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=180) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory, dashboard_runs):
    site = tmp_path_factory.mktemp("load-site")
    for notebook in (ROOT / "notebooks" / "dashboards").glob("*.ipynb"):
        shutil.copy(notebook, site / notebook.name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = site.parent / "voila-load.log"
    with open(log, "w") as out:
        process = server.start_server(site, port=port, config_dir=site.parent / "load-config",
                                      env=dashboard_runs.env, max_kernels=MAX_KERNELS,
                                      cull_idle_timeout=CULL_IDLE, cull_interval=CULL_INTERVAL,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        # the series starts with both pools filled (a first view racing the pools' start can
        # find every slot taken: see the closing note of 2026-12-03)
        while not all(f"Kernel pool of {nb} is filled" in log.read_text()
                      for nb in server.DASHBOARDS.values()):
            assert process.poll() is None and time.monotonic() < deadline + 120, log.read_text()
            time.sleep(0.2)
        yield Served(port, process, log)
    finally:
        server.stop_server(process)


def _message(msg_type: str, content: dict, session: str) -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
                       "username": "viewer", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}


def test_crafted_widget_messages_get_no_traceback(served):
    websocket = pytest.importorskip("websocket")
    status, page = served.get()
    assert status == 200, page
    config = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                       page, re.S)
    kernel_id = json.loads(config.group(1))["kernelId"]
    model_ids = set(re.findall(r'"model_id": "([0-9a-f]{32})"', page))
    assert kernel_id and model_ids
    session = uuid.uuid4().hex
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{served.port}/api/kernels/{kernel_id}/channels?session_id={session}",
        timeout=10)
    received = []
    try:
        crafted = []
        for model_id in sorted(model_ids):
            for data in ({"method": "update", "state": {"index": 10 ** 9}},
                         {"method": "update", "state": {"index": "x"}, "buffer_paths": [["a"]]},
                         {"method": "update", "state": {"layout": "IPY_MODEL_nope"}},
                         {"method": "no-such-method"}, {"bogus": 1}, None):
                crafted.append(_message("comm_msg", {"comm_id": model_id, "data": data},
                                        session))
        crafted.append(_message("comm_msg", {"comm_id": "0" * 32, "data": {}}, session))
        crafted.append(_message("comm_open", {"comm_id": uuid.uuid4().hex,
                                              "target_name": "no.such.target", "data": {}},
                                session))
        for message in crafted:
            ws.send(json.dumps(message))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ws.settimeout(max(deadline - time.monotonic(), 0.05))
            try:
                received.append(ws.recv())
            except Exception:  # noqa: BLE001 - timeout: nothing more arrived
                break
    finally:
        ws.close()
    everything = "\n".join(received)
    assert WIDGET_MESSAGE_REFUSED in everything  # control: the kernel did handle them
    assert "Traceback" not in everything
    assert not re.search(r"(/[\w.+-]+)+\.py", everything), everything[:2000]
    assert "site-packages" not in everything and "File \"" not in everything
    # the operator still has the whole story, in the server's log
    log = served.log.read_text()
    assert "widget message failed" in log and "Traceback" in log


@pytest.mark.slow
def test_fifty_page_loads_keep_kernels_and_memory_bounded(served):
    """50 sequential loads of the experiment dashboard (plain GETs: each starts a kernel)."""
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            pids = served.kernels()
            samples.append((len(pids), _rss_mb(pids)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    answers = []
    started = time.monotonic()
    try:
        for _ in range(50):
            assert time.monotonic() - started < 420, ("load loop took too long", answers)
            status, body = served.get()
            busy = status == 503 and kernels.BUSY_MESSAGE.format(n=MAX_KERNELS) in body
            assert status == 200 or busy, (status, body[-500:])
            if status == 200:
                assert "jupyter-config-data" in body and "Traceback" not in body
            answers.append(status)
            count = len(served.kernels())
            assert count <= MAX_KERNELS, answers
            time.sleep(1.0)
    finally:
        stop.set()
        sampler.join()
    peak_kernels = max(n for n, _ in samples)
    peak_rss = max(r for _, r in samples)
    print(f"\nload: {answers.count(200)} pages, {answers.count(503)} busy, "
          f"peak {peak_kernels} kernels / {peak_rss:.0f} MB, {time.monotonic() - started:.0f} s")
    assert peak_kernels <= MAX_KERNELS
    assert peak_rss <= MAX_KERNELS * KERNEL_RSS_BOUND_MB
    assert answers.count(503) >= 1  # the cap was reached...
    first_busy = answers.index(503)
    assert 200 in answers[first_busy:]  # ...and closed pages' kernels were culled, freeing slots
    # after the loop, every viewer's kernel is culled: only the preheated ones are left
    deadline = time.monotonic() + CULL_IDLE + 6 * CULL_INTERVAL + 20
    while len(served.kernels()) > POOL and time.monotonic() < deadline:
        time.sleep(0.5)
    left = served.kernels()
    print(f"after: {len(left)} kernels / {_rss_mb(left):.0f} MB")
    assert len(left) <= POOL
    assert _rss_mb(left) <= POOL * KERNEL_RSS_BOUND_MB
    assert "Culling 'idle' kernel" in served.log.read_text()
