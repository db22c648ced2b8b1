"""Widgets of a :class:`~cradlekit.widgets.LatentExplorer`: settings, gene search, groups, the plot, hover, lasso.

The plot is an interactive matplotlib canvas of ``ipympl`` (the ecosystem's widget backend) when it
is installed: hovering a cell shows its id, perturbation, split and QC status below the plot, and a
lasso drawn on it selects cells that can be named and written to ``obs``. Without ``ipympl`` (and
in static pages) the same figure is shown as a PNG.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from ._latent_draw import draw_embedding
from ._messages import report_errors, set_message
from ._views import FigureImage, View

__all__ = ["LatentView"]

_WIDE = {"description_width": "initial"}


def _canvas(fig):
    """An ipympl canvas for ``fig`` (no pyplot), or ``None`` without ipympl."""
    try:
        from ipympl.backend_nbagg import Canvas, FigureManager
    except ImportError:
        return None
    canvas = Canvas(fig)
    FigureManager(canvas, 0)
    canvas.header_visible = False
    canvas.footer_visible = False
    canvas.resizable = False
    canvas.toolbar_position = "right"
    return canvas


class LatentView(View):
    """Widgets of a :class:`LatentExplorer`."""

    def __init__(self, controller, *, interactive: bool | None = None):
        super().__init__(controller)
        c = controller
        self.source = W.ToggleButtons(options=["data", "generated"], description="cells", style=_WIDE)
        self.method = W.ToggleButtons(options=[("UMAP", "umap"), ("t-SNE", "tsne")], description="method",
                                      style=_WIDE)  # fmt: skip
        self.color_by = W.ToggleButtons(options=["artifact", "perturbation", "group", "split", "gene", "selection"],
                                        description="colour by", style=_WIDE)  # fmt: skip
        for name in ("source", "method", "color_by"):
            widget = getattr(self, name)
            widget.value = getattr(c, name)
            widget.observe(lambda ch, n=name: self._set(n, ch["new"]), names="value")
            c.observe(lambda ch, w=widget: setattr(w, "value", ch["new"]), names=name)
        self.gene = W.Combobox(placeholder="gene symbol, e.g. GATA1", description="gene", ensure_option=False,
                               continuous_update=False, style=_WIDE, layout=W.Layout(width="260px"))  # fmt: skip
        self.gene.add_class("cradlekit-latent-gene")
        self.gene.observe(self._on_gene_typed, names="value")
        self.select = W.SelectMultiple(options=c.categories, value=c.selected, rows=12, description="show",
                                       layout=W.Layout(width="230px"))  # fmt: skip
        self.select.observe(self._on_select, names="value")
        self.all = W.Button(description="all", layout=W.Layout(width="60px"))
        self.none = W.Button(description="none", layout=W.Layout(width="60px"))
        self.all.on_click(lambda _: setattr(c, "selected", list(c.categories)))
        self.none.on_click(lambda _: setattr(c, "selected", []))
        self.name = W.Text(placeholder="name of the lasso selection", layout=W.Layout(width="230px"))
        self.write = W.Button(description="Write selection to obs", icon="save", layout=W.Layout(width="230px"))
        self.write.on_click(lambda _: self._write_selection())
        self.hover = W.HTML("<small>hover a cell for its id, perturbation, split and QC status</small>")
        self.hover.add_class("cradlekit-latent-hover")
        self.lasso: list[str] = []
        self.controls = [self.source, self.method, self.color_by, self.gene, self.select, self.all, self.none,
                         self.write]  # fmt: skip
        self._syncing = False
        use_canvas = interactive if interactive is not None else True
        self.canvas = _canvas(draw_embedding(c)) if use_canvas else None
        self.image = FigureImage()
        if self.canvas is not None:
            self.canvas.mpl_connect("motion_notify_event", self._on_hover)
            plot = self.canvas
        else:
            plot = self.image.widget
        c.observe(self._render, names="revision")
        c.observe(self._on_busy_plot, names="busy")
        self._render()
        self._on_busy()
        side = W.VBox([self.gene, self.select, W.HBox([self.all, self.none]), self.name, self.write])
        self.root = W.VBox([
            self.source, self.method, self.color_by, self.busy_box, self.message,
            W.HBox([side, W.VBox([plot, self.hover])]), self.export_bar,
        ])  # fmt: skip
        self.root.add_class("cradlekit-latent")

    def _set(self, name: str, value) -> None:
        if self._syncing or getattr(self.controller, name) == value:
            return
        with self.controller.in_background():  # the user waits with a busy bar and a Cancel button
            setattr(self.controller, name, value)

    def _on_gene_typed(self, change) -> None:
        c = self.controller
        text = str(change["new"]).strip()
        self.gene.options = tuple(c.find_genes(text)) if text else ()
        if text and text.upper() in {g.upper() for g in c.find_genes(text, limit=1000)}:
            c.gene = text
            if c.color_by != "gene":
                self._set("color_by", "gene")

    def _on_select(self, change) -> None:
        if not self._syncing:
            self.controller.selected = [str(v) for v in change["new"]]

    def _on_busy_plot(self, change) -> None:
        if change["new"]:
            self._render()

    def _write_selection(self) -> None:
        c = self.controller
        if not self.lasso:
            set_message(c, "Draw a lasso around cells on the plot first (ipympl needed), then name it.", "warning")
            return
        if c.select_cells(self.lasso, name=self.name.value):
            self.lasso = []

    def _on_lasso(self, vertices) -> None:
        c = self.controller
        self.lasso = c.cells_in_polygon(vertices)
        set_message(c, f"{len(self.lasso)} cells in the lasso: name them and press 'Write selection to obs'.",
                    "info")  # fmt: skip

    def _on_hover(self, event) -> None:
        c = self.controller
        if event.inaxes is None or event.xdata is None or c.embedding.empty or not event.inaxes.collections:
            return
        xy = c.embedding[["x", "y"]].to_numpy()
        ax = event.inaxes
        pix = ax.transData.transform(xy)
        d = np.hypot(pix[:, 0] - event.x, pix[:, 1] - event.y)
        i = int(np.argmin(d))
        if d[i] > 8:  # pixels
            return
        with report_errors(c, "describe the cell"):
            info = c.cell_info(str(c.embedding.index[i]))
            self.hover.value = " · ".join(f"<b>{html.escape(k)}</b>: {html.escape(str(v))}" for k, v in info.items())

    def _render(self, change=None) -> None:
        c = self.controller
        self._syncing = True
        try:
            with self.select.hold_sync():  # options and selection in one message (no stale indices)
                self.select.value = ()
                self.select.options = tuple(c.categories)
                self.select.value = tuple(s for s in c.selected if s in c.categories)
            for name in ("source", "method", "color_by"):
                getattr(self, name).value = getattr(c, name)
        finally:
            self._syncing = False
        with self.drawing(f"drawing the {c.title}"):
            self._draw()

    def _draw(self) -> None:
        c = self.controller
        if self.canvas is not None:
            fig = draw_embedding(c, self.canvas.figure)
            self.canvas.figure.set_dpi(80)
            axes = [ax for ax in fig.axes if ax.collections]
            if axes:
                from matplotlib.widgets import LassoSelector

                self._selector = LassoSelector(axes[0], self._on_lasso)
            self.canvas.draw_idle()
        else:
            self.image.show(c.static_figure())
