"""Shared pieces of the widget controllers: the controller base class, figures as PNG, message boxes.

Every controller keeps its state in traitlets (tested without a kernel) and builds its ipywidgets
layout lazily in a separate view object the first time :attr:`Controller.widget` is read. Plots
are :class:`matplotlib.figure.Figure` objects (no pyplot: no global figure list, safe from a
training thread) rendered to PNG into an :class:`ipywidgets.Image`, which also shows in a static
page and outside a kernel.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import traitlets as T
from matplotlib.figure import Figure

from ..pl._image import figure_png
from ._messages import message_html

__all__ = ["Controller", "View", "new_figure", "figure_png", "FigureImage", "table_html"]

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


def table_html(rows: list[list[Any]], header: list[str], *, css_class: str = "") -> str:
    """A small HTML table (cells escaped by the caller where needed)."""
    head = "".join(f"<th style='padding:0 8px;text-align:right'>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:0 8px;text-align:right'>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    cls = f' class="{css_class}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class FigureImage:
    """An :class:`ipywidgets.Image` that shows matplotlib figures as PNG."""

    def __init__(self, *, width: str | None = None, dpi: int = 80):
        self.dpi = dpi
        # max_width: shrink to the page (a static book column is narrower than JupyterLab)
        self.widget = W.Image(format="png", layout=W.Layout(width=width, max_width="100%") if width
                              else W.Layout(max_width="100%"))

    def show(self, fig: Figure | None) -> None:
        """Render ``fig`` (``None`` clears the image)."""
        self.widget.value = b"" if fig is None else figure_png(fig, dpi=self.dpi)


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

    def _on_message(self, change: dict) -> None:
        self.message.value = message_html(self.controller.message, self.controller.message_level)


class Controller(T.HasTraits):
    """Base class of the controllers: state in traits, a lazily built view, a static figure.

    Attributes
    ----------
    message
        Readable text about the last action (empty when it went well); shown in the widget.
    message_level
        ``"info"``, ``"warning"`` or ``"error"``.
    """

    message = T.Unicode("", help="readable message about the last action; '' when none")
    message_level = T.Enum(("info", "warning", "error"), default_value="info")

    _view: View | None = None

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
