"""Shared pieces of the widget controllers: the controller base class, figures as PNG, message boxes.

Every controller keeps its state in traitlets (tested without a kernel) and builds its ipywidgets
layout lazily in a separate view object the first time :attr:`Controller.widget` is read. Plots
are :class:`matplotlib.figure.Figure` objects (no pyplot: no global figure list, safe from a
training thread) rendered to PNG into an :class:`ipywidgets.Image`, which also shows in a static
page and outside a kernel.
"""

from __future__ import annotations

import base64
import html
import re
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ipywidgets as W
import pandas as pd
import traitlets as T
from matplotlib.figure import Figure

from ..pl._image import figure_png
from ._messages import message_html, report_errors, set_message
from ._tasks import Tasks

__all__ = ["Controller", "View", "new_figure", "figure_png", "FigureImage", "table_html", "frame_html"]

#: Colours of the widget plots (pass/fail regions and threshold as in cradlekit.pl's Figure 3).
PASS_COLOR = "#a1d99b"
FAIL_COLOR = "#fc9272"
THRESHOLD_COLOR = "#d62728"
DATA_COLOR = "#1f77b4"
GENERATED_COLOR = "#2ca02c"
OTHER_COLOR = "#d9d9d9"


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.0, 4.0)) -> tuple[Figure, Any]:
    """A pyplot-free figure with a grid of axes (``squeeze=False``: always a 2-D array)."""
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def model_of(source: Any) -> Any:
    """The model a controller uses: ``source`` itself (a model or ``None``), or a TrainingController's
    current ``model``."""
    from ..model import PerturbationModel

    if source is None or isinstance(source, PerturbationModel):
        return source
    return getattr(source, "model", None)


def table_html(rows: list[list[Any]], header: list[str], *, css_class: str = "") -> str:
    """A small HTML table (cells escaped by the caller where needed)."""
    head = "".join(f"<th style='padding:0 8px;text-align:right'>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:0 8px;text-align:right'>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def frame_html(table: pd.DataFrame, *, css_class: str = "", float_format: str = "{:.1f}", max_rows: int = 60) -> str:
    """A DataFrame as a small HTML table (values escaped; floats formatted)."""
    rows = []
    for idx, row in table.head(max_rows).iterrows():
        cells = [html.escape(str(idx))]
        for v in row.tolist():
            if isinstance(v, float):
                cells.append("—" if v != v else float_format.format(v))
            else:
                cells.append(html.escape(str(v)))
        rows.append(cells)
    header = [html.escape(str(table.index.name or ""))] + [html.escape(str(c)) for c in table.columns]
    more = f"<small>{len(table) - max_rows} more rows in the CSV export</small>" if len(table) > max_rows else ""
    return table_html(rows, header, css_class=css_class) + more


class FigureImage:
    """An :class:`ipywidgets.Image` that shows matplotlib figures as PNG at their natural size.

    The PNG is rendered at ``2 × dpi`` (sharp on high-density screens) and shown at the figure's
    size in CSS pixels (``inches × dpi``): never stretched by the layout, shrunk only to fit a
    narrower page (``max-width: 100%``, aspect kept).
    """

    def __init__(self, *, dpi: int = 80, scale: int = 2):
        self.dpi, self.scale = dpi, scale
        self.widget = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto", object_fit="contain",
                                                            display="none"))  # no broken-image icon before a figure
        self.widget.add_class("cradlekit-figure")
        self.figure: Figure | None = None

    def show(self, fig: Figure | None) -> None:
        """Render ``fig`` (``None`` clears the image)."""
        self.figure = fig
        if fig is None:
            self.widget.value = b""
            self.widget.layout.display = "none"  # no broken-image icon
            return
        self.widget.layout.display = ""
        width_px = int(round(fig.get_figwidth() * self.dpi))
        self.widget.value = figure_png(fig, dpi=self.dpi * self.scale)
        self.widget.layout.width = f"{width_px}px"


class View:
    """Base of the views: a message box bound to the controller's ``message`` trait.

    Subclasses build their widgets in ``__init__`` and set :attr:`root`.
    """

    root: W.Widget

    def __init__(self, controller: Controller):
        self.controller = controller
        self.message = W.HTML(message_html(controller.message, controller.message_level))
        self.message.add_class("cradlekit-message-box")
        controller.observe(self._on_message, names=["message", "message_level"])
        #: Widgets disabled while the controller is busy (subclasses append theirs).
        self.controls: list[W.Widget] = []
        self.busy = W.HTML()
        self.busy.add_class("cradlekit-busy")
        self.cancel = W.Button(description="Cancel", icon="times", button_style="warning",
                               layout=W.Layout(display="none", width="auto"))  # fmt: skip
        self.cancel.add_class("cradlekit-cancel")
        self.cancel.on_click(lambda _: controller.cancel())
        self.busy_box = W.HBox([self.busy, self.cancel])
        controller.observe(self._on_busy, names=["busy", "busy_title"])
        self.export_link = W.HTML()
        self.export_link.add_class("cradlekit-export-link")
        self.exports = {fmt: W.Button(description=fmt.upper(), icon="download", tooltip=f"export the figure as {fmt}",
                                      layout=W.Layout(width="auto")) for fmt in ("png", "pdf")}  # fmt: skip
        for fmt, button in self.exports.items():
            button.on_click(lambda _, f=fmt: self._export(f"figure.{f}"))
        self.csv = W.Button(description="CSV", icon="table", tooltip="export the shown table(s) as CSV",
                            layout=W.Layout(width="auto"))  # fmt: skip
        self.csv.on_click(lambda _: self._export("tables.csv"))
        self.export_bar = W.HBox([W.Label("export:"), *self.exports.values(), self.csv, self.export_link])

    def _on_message(self, change: dict) -> None:
        self.message.value = message_html(self.controller.message, self.controller.message_level)

    def _on_busy(self, change: dict | None = None) -> None:
        c = self.controller
        if c.busy:
            title = html.escape(c.busy_title or "working")
            self.busy.value = (f'<progress class="cradlekit-busy-bar" style="vertical-align:middle"></progress> '
                               f"<b>{title}…</b>")  # fmt: skip
        else:
            self.busy.value = ""
        self.cancel.layout.display = "" if c.busy else "none"
        for widget in self.controls:
            widget.disabled = c.busy

    @contextmanager
    def drawing(self, title: str):
        """Show a busy line while the figure is redrawn (synchronous; messages reach the page at once)."""
        if not self.controller.busy:
            self.busy.value = (f'<progress class="cradlekit-busy-bar" style="vertical-align:middle"></progress> '
                               f"<b>{html.escape(title)}…</b>")  # fmt: skip
        try:
            yield
        finally:
            self._on_busy()

    def _export(self, name: str) -> None:
        c = self.controller
        with report_errors(c, f"export {name}"):
            paths = c.export(name)
            links = []
            for path in paths:
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                mime = {".png": "image/png", ".pdf": "application/pdf", ".csv": "text/csv"}.get(path.suffix, "")
                links.append(f'<a download="{html.escape(path.name)}" href="data:{mime};base64,{data}">'
                             f"{html.escape(path.name)}</a>")  # fmt: skip
            self.export_link.value = " ".join(links)
            set_message(c, "Saved " + ", ".join(str(p) for p in paths) + " (or use the download link).", "info")


