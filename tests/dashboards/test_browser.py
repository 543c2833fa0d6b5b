"""The dashboards served by a real Voilà (with ``workbench serve``'s options), in headless Chromium.

One Voilà server (owned here: Popen, then terminate and wait) and one Chromium for the session.
Requests leaving the machine (Voilà's Font Awesome CDN) are blocked, so the tests are offline.
The runs shown are real readouts logged as the templates log them (see ``conftest.py`` here).
"""
from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from workbench.dashboards import server as dashboards

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"  # git-ignored
DASHBOARDS = ROOT / "notebooks" / "dashboards"
LOAD_TIMEOUT_MS = 120_000  # a page view starts a kernel; the machine may be busy
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000105e2a7b1c20000000049454e44ae426082")


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen
    log: Path
    site: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tmp_path_factory, dashboard_runs):
    """The dashboards folder served as ``workbench serve`` serves it, plus files that must not leak."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium missing: run `make browser-deps`")
    site = tmp_path_factory.mktemp("site")
    for notebook in DASHBOARDS.glob("*.ipynb"):
        shutil.copy(notebook, site / notebook.name)
    (site / "logo.png").write_bytes(PNG)
    (site / "secret.txt").write_text("TOP-SECRET-TEXT")
    (site / "helper.py").write_text("SECRET_CODE = 1\n")
    (site / "data.json").write_text('{"secret": "TOP-SECRET-JSON"}')
    port = _free_port()
    log = site.parent / "voila.log"
    with open(log, "w") as out:
        process = dashboards.start_server(site, port=port, config_dir=site.parent / "config",
                                          env=dashboard_runs.env, cull_idle_timeout=300,
                                          cull_interval=60, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "Voilà did not start:\n" + log.read_text()
                time.sleep(0.2)
        # the first view takes a preheated kernel, as a viewer's would once the pool is full
        deadline = time.monotonic() + 300
        while "Kernel pool of experiment.ipynb is filled" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the kernel pool never filled:\n" + log.read_text()
            time.sleep(0.5)
        yield Server(f"http://127.0.0.1:{port}", port, process, log, site)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _new_page(browser, served):
    context = browser.new_context(viewport={"width": 1300, "height": 2300})
    page = context.new_page()
    # offline: the Font Awesome CDN (and anything else not on this server) is refused
    page.route(lambda url: not url.startswith(served.url), lambda route: route.abort())
    return context, page


@pytest.fixture(scope="module")
def experiment_page(browser, served, dashboard_runs):
    context, page = _new_page(browser, served)
    page.goto(f"{served.url}/voila/render/experiment.ipynb", timeout=LOAD_TIMEOUT_MS)
    decision = dashboard_runs.results[dashboard_runs.latest].decision
    page.get_by_text(decision, exact=True).wait_for(timeout=LOAD_TIMEOUT_MS)
    # the decision comes first (plain HTML); the widgets once Voilà's JavaScript has run
    page.locator(".widget-dropdown").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    page.locator(".wb-results").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    yield page
    context.close()


def _body(page) -> str:
    return page.inner_text("body")


def test_dashboard_renders_the_sample_decision(experiment_page, served, dashboard_runs):
    page = experiment_page
    result = dashboard_runs.results[dashboard_runs.latest]
    sync_api.expect(page.get_by_text(result.decision, exact=True)).to_be_visible()
    sync_api.expect(page.get_by_text("The traffic split matches the plan", exact=False)) \
        .to_be_visible()
    # the decision's reasons, as the readout worded them, each visible
    assert result.reasons
    for variant, reasons in result.reasons.items():
        sync_api.expect(page.get_by_text(f"Decision for {variant}: "
                                         f"{result.decisions[variant]}", exact=True)).to_be_visible()
        for reason in reasons:
            sync_api.expect(page.locator(".wb-reasons li", has_text=reason).first).to_be_visible()
    # the correction label (comparisons counted here from the readout's p-values)
    n = sum(p == p for p in result.results["p_value"])
    label = f"adjusted, Holm across {n} comparisons"
    caption = page.locator(".wb-results caption").first
    sync_api.expect(caption).to_be_visible()
    sync_api.expect(caption).to_contain_text(label)
    # the results table: every metric x variant, its shown p-value (Holm's) and raw one
    text = _body(page)
    holm = [("< 0.0001" if p < 1e-4 else f"{p:.4f}") for p in result.results["p_value_adjusted"]]
    rows = page.locator(".wb-results tbody tr")
    assert rows.count() == len(result.results)
    raw = [("< 0.0001" if p < 1e-4 else f"{p:.4f}") for p in result.results["p_value"]]
    assert [" ".join(c.split()) for c in page.locator(".wb-results td.wb-p").all_inner_texts()] \
        == [f"{h} raw {r}" for h, r in zip(holm, raw)]
    # nothing cut off or wrapped: the table fits its box and each row is one line high
    fits = page.evaluate("""() => {
        const out = [], table = document.querySelector('.wb-results table');
        for (let a = table.parentElement; a && a !== document.body; a = a.parentElement)
            out.push([a.className, a.scrollWidth, a.clientWidth]);
        return out; }""")
    assert fits and all(scroll <= client + 1 for _, scroll, client in fits), fits
    heights = page.evaluate("""() => [...document.querySelectorAll('.wb-results tbody tr')]
        .map(r => r.getBoundingClientRect().height)""")
    assert max(heights) < 2 * min(heights), heights
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "experiment_dashboard.png"), full_page=True)
    page.locator(".wb-results").first.screenshot(path=str(ARTIFACTS / "results_table.png"))
    header = page.locator(".wb-results th").last
    sync_api.expect(header).to_have_text("verdict")
    header.scroll_into_view_if_needed()
    sync_api.expect(header).to_be_in_viewport(ratio=0.99)
    # and no clipping ancestor (ipywidgets boxes hide what overflows) cuts it off
    clipped = page.evaluate("""() => {
        const th = [...document.querySelectorAll('.wb-results th')].pop();
        const right = th.getBoundingClientRect().right, out = [];
        for (let a = th.parentElement; a; a = a.parentElement) {
            const s = getComputedStyle(a);
            if (s.overflowX !== 'visible' && a.getBoundingClientRect().right + 1 < right)
                out.push(a.className);
        }
        return out; }""")
    assert clipped == [], clipped
    # the robustness table, with the readout's one-line reading of it
    sync_api.expect(page.get_by_text("Robustness of the decision", exact=True)).to_be_visible()
    robust = page.locator(".wb-robustness tbody tr")
    sync_api.expect(robust.first).to_be_visible()
    assert robust.count() == len(result.robustness)
    from workbench.readout.robustness import summary

    assert summary(result.robustness) in text
    sync_api.expect(page.get_by_text("Arm versus arm", exact=True)).to_be_visible()
    assert len(page.locator("img").all()) >= 3  # forest, cumulative lift, segments
    assert len(page.locator(".wb-results svg").all()) == len(result.results)  # inline bars
    # sources stripped: the notebook's code is not in the page
    assert "experiment_page()" not in page.content() and "page.widget" not in page.content()
    # once the widgets are drawn, their "loading" line is gone
    sync_api.expect(page.locator(".wb-pending")).to_be_hidden()
    page.locator(".wb-robustness").first.screenshot(
        path=str(ARTIFACTS / "robustness_table.png"))
    # every option of `workbench serve` was recognised by Voilà (misspelt ones are only warned)
    log = served.log.read_text()
    assert "not recognized" not in log, log
    assert "Culling kernels with idle durations > 300 seconds" in log


def test_a_widget_change_updates_the_view(experiment_page, dashboard_runs):
    page = experiment_page
    images = page.locator("img")
    before = images.nth(1).get_attribute("src")
    page.locator(".widget-dropdown").filter(has_text="Metric").locator("select") \
        .select_option("revenue_per_user")
    page.get_by_text("Cumulative lift over time: revenue_per_user").wait_for(timeout=30_000)
    assert images.nth(1).get_attribute("src") != before
    # another experiment and run: the faulty sample, whose SRM is reported in words
    page.locator(".widget-dropdown").filter(has_text="Experiment").locator("select") \
        .select_option(dashboard_runs.faulty_experiment)
    page.get_by_text("the traffic split differs from the plan").wait_for(timeout=30_000)
    faulty = dashboard_runs.results[dashboard_runs.faulty]
    sync_api.expect(page.get_by_text(faulty.decision, exact=True)).to_be_visible()
    # the static decision (of the run shown first) is hidden, not left stale on screen
    latest = dashboard_runs.results[dashboard_runs.latest]
    sync_api.expect(page.locator("#wb-static-lead")).to_be_hidden()
    sync_api.expect(page.get_by_text(latest.decision, exact=True)).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "experiment_dashboard_srm.png"), full_page=True)
    # and back: the first run's decision once (from the widget), the static one still hidden
    page.locator(".widget-dropdown").filter(has_text="Experiment").locator("select") \
        .select_option(dashboard_runs.experiment)
    page.get_by_text("The traffic split matches the plan").wait_for(timeout=30_000)
    shown = page.get_by_text(latest.decision, exact=True)
    sync_api.expect(shown.filter(visible=True)).to_have_count(1)  # once, not twice
    sync_api.expect(shown.filter(visible=False)).to_have_count(1)  # the static one, hidden
    sync_api.expect(page.locator("#wb-static-lead")).to_be_hidden()
    sync_api.expect(page.get_by_text(faulty.decision, exact=True)).to_have_count(0)


class _Text(HTMLParser):
    """The text of an HTML page outside <script> and <style> elements."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def test_the_decision_is_plain_html_in_the_streamed_page(served, dashboard_runs):
    """The page as it arrives (no JavaScript run): the decision and its reasons are HTML text,
    not only inside the JSON scripts Voilà's JavaScript renders."""
    result = dashboard_runs.results[dashboard_runs.latest]
    with urllib.request.urlopen(f"{served.url}/voila/render/experiment.ipynb",
                                timeout=LOAD_TIMEOUT_MS / 1000) as response:
        page = response.read().decode()
    parser = _Text()
    parser.feed(page)
    text = " ".join(" ".join(parser.parts).split())
    assert result.decision in text
    for variant, decision in result.decisions.items():
        assert f"Decision for {variant}: {decision}" in text
    assert 'id=\'wb-static-lead\'' in page
    # every stylesheet and script comes from the server itself (no CDN to wait for)
    fetched = re.findall(r"<(?:link|script)\b[^>]*\b(?:href|src)=[\"']([^\"']+)", page)
    assert fetched and not [u for u in fetched if re.match(r"(https?:)?//", u)], fetched
    # the widgets are still rendered by the JavaScript (control: this is Voilà's page)
    assert "application/vnd.voila.cell-output+json" in page
    assert "application/vnd.jupyter.widget-view+json" in page


