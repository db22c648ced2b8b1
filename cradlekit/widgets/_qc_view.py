"""Widgets of a :class:`~cradlekit.widgets.QCExplorer`: presets, k slider, counts, per-group pass rates, figure."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import ipywidgets as W
import numpy as np
import traitlets as T

from .._keys import CRITERIA
from ._basis import basis_name
from ._views import FigureImage, View, frame_html, table_html

if TYPE_CHECKING:  # annotations only: no import cycle at run time
    from .qc_explorer import QCExplorer

__all__ = ["QCExplorerView"]


class QCExplorerView(View):
    """Widgets of a :class:`QCExplorer`: presets, k slider, counts table, figure, write button."""

    def __init__(self, controller: QCExplorer):
        super().__init__(controller)
        c = controller
        self.preset = W.ToggleButtons(
            options=[(f"{k:g}", k) for k in c.presets], value=c.k if c.k in c.presets else None,
            description="k (MAD):", style={"button_width": "48px"},
        )  # fmt: skip
        self.slider = W.FloatSlider(
            value=c.k, min=c.k_min, max=c.k_max, step=c.k_step, description="free k:",
            continuous_update=False, readout_format=".2f", layout=W.Layout(width="420px"),
        )  # fmt: skip
        self.slider.add_class("cradlekit-qc-k")
        T.link((c, "k"), (self.slider, "value"))
        self.preset.observe(self._on_preset, names="value")
        self.total = W.HTML()
        self.total.add_class("cradlekit-qc-total")
        self.table = W.HTML()
        self.table.add_class("cradlekit-qc-counts")
        self.image = FigureImage()
        self.write = W.Button(description="Write labels to AnnData", icon="save", button_style="primary",
                              layout=W.Layout(width="auto"))
        self.write.on_click(lambda _: c.write_labels())
        self.reload = W.Button(description="Reload QC", icon="refresh")
        self.reload.on_click(lambda _: c.refresh())
        columns = ["pass %", "cells", *(f"{x} fail %" for x in CRITERIA)]
        group_options = c.group_options or [c.group_by]
        if c.group_by not in group_options:
            group_options = [c.group_by, *group_options]
        self.group_by = W.Dropdown(options=group_options, description="pass rates per",  # any categorical obs column
                                   style={"description_width": "initial"}, layout=W.Layout(width="320px"))  # fmt: skip
        self.group_by.add_class("cradlekit-qc-group-by")
        short = {"reference": "data's QC metrics", "panel": f"{c.adata.n_vars}-gene panel"}
        self.basis = W.ToggleButtons(options=[(short[b], b) for b in c.bases],
                                     value=c.basis, description="QC basis", style={"description_width": "initial"},
                                     tooltips=[basis_name(c.adata, b) if c.ready else b for b in c.bases],
                                     layout=W.Layout(display="" if len(c.bases) > 1 else "none"))  # fmt: skip
        T.link((c, "basis"), (self.basis, "value"))
        self.basis_note = W.HTML()
        self.basis_note.add_class("cradlekit-qc-basis")
        self.sort_by = W.Dropdown(options=[c.group_by, *columns], description="sort by", layout=W.Layout(width="240px"))
        self.ascending = W.ToggleButton(description="ascending", icon="sort-amount-asc", value=c.ascending)
        for name in ("group_by", "sort_by", "ascending"):
            T.link((c, name), (getattr(self, name), "value"))
        self.group_by.observe(self._on_group_by, names="value")
        self.groups = W.HTML()
        self.groups.add_class("cradlekit-qc-groups")
        c.observe(self._sync_preset, names="k")
        c.observe(self._render, names="revision")
        c.observe(self._render_groups, names="table_revision")
        self._render()
        self.root = W.VBox([
            W.HBox([self.preset, self.slider], layout=W.Layout(flex_flow="row wrap")),
            self.basis,
            self.basis_note,
            self.total,
            W.HBox([self.table, self.image.widget], layout=W.Layout(flex_flow="row wrap")),  # narrow pages: wrap
            W.HBox([self.write, self.reload]),
            self.message,
            W.HBox([self.group_by, self.sort_by, self.ascending], layout=W.Layout(flex_flow="row wrap")),
            self.groups,
            self.export_bar,
        ])  # fmt: skip
        self.root.add_class("cradlekit-qc-explorer")

    def _on_group_by(self, change) -> None:
        columns = list(self.sort_by.options)[1:]
        self.sort_by.options = [change["new"], *columns]
        self.controller.sort_by = "pass %"

    def _on_preset(self, change) -> None:
        if change["new"] is not None:
            self.controller.k = float(change["new"])

    def _sync_preset(self, change) -> None:
        self.preset.value = change["new"] if change["new"] in self.controller.presets else None

    def _render(self, change=None) -> None:
        c = self.controller
        if not c.ready:
            self.total.value = "<b>No QC labels</b>"
            self.table.value = ""
            self.image.show(c.static_figure())
            return
        with self.drawing(f"drawing the six criteria at k = {c.k:g}"):
            self.image.show(c.static_figure())  # first: the total below is what readers (and tests) watch
        rows = []
        other = [b for b in c.bases if b != c.basis]
        both = c.bases_table() if other else None
        for criterion in (*CRITERIA, "any"):
            t = c.thresholds.get(criterion, float("nan"))
            cnt = c.counts[criterion]
            label = "all (a_i = 0)" if criterion == "any" else criterion
            shown = "skipped" if criterion in c.skipped else ("—" if not np.isfinite(t) else f"{t:.4g}")
            note = c.threshold_notes.get(criterion, "")
            row = [label, shown + (f" <small title='{note}'>({note})</small>" if note else ""), cnt["n_pass"],
                   cnt["n_fail"]]  # fmt: skip
            if both is not None:  # the other basis beside it
                t2 = both.loc[criterion, f"threshold ({other[0]})"]
                row += ["—" if not np.isfinite(t2) else f"{t2:.4g}", int(both.loc[criterion, f"pass ({other[0]})"])]
            rows.append(row)
        header = ["criterion", f"threshold ({c.basis})", "pass", "fail"]
        if other:
            header += [f"threshold ({other[0]})", f"pass ({other[0]})"]
        self.table.value = table_html(rows, header)
        self.basis_note.value = f"<small>{html.escape(c.basis_note)}</small>"
        self._render_groups()
        pct = 100.0 * c.n_pass / max(c.n_cells, 1)
        self.total.value = (
            f"<b>Total: <span class='cradlekit-qc-npass'>{c.n_pass}</span> of {c.n_cells} cells pass "
            f"every criterion ({pct:.1f}%) at k = {c.k:g}</b>"
        )

    def _render_groups(self, change=None) -> None:
        try:
            self.groups.value = frame_html(self.controller.group_table(), css_class="cradlekit-qc-group-table")
        except ValueError as exc:
            self.groups.value = f"<small>{exc}</small>"