class Controller(Tasks):
    """Base class of the controllers: state in traits, a lazily built view, a static figure.

    Attributes
    ----------
    message
        Readable text about the last action (empty when it went well); shown in the widget.
        Library warnings raised by the action are appended to it.
    message_level
        ``"info"``, ``"warning"`` or ``"error"``.
    busy, busy_title
        A slow action is running, and what it will show (see :meth:`run_task`, :meth:`cancel`).
    log : list of str
        The package's log records of the controller's actions (kept out of the notebook's stderr).
    export_dir : str
        Folder the export buttons write to (``cradlekit_exports`` in the working directory).
    """

    message = T.Unicode("", help="readable message about the last action; '' when none")
    message_level = T.Enum(("info", "warning", "error"), default_value="info")
    export_dir = T.Unicode("cradlekit_exports")

    _view: View | None = None

    def __init__(self, **traits: Any):
        self._task_lock = threading.Lock()
        self.log: list[str] = []
        super().__init__(**traits)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables the widget shows, by name (exported as CSV)."""
        return {}

    def export_label(self) -> str:
        """What the current state shows, for export file names (e.g. ``KLF1_k3``); ``""``: none."""
        return ""

    def export(self, name: str) -> list[Path]:
        """Save the current figure (``figure.png``/``.pdf``/``.svg``) or the shown tables (``tables.csv``).

        Files go to :attr:`export_dir` as ``<controller>_<what is shown>_<name>`` (e.g.
        ``perturbationexplorer_KLF1_k3_figure.png``; one CSV per table, ``..._<table>.csv``) and
        never overwrite: a second export of the same view gets ``_2``, ``_3``... CSV numbers keep 6
        significant digits. Returns the paths written.
        """
        out = Path(self.export_dir)
        out.mkdir(parents=True, exist_ok=True)
        label = re.sub(r"[^A-Za-z0-9.+=-]+", "_", self.export_label()).strip("_")[:60]
        stem = "_".join(filter(None, [type(self).__name__.lower(), label]))
        suffix = Path(name).suffix.lower()
        if suffix == ".csv":
            tables = self.tables()
            if not tables:
                raise ValueError("this widget shows no table yet")
            names = [f"{stem}_{table_name}" for table_name in tables]
        elif suffix in (".png", ".pdf", ".svg"):
            names = [f"{stem}_{Path(name).stem}"]
        else:
            raise ValueError(f"export {name!r}: use figure.png, figure.pdf, figure.svg or tables.csv")
        number = 1
        while any((out / f"{n}{'' if number == 1 else f'_{number}'}{suffix}").exists() for n in names):
            number += 1
        paths = [out / f"{n}{'' if number == 1 else f'_{number}'}{suffix}" for n in names]
        if suffix == ".csv":
            for path, table in zip(paths, tables.values(), strict=True):
                table.to_csv(path, float_format="%.6g")
        else:
            self.static_figure().savefig(paths[0], dpi=150, bbox_inches="tight")
        return paths

    def _make_view(self) -> View:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def view(self) -> View:
        """The view object (widgets built on first access)."""
        if self._view is None:
            self._view = self._make_view()
        return self._view

    @property
    def widget(self) -> W.Widget:
        """The ipywidgets layout of this controller (display it, or let the notebook do so)."""
        return self.view.root

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return self.widget._repr_mimebundle_(**kwargs)

    def static_figure(self) -> Figure:  # pragma: no cover - abstract
        """The current state as a matplotlib figure, for static pages (books, exported HTML)."""
        raise NotImplementedError

    def show(self, *, static: bool = False) -> None:
        """Display the widget and, with ``static=True``, a static PNG of :meth:`static_figure` beside it.

        Use ``static=True`` in notebooks that are built into static pages (the book): a static page
        never runs Python callbacks, so the figure keeps the content visible there.
        """
        from IPython.display import Image, display

        display(self.widget)
        if static:
            display(Image(data=figure_png(self.static_figure(), dpi=100)))
