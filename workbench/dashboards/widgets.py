"""The Voilà dashboards (ipywidgets). The notebooks in ``notebooks/dashboards/`` only call
:func:`experiment_page` (the experiment dashboard with its decision as plain HTML first, for
``workbench serve``'s ``workbench`` template) and :func:`model_dashboard`;
:func:`experiment_dashboard` is the experiment dashboard as one widget.

The experiment dashboard loads a run's readout record in one call and renders it; the model
dashboard shows what the model templates logged. Viewer input (dropdowns, the query string) is
only matched against existing runs and metrics, and escaped wherever it is shown.
"""
from __future__ import annotations

import hashlib
import html
import io
import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from workbench.dashboards import text
from workbench.dashboards.catalogue import (
    LoadedRun,
    RunRecord,
    find_run,
    list_runs,
    load_run,
    published_only_default,
)
from workbench.dashboards.server import FIGURES_ENV
from workbench.errors import DataError
from workbench.readout.record import RESULTS, ROBUSTNESS, SEGMENTS, TIMESERIES, ReadoutRecord
from workbench.tracking.plans import TABLE as PLAN_TABLE

log = logging.getLogger(__name__)

MODEL_TABLES = ("scores", "shap_importance", "drift")
_BOX = ("padding:10px 14px;margin:6px 0;border-radius:6px;border-left:6px solid {colour};"
        "background:{background};font-size:14px;line-height:1.45")
_STYLES = {"info": ("#4C72B0", "#EEF3FA"), "good": ("#2E8B57", "#EDF7F0"),
           "warning": ("#D98E04", "#FDF6E7"), "bad": ("#C44E52", "#FBEDEE")}


# ------------------------------------------------------------------------------- HTML
def esc(value: Any) -> str:
    """``value`` as text safe inside HTML."""
    return html.escape(str(value), quote=True)


def box(inner_html: str, kind: str = "info") -> str:
    """A coloured box (``info``, ``good``, ``warning``, ``bad``) around some HTML."""
    colour, background = _STYLES[kind]
    return f'<div style="{_BOX.format(colour=colour, background=background)}">{inner_html}</div>'


def table_html(head: list[str], rows: list[list[Any]]) -> str:
    """A small HTML table of escaped cells."""
    th = "".join(f"<th style='text-align:left;padding:3px 10px;white-space:nowrap'>{esc(h)}"
                 "</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='padding:3px 10px'>{esc(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return (f"<table style='border-collapse:collapse;font-size:13px'><thead><tr>{th}</tr>"
            f"</thead><tbody>{body}</tbody></table>")


def _bullets(lines: list[str], margin: str = "6px 0 0 0") -> str:
    if not lines:
        return ""
    return (f"<ul style='margin:{margin}'>" + "".join(f"<li>{esc(s)}</li>" for s in lines)
            + "</ul>")


def _reasons(items: list[tuple[str, list[str]]]) -> str:
    """Each variant's decision with its reasons under it (nested bullets)."""
    if not items:
        return ""
    return ("<ul class='wb-reasons' style='margin:6px 0 0 0'>" + "".join(
        f"<li><b>{esc(head)}</b>" + _bullets(why, "2px 0 4px 0") + "</li>"
        for head, why in items) + "</ul>")


# Widget HTML inherits a 28 px line height and clips what overflows: tables set their own
# line height and scroll sideways inside a full-width widget rather than being cut off.
_TABLE_WRAP = "<div style='line-height:1.4;overflow-x:auto;max-width:100%'>{}</div>"


# ------------------------------------------------------------------------------- kernel side
def plots():
    """:mod:`workbench.plots.experiment` (imported on first use: it pulls in matplotlib)."""
    from workbench.plots import experiment

    return experiment


WIDGET_MESSAGE_REFUSED = "A widget message could not be handled; nothing was changed."
_KERNEL_LOGGERS = ("Comm", "ipykernel.comm", "traitlets", "IPKernelApp")


def _server_log_stream():
    """The kernel's own stderr (the server's log), not the copy ipykernel sends the viewer."""
    fd = getattr(sys.stderr, "_original_stdstream_copy", None)  # fd 2 is forwarded: its copy
    if fd is None:
        if getattr(sys.stderr, "_should_watch", True):  # unknown stream: say nothing
            return None
        fd = 2  # ipykernel does not forward fd 2 (e.g. under pytest): it is the server's log
    try:
        return os.fdopen(os.dup(fd), "w", buffering=1, errors="replace")
    except OSError:
        return None


