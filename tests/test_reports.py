"""The stakeholder reports (``report.html`` of each template's run) are readable.

Each template runs once through papermill on the small sample; its report must not contain
what a reader should never see: a table whose first column is a bare 0..n-1 index, a stderr
box (warnings), a frame clipped to a small fixed height (the browser's default 150 px for an
iframe without a height), numbers in e-notation, reprs of dataclasses, the decision printed
twice. The checks read the HTML with the standard library's parser, not with our code.
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

TEMPLATES = ["ab_test", "model_experiment", "explain", "drift_report"]
MIN_FRAME_PX = 400  # an embedded report shorter than this is clipped
E_NOTATION = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?[eE][-+]\d+(?![\w.])")  # as Python writes it
DATACLASS_REPR = re.compile(r"\b[A-Z]\w*\((?:\w+=[^,()]*(?:, )?){2,}")
PX = re.compile(r"height\s*[:=]\s*[\"']?\s*(\d+(?:\.\d+)?)\s*(px)?", re.I)


class _Report(HTMLParser):
    """Visible text, tables (rows of ``(tag, text)`` cells) and iframes of an HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tables: list[list[list[tuple[str, str]]]] = []
        self.iframes: list[dict] = []
        self.styled_heights: list[str] = []
        self.stderr_boxes = 0
        self._skip = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []
            self.tables[-1][-1].append((tag, self._cell))
        elif tag == "iframe":
            self.iframes.append(attrs)
        if (attrs.get("data-mime-type") == "application/vnd.jupyter.stderr"
                or "output_stderr" in (attrs.get("class") or "")):
            self.stderr_boxes += 1
        if tag != "iframe" and "height" in (attrs.get("style") or ""):
            self.styled_heights.append(attrs["style"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> _Report:
    page = _Report()
    page.feed(html)
    page.tables = [[[(tag, "".join(parts).strip()) for tag, parts in row] for row in table]
                   for table in page.tables]
    return page


def index_tables(page: _Report) -> list[list[str]]:
    """First columns of the tables whose first column is a bare 0..n-1 (or 1..n) index."""
    found = []
    for table in page.tables:
        body = [row for row in table if row and not all(tag == "th" for tag, _ in row)]
        if not body:
            continue
        first = [row[0][1] for row in body]
        numbers = [int(v) for v in first if re.fullmatch(r"\d+", v)]
        if len(numbers) == len(first) and numbers in (list(range(len(first))),
                                                      list(range(1, len(first) + 1))):
            found.append(first)
    return found


def clipped_frames(page: _Report) -> list[str]:
    """Iframes (or styled boxes) with no height or one below :data:`MIN_FRAME_PX`."""
    bad = []
    for frame in page.iframes:
        heights = [float(m.group(1)) for m in PX.finditer(
            f"height={frame.get('height', '')!r} {frame.get('style', '')}") if m.group(1)]
        if not heights or max(heights) < MIN_FRAME_PX:
            bad.append(f"iframe height={frame.get('height')!r} style={frame.get('style')!r}")
        elif frame.get("srcdoc") is not None and "frameElement" not in frame["srcdoc"]:
            bad.append("iframe of a fixed height that does not follow its content")
    for style in page.styled_heights:
        for m in PX.finditer(style):
            if m.group(2) and float(m.group(1)) < MIN_FRAME_PX and "overflow" in style:
                bad.append(f"scrolling box: {style}")
    return bad


def readability_problems(html: str, notebook) -> list[str]:
    """Everything :mod:`tests.test_reports` forbids in a report, in words (empty: readable)."""
    page = parse(html)
    text = " ".join(" ".join(page.text).split())
    problems = [f"index column {first}" for first in index_tables(page)]
    problems += clipped_frames(page)
    if page.stderr_boxes:
        problems.append(f"{page.stderr_boxes} stderr box(es) in the HTML")
    for i, cell in enumerate(notebook.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                problems.append(f"stderr in cell {i}: {out['text'][:200]!r}")
    problems += [f"e-notation {m.group(0)!r} in {text[max(0, m.start() - 60):m.end() + 20]!r}"
                 for m in E_NOTATION.finditer(text)]
    problems += [f"repr {m.group(0)[:80]!r}" for m in DATACLASS_REPR.finditer(text)]
    return problems


# ----------------------------------------------------------------------------- the checker
def test_the_checker_finds_each_problem():
    """The checks are able to fail: each forbidden thing, alone, is found; a clean page passes."""
    import pandas as pd

    empty = nbformat.v4.new_notebook()
    frame = pd.DataFrame({"model": ["a", "b"], "auc": [0.7, 0.8]})
    clean = ("<p><b>Scores</b></p>" + frame.to_html(index=False)
             + '<iframe style="height: 900px" srcdoc="&lt;script&gt;window.frameElement'
               '&lt;/script&gt;"></iframe><p>p = 0.0001, 66,670</p>')
    assert readability_problems(clean, empty) == []
    cases = {
        "index column": frame.to_html(),  # pandas' default: the 0..n-1 index first
        "iframe height=None": "<iframe srcdoc='x'></iframe>",  # the browser's 150 px
        "iframe height='150'": "<iframe height='150' srcdoc='x'></iframe>",
        "does not follow": "<iframe height='2000' srcdoc='&lt;p&gt;x'></iframe>",
        "stderr box(es)": '<div class="jp-OutputArea-output" '
                      'data-mime-type="application/vnd.jupyter.stderr">warn</div>',
        "e-notation '6.667e+04'": "<td>6.667e+04</td>",
        "e-notation '3.041e-05'": "<p>p = 3.041e-05</p>",
        "repr 'Foo(a=1, b=2": "<pre>Foo(a=1, b=2)</pre>",
    }
    for expected, html in cases.items():
        found = readability_problems(html, empty)
        assert any(expected in p for p in found), (expected, found)
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("x")]
    book.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text="UserWarning")]
    assert any("stderr in cell 0" in p for p in readability_problems(clean, book))


