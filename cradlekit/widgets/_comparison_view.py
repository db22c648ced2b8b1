"""Widgets of a :class:`~cradlekit.widgets.ComparisonExplorer`: perturbations, settings, the two panels."""

from __future__ import annotations

import html

import ipywidgets as W

from ._comparison_draw import draw_gene_plot, draw_joint_embedding
from ._views import FigureImage, View

__all__ = ["ComparisonView"]

_WIDE = {"description_width": "initial"}


class ComparisonView(View):
    """Perturbation list and settings on the left; the joint embedding and scanpy's gene plot side by side."""

    def __init__(self, controller):
        super().__init__(controller)
        c = controller
        chosen = tuple(p for p in c.perturbations if p in c.options)
        self.perturbations = W.SelectMultiple(options=c.options, value=chosen, rows=7, description="perturbations",
                                              style=_WIDE, layout=W.Layout(width="260px"))  # fmt: skip
        self.perturbations.add_class("cradlekit-comparison-perturbations")
        self.n = W.BoundedIntText(min=5, max=5000, description="cells each", style=_WIDE,
                                  layout=W.Layout(width="170px"))  # fmt: skip
        self.n_genes = W.BoundedIntText(min=1, max=20, description="genes each", style=_WIDE,
                                        layout=W.Layout(width="170px"))  # fmt: skip
        self.plot = W.ToggleButtons(options=[("dot plot", "dotplot"), ("matrix plot", "matrixplot")],
                                    description="genes", style={**_WIDE, "button_width": "auto"})  # fmt: skip
        self.color_by = W.ToggleButtons(options=["origin", "perturbation"], description="colour by",
                                        style={**_WIDE, "button_width": "auto"})  # fmt: skip
        self.method = W.ToggleButtons(options=[("UMAP", "umap"), ("t-SNE", "tsne")], description="method",
                                      style={**_WIDE, "button_width": "auto"})  # fmt: skip
        self.library = W.ToggleButtons(options=[("data median", "data"), ("1e4 (paper)", "1e4")],
                                       description="library size", style={**_WIDE, "button_width": "auto"})
        self.artifact = W.ToggleButton(description="artifact on", icon="bolt")
        for name in ("n", "n_genes", "plot", "color_by", "method", "artifact"):
            widget = getattr(self, name)
            widget.value = getattr(c, name)
            widget.observe(lambda ch, n=name: self._set(n, ch["new"]), names="value")
            c.observe(lambda ch, w=widget: setattr(w, "value", ch["new"]), names=name)
        self.library.value = c.library_size
        self.library.observe(lambda ch: self._set("library_size", ch["new"]), names="value")
        c.observe(lambda ch: setattr(self.library, "value", ch["new"]), names="library_size")
        self.perturbations.observe(lambda ch: ch["new"] and self._set("perturbations", list(ch["new"])), names="value")
        self.note = W.HTML()
        self.note.add_class("cradlekit-comparison-note")
        self.embedding_image = FigureImage()
        self.embedding_image.widget.add_class("cradlekit-comparison-embedding")
        self.genes_image = FigureImage()
        self.genes_image.widget.add_class("cradlekit-comparison-genes")
        self.controls = [self.perturbations, self.n, self.n_genes, self.plot, self.color_by, self.method, self.library,
                         self.artifact]  # fmt: skip
        c.observe(self._render, names="revision")
        c.observe(lambda ch: ch["new"] and self._render(), names="busy")
        self._render()
        self._on_busy()
        settings = W.VBox([self.perturbations, W.HBox([self.n, self.n_genes], layout=W.Layout(flex_flow="row wrap")),
                           self.artifact])  # fmt: skip
        looks = W.VBox([self.plot, self.color_by, self.method, self.library])
        self.root = W.VBox([
            W.HBox([settings, looks], layout=W.Layout(flex_flow="row wrap")),
            self.busy_box, self.message, self.note,
            W.HBox([self.embedding_image.widget, self.genes_image.widget], layout=W.Layout(flex_flow="row wrap")),
            self.export_bar,
        ])  # fmt: skip
        self.root.add_class("cradlekit-comparison")

    def _set(self, name: str, value) -> None:
        c = self.controller
        if getattr(c, name) == value:
            return
        with c.in_background():
            setattr(c, name, value)

    def _render(self, change=None) -> None:
        from matplotlib.figure import Figure

        c = self.controller
        self.note.value = f"<small>{html.escape(c.note)}</small>" if c.cells is not None else ""
        with self.drawing("drawing the comparison"):
            left = Figure(figsize=(6.2, 4.6))
            draw_joint_embedding(c, left)
            self.embedding_image.show(left)
            if c.cells is None:
                self.genes_image.show(None)
                return
            n_genes = sum(len(v) for v in c.genes.values())
            right = Figure(figsize=(max(5.0, 0.32 * n_genes + 4.2), max(4.8, 0.6 * len(c.genes) + 3.0)))
            draw_gene_plot(c, right)
            self.genes_image.show(right)