def test_the_decision_is_visible_without_the_widget_javascript(browser, served, dashboard_runs):
    """Voilà's JavaScript bundle refused: the decision is on screen all the same (no widgets)."""
    result = dashboard_runs.results[dashboard_runs.latest]
    context, page = _new_page(browser, served)
    blocked = []
    page.route("**/voila/static/voila.js*",
               lambda route: (blocked.append(route.request.url), route.abort()))
    try:
        page.goto(f"{served.url}/voila/render/experiment.ipynb", timeout=LOAD_TIMEOUT_MS)
        page.get_by_text(result.decision, exact=True).wait_for(timeout=LOAD_TIMEOUT_MS)
        sync_api.expect(page.get_by_text(result.decision, exact=True)).to_be_visible()
        for variant, decision in result.decisions.items():
            sync_api.expect(page.get_by_text(f"Decision for {variant}: {decision}",
                                             exact=True)).to_be_visible()
        page.wait_for_load_state("load", timeout=LOAD_TIMEOUT_MS)
        assert blocked  # the bundle was asked for and refused
        assert page.locator(".widget-dropdown").count() == 0  # no widgets without it
        sync_api.expect(page.locator(".wb-pending")).to_be_visible()  # and it says so
    finally:
        context.close()


def _receive(ws, seconds: float, parent_id: str, until: str | None = None) -> list[dict]:
    """Messages answering ``parent_id`` within ``seconds`` (or until one of type ``until``)."""
    messages, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(deadline - time.monotonic(), 0.05))
        try:
            message = json.loads(ws.recv())
        except Exception:  # noqa: BLE001 - timeout: nothing more arrived
            break
        if message.get("parent_header", {}).get("msg_id") == parent_id:
            messages.append(message)
            if message.get("msg_type") == until:
                break
    return messages