# ----------------------------------------------------------------------------- the reports
@pytest.fixture(scope="module")
def reports(template_runs):
    """Every template run once on the small sample (tests/conftest.py: template_runs)."""
    return template_runs[0]


def _report(reports, template):
    r = reports[template]
    assert r["exit_code"] == 0, r["message"]
    run_dir = Path(r["run_dir"])
    return (run_dir, (run_dir / "report.html").read_text(encoding="utf-8"),
            nbformat.read(run_dir / "notebook.ipynb", as_version=4),
            json.loads((run_dir / "run.json").read_text()))


@pytest.mark.parametrize("template", TEMPLATES)
def test_report_is_readable(reports, template):
    _, html, notebook, record = _report(reports, template)
    assert readability_problems(html, notebook) == []
    decision = record["summary"].get("decision")
    if decision:  # the A/B decision is stated once, not once per summary
        headline = f"{record['summary'].get('experiment_id', '')}: {decision}"
        assert " ".join(" ".join(parse(html).text).split()).count(headline) == 1


def test_explain_report_names_the_comparisons_winner(reports):
    _, html, _, record = _report(reports, "explain")
    _, _, _, comparison = _report(reports, "model_experiment")
    best = comparison["summary"]["best_model"]
    assert record["summary"]["model"] == best
    text = " ".join(" ".join(parse(html).text).split())
    assert f"Model explained. {best}: the best model" in text
    assert comparison["run_id"][:8] in text  # the run it comes from


def test_drift_report_says_the_verdict_in_words_and_embeds_evidently(reports):
    _, html, _, record = _report(reports, "drift_report")
    text = " ".join(" ".join(parse(html).text).split())
    assert re.search(r"Dataset drift: (yes|no) \(\d+ of \d+ columns drifted, share [\d.]+ "
                     r"(<|>=) 0\.5\)", text)
    assert record["summary"]["verdict"] in text
    frames = parse(html).iframes
    assert len(frames) == 1 and "drawDashboard" in frames[0]["srcdoc"]  # Evidently's app