def quiet_tracebacks() -> None:
    """In a dashboard kernel, keep every traceback away from the viewer.

    ipywidgets answers a malformed widget (comm) message or a failing callback with
    ``showtraceback()`` (an ``error`` message with the full traceback, paths and source lines),
    and the kernel's loggers write to a stderr that ipykernel forwards to the page. Here the
    traceback and those log lines go to the server's log only, and the viewer gets one line,
    :data:`WIDGET_MESSAGE_REFUSED`, with the exception's type name. Idempotent; outside IPython
    it does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_workbench_quiet", False):
        return
    stream = _server_log_stream()
    handler = (logging.StreamHandler(stream) if stream is not None
               else logging.NullHandler())
    handler.setLevel(logging.WARNING)  # no message contents at debug level
    handler.setFormatter(logging.Formatter("[dashboard kernel] %(levelname)s | %(name)s | "
                                           "%(message)s"))
    for name in _KERNEL_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    app_log = getattr(getattr(shell, "kernel", None), "log", None)
    if isinstance(app_log, logging.Logger) and app_log.name not in _KERNEL_LOGGERS:
        for old in list(app_log.handlers):
            app_log.removeHandler(old)
        app_log.addHandler(handler)
        app_log.propagate = False
    server_log = logging.getLogger("workbench.dashboards.kernel")
    server_log.handlers[:] = [handler]
    server_log.propagate = False
    publish = getattr(shell, "_showtraceback", None)

    def showtraceback(exc_tuple=None, *args, **kwargs):
        etype, value, tb = exc_tuple if exc_tuple is not None else sys.exc_info()
        if etype is None:
            etype, value = RuntimeError, RuntimeError("no exception")
        server_log.error("widget message failed", exc_info=(etype, value, tb))
        if publish is not None:
            line = f"{WIDGET_MESSAGE_REFUSED} ({etype.__name__})"
            publish(etype, line, [line])

    shell.showtraceback = showtraceback
    shell._workbench_quiet = True


def warm_up() -> None:
    """Import what showing a dashboard needs (done by a preheated kernel before any viewer),
    and keep tracebacks away from viewers (:func:`quiet_tracebacks`). Matplotlib is imported
    only to draw a figure that no kernel of the server has drawn yet (:func:`_png`)."""
    quiet_tracebacks()
    import ipywidgets  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import workbench.data.quality  # noqa: F401 - the check names and statuses


def preheated() -> bool:
    """True in a kernel Voilà preheated (it waits for its viewer in :func:`wait_for_viewer`)."""
    return os.environ.get("VOILA_PREHEAT", "False") == "True"


def wait_for_viewer() -> None:
    """In a preheated Voilà kernel, block until a viewer's request arrives (sets QUERY_STRING).

    Outside Voilà's preheat mode this returns at once.
    """
    if preheated():
        from voila.utils import wait_for_request

        wait_for_request()


def query_parameters(query_string: str | None = None) -> dict[str, str]:
    """The page's query parameters (Voilà puts them in ``QUERY_STRING``), first value of each.

    Values come from the viewer: they are cut to 200 characters and only ever compared with
    names of existing runs and metrics.
    """
    if query_string is None:
        query_string = os.environ.get("QUERY_STRING", "")
    parsed = parse_qs(query_string or "", keep_blank_values=False)
    return {k: v[0][:200] for k, v in parsed.items() if v}


def _figure_png(fig) -> bytes:
    if not hasattr(fig, "savefig") and hasattr(fig, "get_figure"):  # an Axes
        fig = fig.get_figure()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    if getattr(fig, "number", None) is not None:  # made through pyplot: free it
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buffer.getvalue()


def _new_axes(height: float, width: float = 6.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _plotted(plot, frame, *, height: float, width: float = 6.4, **kwargs):
    """A figure drawn by a :mod:`workbench.plots.experiment` function on a tidy frame."""
    fig, ax = _new_axes(height, width)
    plot(frame, ax=ax, **kwargs)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- caches
# Drawing the figures is nearly all of a dashboard's kernel time (~0.3 s each, several seconds
# on a loaded machine), and reading a run's tables is most of the rest. A preheated kernel
# loads the newest run and draws its default view before its viewer arrives
# (ExperimentDashboard.prepare); the page then takes both from here. Keyed by the run's id,
# folder and run.json modification time: a rewritten run is read and drawn again.
_LOADED: dict[tuple, LoadedRun] = {}
_PNGS: dict[tuple, bytes] = {}
_CACHED_RUNS = 4  # a kernel serves one page: a few runs chosen in its dropdowns at most


def _run_key(record: RunRecord) -> tuple:
    try:
        mtime = (record.path / "run.json").stat().st_mtime_ns
    except OSError:
        mtime = None
    return (record.run_id, str(record.path), mtime)


def _evict(cache: dict, keep: set) -> None:
    for key in [k for k in cache if (k[0] if isinstance(k[0], tuple) else k) not in keep]:
        del cache[key]


def cached_run(run_id: str, runs: list[RunRecord]) -> LoadedRun:
    """:func:`~workbench.dashboards.catalogue.load_run`, read once per run and kernel (the
    record itself is always the fresh one from ``runs``).

    Raises
    ------
    PublishError
        No run among ``runs`` has this id.
    """
    record = find_run(run_id, runs)
    if record is None:
        return load_run(run_id, runs=runs)  # raises the catalogue's error
    key = _run_key(record)
    loaded = _LOADED.get(key)
    if loaded is None:
        loaded = load_run(record.run_id, runs=runs)
        _LOADED[key] = loaded
        if len(_LOADED) > _CACHED_RUNS:
            keep = set(list(_LOADED)[-_CACHED_RUNS:])
            _evict(_LOADED, keep)
            _evict(_PNGS, keep)
    return LoadedRun(record=record, tables=loaded.tables, figures=loaded.figures)


def _shared_png(key: tuple) -> Path | None:
    """Where the server's kernels share the PNG of ``key`` (``FIGURES_ENV``'s private folder,
    set by ``workbench serve``), or None."""
    folder = os.environ.get(FIGURES_ENV)
    if not folder:
        return None
    return Path(folder) / f"{hashlib.sha256(repr(key).encode()).hexdigest()[:40]}.png"


def _png(key: tuple, build) -> bytes:
    """The PNG of the figure ``build()`` draws, drawn once per ``key`` and kernel, and once per
    server when its kernels share a folder (a preheated kernel then reads what an earlier
    one drew instead of importing matplotlib and drawing it again)."""
    data = _PNGS.get(key)
    if data is not None:
        return data
    shared = _shared_png(key)
    try:
        data = shared.read_bytes() if shared is not None else None
    except OSError:
        data = None
    if data is None:
        data = _figure_png(build())
        if shared is not None:
            _write_shared(shared, data)
    _PNGS[key] = data
    return data


def _write_shared(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (kernels may write the same file at once)."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as out:
            out.write(data)
        os.replace(out.name, path)
    except OSError:
        log.debug("sharing figure %s failed", path, exc_info=True)


def _forest(record: ReadoutRecord):
    results = record.results
    return _plotted(plots().plot_forest, results, percent=text.is_relative(record), width=7.2,
                    height=0.45 * len(results) + 1.5)


def _cumulative(record: ReadoutRecord, metric: str):
    return _plotted(plots().plot_cumulative_lift, record.table(TIMESERIES), metric=metric,
                    percent=text.is_relative(record), height=3.6)


def _segment_rows(record: ReadoutRecord, metric: str, dimension: str | None):
    frame = record.table(SEGMENTS)
    if frame is None or frame.empty or dimension is None:
        return None
    return frame[(frame["metric"] == metric) & (frame["dimension"] == dimension)]


def _segment_bars(record: ReadoutRecord, metric: str, dimension: str):
    rows = _segment_rows(record, metric, dimension)
    return _plotted(plots().plot_segments, record.table(SEGMENTS), metric=metric,
                    dimension=dimension, percent=text.is_relative(record),
                    height=0.35 * len(rows) + 1.6)


def _has_timeseries(record: ReadoutRecord, metric: str) -> bool:
    frame = record.table(TIMESERIES)
    return frame is not None and not frame.empty and bool((frame["metric"] == metric).any())


def _choices(record: ReadoutRecord) -> tuple[list, list]:
    """The metrics and segment dimensions a record offers, in its order."""
    metrics = list(dict.fromkeys(record.results["metric"]))
    segments = record.table(SEGMENTS)
    dimensions = (list(dict.fromkeys(segments["dimension"].dropna()))
                  if segments is not None and not segments.empty else [])
    return metrics, dimensions


# ------------------------------------------------------------------------------- dashboards
class _Dashboard:
    """Shared machinery: run selection, query parameters, friendly failures."""

    kind = "experiment"

    def __init__(self, run_id: str | None, published_only: bool | None,
                 query_string: str | None):
        import ipywidgets as widgets

        warm_up()
        self.widgets = widgets
        if query_string is None:
            if preheated():  # before the viewer arrives: what any view will need
                self.prepare(published_only_default() if published_only is None
                             else published_only)
            wait_for_viewer()
        self.query = query_parameters(query_string)
        self.published_only = (published_only_default() if published_only is None
                               else published_only)
        self.requested = run_id or self.query.get("run")
        self.notice = widgets.HTML()
        self.experiment_select = widgets.Dropdown(description="Experiment",
                                                  layout=widgets.Layout(width="340px"))
        self.run_select = widgets.Dropdown(description="Run", layout=widgets.Layout(width="520px"))
        self.body = widgets.VBox()
        self.run: LoadedRun | None = None
        self.listed: list[RunRecord] = []  # every run (a readout's linked plan is looked up here)
        try:
            self.listed = list_runs()  # the published filter is applied here, on the same list
            self.runs = [r for r in self.listed if (r.published or not self.published_only)
                         and self.accepts(r)]
        except Exception as exc:  # noqa: BLE001 - a viewer never sees a traceback
            log.debug("listing runs failed", exc_info=True)
            self.runs = []
            self.notice.value = box(esc(f"{text.PART_FAILED} ({type(exc).__name__})"), "bad")

    def accepts(self, record: RunRecord) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def default(self, runs: list[RunRecord]) -> RunRecord:
        """The run shown first among ``runs`` (newest first): the newest."""
        return runs[0]

    @classmethod
    def prepare(cls, published_only: bool) -> None:
        """Work done by a preheated kernel before its viewer arrives (none by default)."""

    def _scope(self) -> str:
        return "published" if self.published_only else "logged"

    def choose(self) -> RunRecord | None:
        """The run shown first: ``?run=`` (else ``?experiment=``'s newest, else the newest); the
        notice says when the requested run is not there. None when there are no runs."""
        if not self.runs:
            scope = "published " if self.published_only else ""
            self.notice.value = self.notice.value or box(
                text.NO_RUNS.format(kind=self.kind).replace("published ", scope), "info")
            if self.requested:
                self.notice.value = box(esc(text.RUN_NOT_FOUND.format(
                    run_id=self.requested, scope=self._scope())), "warning") + self.notice.value
            return None
        chosen = self.default(self.runs)
        if self.requested:
            found = find_run(self.requested, self.runs)
            if found is None:
                self.notice.value = box(
                    esc(text.RUN_NOT_FOUND.format(run_id=self.requested, scope=self._scope()))
                    + text.SHOWING_LATEST, "warning")
            else:
                chosen = found
        elif self.query.get("experiment"):
            same = [r for r in self.runs if r.experiment == self.query["experiment"]]
            chosen = self.default(same) if same else chosen
        return chosen

    def start(self):
        """Fill the selectors (honouring ``?run=``) and render the chosen run."""
        self.present(self.choose())

    def present(self, chosen: RunRecord | None):
        """Fill the selectors with ``chosen`` selected and render it (no selectors without)."""
        if chosen is None:
            self.experiment_select.layout.display = self.run_select.layout.display = "none"
            return
        experiments = list(dict.fromkeys(r.experiment for r in self.runs))
        self.experiment_select.options = experiments
        self.experiment_select.value = chosen.experiment
        self._fill_runs(chosen.experiment, chosen.run_id)
        self.experiment_select.observe(self._on_experiment, names="value")
        self.run_select.observe(self._on_run, names="value")
        self.show(chosen.run_id)

    def _fill_runs(self, experiment: str, run_id: str | None = None):
        runs = [r for r in self.runs if r.experiment == experiment]
        self._filling = True  # setting options fires value changes: render once, after
        try:
            self.run_select.options = [(r.label, r.run_id) for r in runs]
            self.run_select.value = run_id or (self.default(runs).run_id if runs else None)
        finally:
            self._filling = False

    def _on_experiment(self, change):
        if change["new"] not in {r.experiment for r in self.runs}:  # viewer input: known only
            return
        self._fill_runs(change["new"])
        self.show(self.run_select.value)

    def _on_run(self, change):
        if getattr(self, "_filling", False) or change["new"] is None:
            return
        if change["new"] not in {r.run_id for r in self.runs}:  # viewer input: known only
            return
        if self.run is None or change["new"] != self.run.run_id:
            self.show(change["new"])

    def show(self, run_id: str):
        """Load a run and render it; any failure becomes a friendly message."""
        try:
            self.run = cached_run(run_id, self.runs)
            self.body.children = self.render(self.run)
        except Exception as exc:  # noqa: BLE001 - a viewer never sees a traceback
            log.debug("rendering run %s failed", run_id, exc_info=True)
            self.body.children = [self.widgets.HTML(box(
                esc(f"{text.PART_FAILED} ({type(exc).__name__})"), "bad"))]

    def render(self, run: LoadedRun) -> list:  # pragma: no cover - overridden
        raise NotImplementedError

    def _image(self, figure, max_width: str = "100%") -> Any:
        """An image widget of a figure, a PNG file or PNG bytes."""
        data = (figure if isinstance(figure, bytes) else figure.read_bytes()
                if isinstance(figure, Path) else _figure_png(figure))
        return self.widgets.Image(value=data, format="png",
                                  layout=self.widgets.Layout(max_width=max_width, height="auto"))

    def _drawn(self, name: tuple, build, max_width: str = "100%") -> Any:
        """An image of the figure ``build()`` draws for the shown run (drawn once: caches)."""
        return self._image(_png((_run_key(self.run.record), *name), build), max_width)

    def _message(self, sentence: str, kind: str = "info") -> list:
        return [self.widgets.HTML(box(esc(sentence), kind))]

    def _section(self, title: str, *children) -> Any:
        return self.widgets.VBox([self.widgets.HTML(f"<h3 style='margin:14px 0 4px'>{esc(title)}"
                                                    "</h3>"), *children],
                                 layout=self.widgets.Layout(margin="0 28px 0 0"))

    def _safe(self, title: str, build) -> Any:
        """A section whose failure is shown as a message instead of breaking the page."""
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._section(title, *build())
        except Exception as exc:  # noqa: BLE001
            log.debug("section %s failed", title, exc_info=True)
            return self._section(title, self.widgets.HTML(
                box(esc(f"{text.PART_FAILED} ({type(exc).__name__})"), "bad")))


# The served page (experiment_page): what the `workbench` Voilà template writes as plain HTML,
# the id of the static lead (hidden by a <style> once the viewer picks another run) and the
# class of the "loading" line (hidden by a <style> in the widget, once it is drawn).
STATIC_METADATA = {"workbench": {"static": True}}
STATIC_LEAD_ID = "wb-static-lead"
PENDING_CLASS = "wb-pending"
_HIDE_STATIC = f"<style>#{STATIC_LEAD_ID}{{display:none}}</style>"
_HIDE_PENDING = f"<style>.{PENDING_CLASS}{{display:none}}</style>"
_HEADING = "<h2 style='margin:4px 0'>Experiment results</h2>"
_STATIC_FRAME = "max-width:1400px;padding:0 12px;box-sizing:border-box"  # the widget's own frame


def decision_html(record: ReadoutRecord) -> str:
    """The decision box of a readout: headline, each variant's decision with its reasons, and
    the readout's other sentences (:func:`workbench.dashboards.text.decision_sentences`)."""
    headline, sentences = text.decision_sentences(record)
    return box(
        "<div style='font-size:13px;color:#555'>Decision</div>"
        f"<div style='font-size:20px;font-weight:600;line-height:1.3'>{esc(headline)}</div>"
        + _reasons(text.decision_reasons(record)) + _bullets(sentences), "info")


class ExperimentDashboard(_Dashboard):
    """The experiment dashboard: decision, lift, chance to win, cumulative lift, segments, SRM.

    It renders the run's :class:`~workbench.readout.record.ReadoutRecord` and nothing else; a
    plan run of the experiment (offered in the run list with its planned days) shows the plan
    it logged (headline, plan table, power curve).
    Build with :func:`experiment_dashboard`; ``widget`` is what the notebook displays.

    With ``static``, the page's heading, notice and lead (the decision box, or a plan's
    headline) of the run shown first are ``static_html`` (plain HTML, shown before the widgets:
    :func:`experiment_page`) and left out of the widget; the widget is built when ``widget`` is
    first read. Once the viewer picks another run, the widget shows that run's lead and hides
    the static one, so no decision is shown twice or stale.
    """

    kind = "experiment"

    def __init__(self, run_id=None, *, metric=None, published_only=None, query_string=None,
                 static: bool = False):
        super().__init__(run_id, published_only, query_string)
        w = self.widgets
        self.record: ReadoutRecord | None = None
        self.requested_metric = metric or self.query.get("metric")
        self.metric_select = w.Dropdown(description="Metric", layout=w.Layout(width="340px"))
        self.dimension_select = w.Dropdown(description="Segment by",
                                           layout=w.Layout(width="340px"))
        self.metric_select.observe(self._on_metric, names="value")
        self.dimension_select.observe(self._on_metric, names="value")
        self.metric_area = w.VBox()
        self.static = bool(static)
        self.static_run: str | None = None  # the run whose lead static_html shows
        self.static_html = ""
        self._widget = w.VBox([
            *([] if self.static else [w.HTML(_HEADING)]),
            self.notice, w.HBox([self.experiment_select, self.run_select]), self.body,
        ], layout=w.Layout(max_width="1400px", padding="0 12px"))
        self._chosen: RunRecord | None = None
        self._started = not self.static
        self._static_pending = self.static  # the first render leaves its lead to static_html
        if self.static:
            self._chosen = self.choose()
            self.static_html = self._static_page(self._chosen)
            self.notice.value = _HIDE_PENDING  # the notice is in the static part
        else:
            self.start()

    @property
    def widget(self):
        """The dashboard widget (built on first use with ``static``)."""
        if not self._started:
            self._started = True
            self.present(self._chosen)
        return self._widget

    def _static_page(self, chosen: RunRecord | None) -> str:
        lead = ""
        if chosen is not None:
            try:
                lead = self._view(cached_run(chosen.run_id, self.runs), lead_only=True)[0]
                self.static_run = chosen.run_id
            except Exception:  # noqa: BLE001 - the widget will say what failed, in words
                log.debug("the static lead of run %s failed", chosen.run_id, exc_info=True)
        return (f"<div style='{_STATIC_FRAME}'>{_HEADING}"
                f"<div id='{STATIC_LEAD_ID}'>{self.notice.value}{lead}</div>"
                f"<div class='{PENDING_CLASS}' style='font-size:12px;color:#555;margin:4px 0'>"
                f"{esc(text.LOADING_WIDGETS)}</div></div>")

    def accepts(self, record: RunRecord) -> bool:
        """Readouts, and the plan runs of experiments (listed with their planned days)."""
        return RESULTS in record.tables or (record.kind == "plan"
                                            and PLAN_TABLE in record.tables)

    def default(self, runs: list[RunRecord]) -> RunRecord:
        """The newest readout among ``runs`` (the newest plan when there is none)."""
        return next((r for r in runs if RESULTS in r.tables), runs[0])

    @classmethod
    def prepare(cls, published_only: bool) -> None:
        """Load the newest run and draw the figures of its default view (the first metric and
        dimension), so that a viewer of it waits for neither. Failures are left to the page."""
        import warnings

        try:
            runs = [r for r in list_runs(published_only=published_only)
                    if RESULTS in r.tables]
            if not runs:
                return
            run = cached_run(runs[0].run_id, runs)
            record = ReadoutRecord.from_logged(run.summary, run.tables)
            key = _run_key(run.record)
            metrics, dimensions = _choices(record)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _png((key, "forest"), lambda: _forest(record))
                if metrics and _has_timeseries(record, metrics[0]):
                    _png((key, "cumulative", metrics[0]), lambda: _cumulative(record, metrics[0]))
                dimension = dimensions[0] if dimensions else None
                rows = _segment_rows(record, metrics[0], dimension) if metrics else None
                if rows is not None and not rows.empty:
                    _png((key, "segments", metrics[0], dimension),
                         lambda: _segment_bars(record, metrics[0], dimension))
        except Exception:  # noqa: BLE001 - the page will say what failed, in words
            log.debug("preparing the newest run failed", exc_info=True)

    def render(self, run: LoadedRun) -> list:
        """The run's lead (decision box or plan headline) and the rest of its view; with
        ``static``, the run shown first leaves its lead to ``static_html`` and any later one
        hides that static lead."""
        lead, rest = self._view(run)
        first, self._static_pending = self._static_pending, False
        if self.static and first and run.run_id == self.static_run:
            return rest
        if self.static and self.static_run is not None:
            lead = _HIDE_STATIC + lead
        return [self.widgets.HTML(lead), *rest]

    def _view(self, run: LoadedRun, lead_only: bool = False) -> tuple[str, list]:
        """(the lead's HTML, the other widgets of the view; none with ``lead_only``)."""
        w = self.widgets
        if RESULTS not in run.tables and run.record.kind == "plan":
            if lead_only:
                return self._plan_head(run), []
            self.record = None
            self.metric_area.children = []
            return self._plan_head(run), self._plan_view(run)
        try:
            record = ReadoutRecord.from_logged(run.summary, run.tables)
        except DataError:  # an older run: say so, in one sentence
            if not lead_only:
                self.record = None
                self.metric_area.children = []
            return box(esc(text.NO_RECORD), "warning"), []
        if lead_only:
            return decision_html(record), []
        self.record = record
        srm_kind, srm_text = text.srm_status(record)
        dq_kind, dq_lines = text.quality_status(record)
        status = w.HBox([
            w.HTML(box("<b>Traffic split.</b> " + esc(srm_text), srm_kind)),
            w.HTML(box("<b>Data quality.</b> " + esc(dq_lines[0])
                       + _bullets(dq_lines[1:], "4px 0 0 0"), dq_kind))])
        table = self._wide("Results", lambda: [self._full_width(self._results_html(record))])
        lift = self._safe(f"Lift by metric ({text.level(record)} intervals)", lambda: [
            self._drawn(("forest",), lambda: _forest(record), max_width="720px")])
        extra = [self._wide(title, lambda n=name, f=frame: [
            self._full_width(self._section_html(record, n, f))])
            for name, title, frame in text.section_tables(record)]
        metrics, dimensions = _choices(record)
        self._updating = True  # one render for the new options, not one per trait change
        try:
            self.metric_select.options = metrics
            wanted = self.requested_metric if self.requested_metric in metrics else None
            self.metric_select.value = wanted or (metrics[0] if metrics else None)
            self.dimension_select.options = dimensions
            self.dimension_select.value = dimensions[0] if dimensions else None
            self.dimension_select.layout.display = None if dimensions else "none"
        finally:
            self._updating = False
        self._render_metric()
        return decision_html(record), [status, *self._plan_link(record), table, lift, *extra,
                w.HTML("<h3 style='margin:14px 0 4px'>One metric over time and by segment</h3>"),
                w.HBox([self.metric_select, self.dimension_select]), self.metric_area]

    def _plan_link(self, record: ReadoutRecord) -> list:
        """The plan the readout links to (its ``plan_run``), in a sentence; none without."""
        if not record.plan_run:
            return []
        found = find_run(str(record.plan_run), self.listed)
        sentence = (text.plan_sentence(found, linked=True) if found is not None
                    else text.PLAN_NOT_FOUND.format(run_id=record.plan_run))
        return [self.widgets.HTML(box(f"<b>{esc(text.PLAN_TITLE)}.</b> {esc(sentence)}",
                                      "info"))]

    @staticmethod
    def _plan_head(run: LoadedRun) -> str:
        """A plan run's headline box."""
        return box(f"<div style='font-size:13px;color:#555'>{esc(text.PLAN_TITLE)}</div>"
                   "<div style='font-size:18px;font-weight:600;line-height:1.3'>"
                   f"{esc(text.plan_sentence(run.record))}</div>", "info")

    def _plan_view(self, run: LoadedRun) -> list:
        """A plan run below its headline: its plan table and its power curve."""
        children = [self._wide(text.PLAN_TABLE_TITLE, lambda: [
            self._full_width(self._plan_html(run))])]
        if "power_curve" in run.figures:
            children.append(self._safe(text.PLAN_FIGURE_TITLE, lambda: [
                self._image(run.figures["power_curve"], "720px")]))
        return children

    @staticmethod
    def _plan_html(run: LoadedRun) -> str:
        frame = run.table(PLAN_TABLE)
        if frame is None or frame.empty:
            return box(esc(text.PLAN_NO_TABLE), "warning")
        return table_html(*text.plan_cells(frame, text.plan_relative(run.record)))

    def _wide(self, title: str, build) -> Any:
        """A full-width section (a table): no right margin of its own."""
        section = self._safe(title, build)
        section.layout.margin = "0"
        return section

    def _full_width(self, inner_html: str) -> Any:
        return self.widgets.HTML(_TABLE_WRAP.format(inner_html))

    @staticmethod
    def _results_html(record: ReadoutRecord) -> str:
        """THE results table (:func:`workbench.readout.table.results_table`), as in the
        notebook and the report."""
        if record.results.empty:
            return box(esc(text.NO_RESULTS), "warning")
        note = ("" if text.chance_to_win(record) else
                "<p style='font-size:12px;color:#555;max-width:640px'>"
                f"{esc(text.NO_BAYESIAN)}</p>")
        return text.results_table(record).to_html() + note

    @staticmethod
    def _section_html(record: ReadoutRecord, name: str, frame) -> str:
        """One of the record's other tables (arms, robustness, power, simulation), with the
        readout's one-line reading of the robustness table above it."""
        from workbench.readout.table import table_html

        line = text.robustness_sentence(record) if name == ROBUSTNESS else ""
        head = f"<p style='margin:2px 0 6px'>{esc(line)}</p>" if line else ""
        return head + table_html(name, frame, text.is_relative(record))

    def _on_metric(self, change):
        if change["new"] is not None and change["new"] not in change["owner"].options:
            return  # viewer input: only an offered metric or dimension
        if self.record is not None and not getattr(self, "_updating", False):
            self._render_metric()

    def _render_metric(self):
        record, metric = self.record, self.metric_select.value
        if record is None or metric is None:
            self.metric_area.children = []
            return
        self.metric_area.children = [self.widgets.HBox([
            self._safe(f"Cumulative lift over time: {metric}",
                       lambda: self._timeseries(record, metric)),
            self._safe(f"Segment breakdown: {metric}", lambda: self._segments(record, metric)),
        ])]

    def _timeseries(self, record: ReadoutRecord, metric: str):
        frame = record.table(TIMESERIES)
        if frame is None or frame.empty:
            return self._message(text.NO_TIMESERIES)
        if not _has_timeseries(record, metric):
            return self._message(text.NO_TIMESERIES_FOR.format(metric=metric))
        return [self._drawn(("cumulative", metric), lambda: _cumulative(record, metric))]

    def _segments(self, record: ReadoutRecord, metric: str):
        dimension = self.dimension_select.value
        rows = _segment_rows(record, metric, dimension)
        if rows is None:
            return self._message(text.NO_SEGMENTS)
        if rows.empty:
            return self._message(text.NO_SEGMENTS_FOR.format(dimension=dimension, metric=metric))
        return [self._drawn(("segments", metric, dimension),
                            lambda: _segment_bars(record, metric, dimension))]


def experiment_dashboard(run_id: str | None = None, *, metric: str | None = None,
                         published_only: bool | None = None, query_string: str | None = None):
    """The experiment dashboard widget.

    Parameters
    ----------
    run_id : str, optional
        Run to show first (default: ``?run=`` of the page, else the newest run).
    metric : str, optional
        Metric shown over time and by segment (default: ``?metric=``, else the first).
    published_only : bool, optional
        Offer only published runs (default True, unless ``workbench serve --all-runs``).
    query_string : str, optional
        Default: the page's (Voilà's ``QUERY_STRING``).
    """
    return ExperimentDashboard(run_id, metric=metric, published_only=published_only,
                               query_string=query_string).widget


def experiment_page(run_id: str | None = None, *, metric: str | None = None,
                    published_only: bool | None = None,
                    query_string: str | None = None) -> ExperimentDashboard:
    """The served experiment dashboard, in two notebook cells: this one displays the decision of
    the run shown first as an output the ``workbench`` Voilà template writes into the page as
    plain HTML (readable before Voilà's JavaScript has loaded), the next one displays the
    returned dashboard's ``widget``. Parameters as :func:`experiment_dashboard`'s."""
    from IPython.display import display

    dashboard = ExperimentDashboard(run_id, metric=metric, published_only=published_only,
                                    query_string=query_string, static=True)
    display({"text/html": dashboard.static_html}, raw=True, metadata=STATIC_METADATA)
    return dashboard


class ModelDashboard(_Dashboard):
    """The model dashboard: scores, SHAP importance and drift status of a model task.

    Build with :func:`model_dashboard`; ``widget`` is what the notebook displays.
    """

    kind = "model"

    def __init__(self, run_id=None, *, published_only=None, query_string=None):
        super().__init__(run_id, published_only, query_string)
        w = self.widgets
        self.experiment_select.description = "Model task"
        self.widget = w.VBox([
            w.HTML("<h2 style='margin:4px 0'>Model results</h2>"),
            self.notice, w.HBox([self.experiment_select, self.run_select]), self.body,
        ], layout=w.Layout(max_width="1200px", padding="0 12px"))
        self.start()

    def accepts(self, record: RunRecord) -> bool:
        return any(t in record.tables for t in MODEL_TABLES)

    def _source(self, run: LoadedRun, table: str) -> LoadedRun | None:
        """The chosen run if it logged ``table``, else the newest run of the same task that did
        (the templates log scores, SHAP and drift from separate runs)."""
        if table in run.tables:
            return run
        for record in self.runs:  # newest first
            if record.experiment == run.record.experiment and table in record.tables:
                return load_run(record.run_id, runs=self.runs)
        return None

    def render(self, run: LoadedRun) -> list:
        w = self.widgets
        sources = {table: self._source(run, table) for table in MODEL_TABLES}
        scores_run = sources["scores"] or run
        summary = {k: v for k, v in (run.summary or {}).items() if not isinstance(v, dict | list)}
        head = (summary.pop("headline", "") or (scores_run.summary or {}).get("headline")
                or text.MODEL_TASK.format(experiment=run.record.experiment))
        facts = [f"{k.replace('_', ' ')}: {text.cell(v)}" for k, v in list(summary.items())[:8]]
        children = [w.HTML(box(f"<div style='font-size:18px;font-weight:600'>{esc(head)}</div>"
                               + _bullets(facts), "info"))]
        drift = sources["drift"]
        if drift is not None:
            drift_kind, drift_lines = text.drift_status(drift.table("drift"), drift.summary)
        else:
            drift_kind, drift_lines = "warning", [
                text.NOT_LOGGED_FOR_TASK.format(what="drift check")]
        children.append(w.HTML(box("<b>Drift.</b> " + "<br>".join(esc(s) for s in drift_lines)
                                   + self._origin(run, drift), drift_kind)))
        children.append(self._safe("Scores", lambda: self._scores(run, sources["scores"])))
        children.append(w.HBox([
            self._safe("What drives the predictions (SHAP importance)",
                       lambda: self._shap(run, sources["shap_importance"])),
            self._safe("Drift by column", lambda: self._drift(run, sources["drift"]))]))
        return children

    @staticmethod
    def _origin(run: LoadedRun, source: LoadedRun | None) -> str:
        if source is None or source.run_id == run.run_id:
            return ""
        return ("<div style='font-size:12px;color:#555'>"
                f"{esc(text.FROM_RUN.format(label=source.record.label))}</div>")

    def _none(self, what: str):
        return self._message(text.NOT_LOGGED_FOR_TASK.format(what=what))

    @staticmethod
    def _figure(run: LoadedRun, *names: str):
        return next((run.figures[n] for n in names if n in run.figures), None)

    def _scores(self, run, source):
        if source is None:
            return self._none("model comparison")
        out = [self.widgets.HTML(self._origin(run, source))]
        table = source.table("scores")
        if table is not None and not table.empty:
            head = [str(c) for c in table.columns]
            rows = [[text.cell(v) for v in row] for row in table.itertuples(index=False)]
            out.append(self.widgets.HTML(table_html(head, rows)))
        figures = [f for f in (self._figure(source, "scores"), self._figure(source, "roc")) if f]
        if figures:
            width = f"{100 // len(figures) - 2}%"  # side by side within the page
            out.append(self.widgets.HBox([self._image(f, width) for f in figures]))
        return out

    def _shap(self, run, source):
        if source is None:
            return self._none("SHAP explanation")
        origin = self.widgets.HTML(self._origin(run, source))
        figure = self._figure(source, "shap_importance")
        if figure is not None:
            return [origin, self._image(figure)]
        table = source.table("shap_importance")
        label = next(c for c in table.columns if table[c].dtype == object)
        value = next(c for c in table.columns if c != label and table[c].dtype.kind in "fi")
        top = table.sort_values(value, ascending=False).head(15)
        fig, ax = _new_axes(0.35 * len(top) + 1.2)
        ax.barh(top[label].astype(str), top[value], color="#4C72B0")
        ax.invert_yaxis()
        ax.set_xlabel(value.replace("_", " "))
        fig.tight_layout()
        return [origin, self._image(fig)]

    def _drift(self, run, source):
        if source is None:
            return self._none("drift check")
        figure = self._figure(source, "drift")
        if figure is not None:
            return [self._image(figure)]
        table = source.table("drift")
        columns = [c for c in ("column", "method", "statistic", "threshold", "drifted", "status")
                   if c in table.columns]
        rows = [[text.cell(v) if not isinstance(v, str) else v for v in row]
                for row in table[columns].itertuples(index=False)]
        return [self.widgets.HTML(table_html(columns, rows))]


def model_dashboard(run_id: str | None = None, *, published_only: bool | None = None,
                    query_string: str | None = None):
    """The model dashboard widget (see :func:`experiment_dashboard` for the parameters)."""
    return ModelDashboard(run_id, published_only=published_only, query_string=query_string).widget