def _message(msg_type: str, content: dict, session: str) -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
                       "username": "viewer", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}


def test_a_viewer_cannot_execute_code(experiment_page, served, tmp_path):
    import websocket

    kernel_id = experiment_page.evaluate(
        "JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
    assert kernel_id
    session = uuid.uuid4().hex
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{served.port}/api/kernels/{kernel_id}/channels?session_id={session}",
        timeout=10)
    try:
        # control: the channel works (a kernel_info_request is allowed and answered)
        info = _message("kernel_info_request", {}, session)
        ws.send(json.dumps(info))
        replies = _receive(ws, 30, info["header"]["msg_id"], until="kernel_info_reply")
        assert any(m["msg_type"] == "kernel_info_reply" for m in replies)
        marker = tmp_path / "pwned"
        execute = _message("execute_request", {
            "code": f"open({str(marker)!r}, 'w').write('x')", "silent": False,
            "store_history": False, "user_expressions": {}, "allow_stdin": False,
            "stop_on_error": True}, session)
        ws.send(json.dumps(execute))
        answers = _receive(ws, 4, execute["header"]["msg_id"])
    finally:
        ws.close()
    assert answers == []  # no execute_reply, not even a busy status: the message was dropped
    assert not marker.exists()
    assert "execute_request" in served.log.read_text()  # Voilà logged the refusal


