"""Widgets of a :class:`~cradlekit.widgets.LatentExplorer`: settings, gene search, groups, the plot, hover, lasso.

The plot is an interactive matplotlib canvas of ``ipympl`` (the ecosystem's widget backend) when it
is installed: hovering a cell shows its id, perturbation, split and QC status below the plot, and a
lasso drawn on it (its outline follows the pointer) selects cells that can be named and written to
``obs``. Without ``ipympl`` (and in static pages) the same figure is shown as a PNG. The gene box
suggests genes while typing (any case) and colours by a gene as soon as its name is complete.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from ._latent_draw import PRESETS, draw_embedding
from ._messages import report_errors, set_message
from ._views import FigureImage, View

__all__ = ["LatentView"]

_WIDE = {"description_width": "initial"}
_NO_COLUMN = "—"
LASSO_STYLE = {"color": "#222222", "linewidth": 1.2, "alpha": 0.9}


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
        self.color_by = W.ToggleButtons(options=list(PRESETS), description="colour by", style=_WIDE)
        self.column = W.Dropdown(options=[_NO_COLUMN], description="or obs column", style=_WIDE,
                                 layout=W.Layout(width="300px"))  # fmt: skip
        self.column.add_class("cradlekit-latent-column")
        for name in ("source", "method"):
            widget = getattr(self, name)
            widget.value = getattr(c, name)
            widget.observe(lambda ch, n=name: self._set(n, ch["new"]), names="value")
            c.observe(lambda ch, w=widget: setattr(w, "value", ch["new"]), names=name)
        self.color_by.observe(lambda ch: ch["new"] is not None and self._set("color_by", ch["new"]), names="value")
        self.column.observe(lambda ch: ch["new"] not in (None, _NO_COLUMN) and self._set("color_by", ch["new"]),
                            names="value")  # fmt: skip
        c.observe(lambda ch: self._sync_colour(), names="color_by")
        self.gene = W.Combobox(placeholder="gene, e.g. GATA1 (any case)", description="gene", ensure_option=False,
                               continuous_update=True, style=_WIDE, layout=W.Layout(width="260px"))  # fmt: skip
        self.gene.add_class("cradlekit-latent-gene")
        self.gene.observe(self._on_gene_typed, names="value")
        self.select = W.SelectMultiple(options=c.categories, value=c.selected, rows=12, description="show",
                                       layout=W.Layout(width="230px"))  # fmt: skip
        self.select.observe(self._on_select, names="value")
        self.all = W.Button(description="all", layout=W.Layout(width="60px"))
        self.none = W.Button(description="none", layout=W.Layout(width="60px"))
        self.all.on_click(lambda _: setattr(c, "selected", list(c.categories)))
        self.none.on_click(lambda _: setattr(c, "selected", []))
        # the value arrives on Enter or when the box loses focus (a click on Write): before the click
        self.name = W.Text(placeholder="name of the lasso selection", continuous_update=False,
                           layout=W.Layout(width="230px"))  # fmt: skip
        self.name.add_class("cradlekit-latent-name")
        self.name.observe(self._on_name, names="value")
        self.write = W.Button(description="Write selection to obs", icon="save", layout=W.Layout(width="230px"))
        self.write.on_click(lambda _: self._write_selection())
        self._pending_write = False  # Write was pressed before the name arrived: write when it does
        self.hover = W.HTML(_HOVER_HINT)
        self.hover.add_class("cradlekit-latent-hover")
        self.coverage = W.HTML()
        self.coverage.add_class("cradlekit-latent-coverage")
        self.lasso: list[str] = []
        self.controls = [self.source, self.method, self.color_by, self.column, self.gene, self.select, self.all,
                         self.none, self.write]  # fmt: skip
        self._syncing = False
        self._shown = None
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
            self.source, self.method, W.HBox([self.color_by, self.column], layout=W.Layout(flex_flow="row wrap")),
            self.busy_box, self.message,
            W.HBox([side, W.VBox([plot, self.coverage, self.hover])], layout=W.Layout(flex_flow="row wrap")),
            self.export_bar,
        ])  # fmt: skip
        self.root.add_class("cradlekit-latent")

    def _set(self, name: str, value) -> None:
        if self._syncing or getattr(self.controller, name) == value:
            return
        with self.controller.in_background():  # the user waits with a busy bar and a Cancel button
            setattr(self.controller, name, value)

    def _sync_colour(self) -> None:
        c = self.controller
        self._syncing = True
        try:
            self.color_by.value = c.color_by if c.color_by in PRESETS else None
            options = [_NO_COLUMN, *[o for o in c.color_options if o not in PRESETS]]
            if tuple(self.column.options) != tuple(options):
                self.column.options = options
            self.column.value = c.color_by if c.color_by in options and c.color_by not in PRESETS else _NO_COLUMN
        finally:
            self._syncing = False

    def _on_gene_typed(self, change) -> None:
        """Type-ahead: suggestions at every keystroke; a complete gene name (any case) colours at once."""
        c = self.controller
        text = str(change["new"]).strip()
        matches = c.find_genes(text) if text else []
        self.gene.options = tuple(matches)
        exact = next((m for m in matches if m.upper() == text.upper()), None)
        if exact is not None:
            if c.gene != exact:
                c.gene = exact
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
        if not self.name.value.strip():  # the name may still be on its way from the browser (a paste)
            self._pending_write = True
            set_message(c, "Name the selection: it is written as soon as it has a name.", "warning")
            return
        if c.select_cells(self.lasso, name=self.name.value):
            self.lasso = []

    def _on_name(self, change) -> None:
        if self._pending_write and str(change["new"]).strip():
            self._pending_write = False
            self._write_selection()

    def _on_lasso(self, vertices) -> None:
        c = self.controller
        self.lasso = c.cells_in_polygon(vertices)
        self._pending_write = False
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
            for name in ("source", "method"):
                getattr(self, name).value = getattr(c, name)
        finally:
            self._syncing = False
        self._sync_colour()
        shown = (c.source, c.method, id(c.generated) if c.source == "generated" else id(c.adata), len(c.embedding))
        if shown != self._shown:  # other cells: the hover text and the lasso described the old ones
            self._shown = shown
            self.hover.value = _HOVER_HINT
            self.lasso, self._pending_write = [], False
        self.coverage.value = f"<small>{html.escape(c.coverage_note)}</small>"
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

                # no blitting: ipympl shows the outline while the pointer moves only on full redraws
                self._selector = LassoSelector(axes[0], self._on_lasso, useblit=False, props=LASSO_STYLE)
            self.canvas.draw_idle()
        else:
            self.image.show(draw_embedding(c))


_HOVER_HINT = "<small>hover a cell for its id, perturbation, split and QC status</small>"