def _get(served, raw_path: str) -> tuple[int, str]:
    """A GET with the path sent exactly as written (no client-side normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode("latin-1")
    finally:
        conn.close()


def test_a_viewer_cannot_read_files_outside_the_allowlist(served, dashboard_runs):
    status, body = _get(served, "/voila/files/logo.png")
    assert status == 200 and body.encode("latin-1") == PNG  # control: images are served
    for path in ["/voila/files/experiment.ipynb", "/voila/files/model.ipynb",
                 "/voila/files/helper.py", "/voila/files/secret.txt", "/voila/files/data.json",
                 "/voila/files/../voila.log", "/voila/files/%2e%2e/voila.log",
                 "/voila/files/..%2fvoila.log", "/voila/files//etc/passwd",
                 "/voila/files/%2Fetc%2Fpasswd",
                 f"/voila/files/{dashboard_runs.reports_dir}/ab_test",
                 "/voila/static/../../../../pyproject.toml"]:
        status, body = _get(served, path)
        assert status in (403, 404), (path, status)
        for secret in ("TOP-SECRET", "SECRET_CODE", "root:x:0", "experiment_dashboard",
                       "Culling", "[project]"):
            assert secret not in body, (path, secret)


def test_a_missing_run_shows_a_message_not_a_traceback(browser, served):
    context, page = _new_page(browser, served)
    try:
        page.goto(f"{served.url}/voila/render/experiment.ipynb?run=no-such-run-0000",
                  timeout=LOAD_TIMEOUT_MS)
        page.get_by_text("was not found among the published runs").wait_for(
            timeout=LOAD_TIMEOUT_MS)
        text = _body(page)
        assert "Run “no-such-run-0000” was not found" in text
        for word in ("Traceback", "Error", "error", "Exception"):
            assert word not in text
    finally:
        context.close()


def test_the_model_dashboard_shows_scores_shap_and_drift(browser, served, dashboard_runs):
    logged = dashboard_runs.results[dashboard_runs.model]
    drifted = [c for c, d in logged["drift"].verdicts().items() if d]
    context, page = _new_page(browser, served)
    try:
        page.goto(f"{served.url}/voila/render/model.ipynb", timeout=LOAD_TIMEOUT_MS)
        page.get_by_text("Drift.", exact=False).first.wait_for(timeout=LOAD_TIMEOUT_MS)
        text = _body(page)
        assert f"{len(drifted)} of {logged['drift'].n_columns} columns changed" in text
        assert "gradient_boosting" in text
        assert "SHAP importance" in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "model_dashboard.png"), full_page=True)
    finally:
        context.close()
