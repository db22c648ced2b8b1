"""Widgets of a :class:`~cradlekit.widgets.PerturbationExplorer`."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from ..qc import read_qc_uns
from ._messages import describe_error, report_errors, set_message
from ._views import FigureImage, View, frame_html, table_html

__all__ = ["PerturbationView"]

_WIDE = {"description_width": "initial"}


class PerturbationView(View):
    """Perturbation picker, settings, the QC headline and per-criterion table, Figure 3, genes."""

    def __init__(self, controller):
        super().__init__(controller)
        c = controller
        self.picker = W.Combobox(options=tuple(c.options), placeholder="KLF1 or CEBPA+KLF1", description="perturbation",
                                 ensure_option=False, continuous_update=False, style=_WIDE,
                                 layout=W.Layout(width="250px"))  # fmt: skip
        self.compose = W.SelectMultiple(options=c.available_targets, description="or targets", rows=5, style=_WIDE,
                                        layout=W.Layout(width="210px"))  # fmt: skip
        self.artifact = W.ToggleButton(description="artifact on", icon="bolt")
        criteria = list(c.model.registry.get("artifact_criteria") or []) if c.model is not None else []
        self.criteria_picker = W.SelectMultiple(options=criteria, value=tuple(c.artifacts), description="artifacts",
                                                rows=max(1, min(6, len(criteria))), style=_WIDE)  # fmt: skip
        self.criteria_picker.observe(lambda ch: self._set("artifacts", list(ch["new"])), names="value")
        try:
            ks = [float(k) for k in np.asarray(read_qc_uns(c.adata)["ks"]).ravel()]
        except ValueError:
            ks = [c.k]
        self.k = W.Dropdown(options=[(f"{k:g}", k) for k in ks], description="k", style=_WIDE,
                            layout=W.Layout(width="250px"))  # fmt: skip
        self.n = W.BoundedIntText(min=1, max=100_000, description="cells", style=_WIDE, layout=W.Layout(width="250px"))
        self.library = W.ToggleButtons(options=[("data median", "data"), ("1e4 (paper)", "1e4")],
                                       description="library size", style={**_WIDE, "button_width": "auto"})  # fmt: skip
        self.button = W.Button(description="Generate", icon="play", button_style="primary")
        for name, widget in (("perturbation", self.picker), ("artifact", self.artifact), ("n", self.n),
                             ("library_size", self.library)):  # fmt: skip
            widget.value = getattr(c, name)
            widget.observe(lambda ch, n=name: self._set(n, ch["new"]), names="value")
            c.observe(lambda ch, w=widget: setattr(w, "value", ch["new"]), names=name)
        self.k.value = c.k if c.k in ks else None
        self.k.observe(lambda ch: ch["new"] is not None and self._set("k", ch["new"]), names="value")
        c.observe(lambda ch: setattr(self.k, "value", ch["new"] if ch["new"] in ks else None), names="k")
        self.compose.observe(lambda ch: self._set("targets", list(ch["new"])), names="value")
        self.button.on_click(lambda _: self._generate())
        self.gene = W.Combobox(placeholder="gene (any case)", description="gene", ensure_option=False,  # type-ahead
                               continuous_update=True, style=_WIDE, layout=W.Layout(width="240px"))  # fmt: skip
        self.gene.add_class("cradlekit-perturbation-gene")
        self.gene.observe(self._on_gene, names="value")
        self.gene_image = FigureImage()
        self.summary = W.HTML()
        self.summary.add_class("cradlekit-perturbation-summary")
        self.basis = W.HTML()
        self.basis.add_class("cradlekit-perturbation-basis")
        self.criteria = W.HTML()
        self.criteria.add_class("cradlekit-perturbation-criteria")
        self.genes = W.HTML()
        self.image = FigureImage()
        self.controls = [self.picker, self.compose, self.artifact, self.criteria_picker, self.k, self.n, self.library,
                         self.button]  # fmt: skip
        c.observe(self._render, names="revision")
        self._render()
        self._on_busy()
        self.root = W.VBox([
            W.HBox([W.VBox([self.picker, self.k, self.n]), self.compose,
                    W.VBox([W.HBox([self.artifact, self.button]), self.library]),
                    *([self.criteria_picker] if criteria else [])],
                   layout=W.Layout(flex_flow="row wrap")),  # a narrow notebook (file browser open): wrap, never clip
            self.busy_box, self.message, self.summary, self.basis, self.criteria,
            W.HBox([self.image.widget, self.genes], layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.gene, self.gene_image.widget], layout=W.Layout(flex_flow="row wrap")),
            self.export_bar,
        ])  # fmt: skip
        self.root.add_class("cradlekit-perturbation")

    def _set(self, name: str, value) -> None:
        c = self.controller
        if getattr(c, name) == value:
            return
        with c.in_background():
            setattr(c, name, value)

    def _generate(self) -> None:
        with self.controller.in_background():
            self.controller.generate()

    def _on_gene(self, change) -> None:
        c = self.controller
        text = str(change["new"]).strip()
        cells = c.adata
        from ._latent_draw import match_genes

        matches = match_genes(cells, text) if text else []  # suggestions at every keystroke
        self.gene.options = tuple(matches)
        exact = next((m for m in matches if m.upper() == text.upper()), None)
        if exact is not None and exact != c.gene:  # a complete name (any case): drawn at once, as the data spells it
            c.gene = exact
            self._draw_gene()

    def _draw_gene(self) -> None:
        c = self.controller
        if not c.gene or c.generated is None:
            self.gene_image.show(None)
            return
        with report_errors(c, f"draw {c.gene}"):
            self.gene_image.show(c.gene_figure())

    def _render(self, change=None) -> None:
        c = self.controller
        self.picker.options = tuple(c.options)
        if tuple(self.compose.options) != tuple(c.available_targets):  # e.g. a TrainingController's new model
            self.compose.options = tuple(c.available_targets)
        self.basis.value = f"<small>{html.escape(c.basis_note)}</small>"
        if c.generated is None:
            self.summary.value, self.genes.value, self.criteria.value = "", "", ""
            self.image.show(c.static_figure())
            return
        self.summary.value = headline_html(c)
        self.criteria.value = frame_html(c.criteria, css_class="cradlekit-criteria-table") + \
            f"<small>{html.escape(c.doublet_note)}</small>"  # fmt: skip
        rows = [
            [html.escape(str(g)), f"{r.model_ate:+.3f}", f"{r.data_ate:+.3f}" if np.isfinite(r.data_ate) else "—"]
            for g, r in c.top_genes.iterrows()
        ]
        self.genes.value = "<b>top changed genes</b>" + table_html(rows, ["gene", "model ATE", "data ATE"])
        if len(c.baselines):  # the prediction beside the simple baselines', against the data ATE over genes
            table = frame_html(c.baselines, css_class="cradlekit-baselines-table", float_format="{:.3f}")
            self.genes.value += "<br><b>this perturbation beside the baselines</b> (against its data ATE)" + table
        with self.drawing(f"drawing the QC comparison of {c.label}"):
            try:
                self.image.show(c.static_figure())
            except Exception as exc:  # noqa: BLE001 - reported in the widget
                set_message(c, describe_error(exc, "draw the QC comparison"), "error")
            self._draw_gene()


def headline_html(c) -> str:
    """The headline: pass rate under the five MAD criteria (data beside it), the doublet rate apart."""
    gen_artifact = bool(c.generated.uns.get("generation", {}).get("artifact", False))
    table = c.criteria
    data_mad = c.qc_pass.get("data_mad", float("nan"))
    labels_mad = c.qc_pass.get("data_labels_mad", float("nan"))
    gen_doublet = table.loc["doublet", "generated pass %"]
    data_doublet = table.loc["doublet", "data pass %"]
    data_part = "" if not np.isfinite(data_mad) else f" (data: {100 * data_mad:.1f}%"
    if data_part and np.isfinite(labels_mad):  # the other basis, named
        data_part += f" on the same {c.adata.n_vars}-gene basis; {100 * labels_mad:.1f}% on its own QC labels"
    data_part += ")" if data_part else ""
    if c._scrublet_ran:
        doublet = f"scrublet flags {100 - gen_doublet:.1f}% of generated cells as doublets" + (
            "" if not np.isfinite(data_doublet) else f" (data: {100 - data_doublet:.1f}%)")
    else:
        doublet = "doublets of the generated cells not called"
    return (
        f"<b>{html.escape(c.label)}</b> ({'seen' if c.seen else 'unseen'} in training), artifact "
        f"{'on' if gen_artifact else 'off'}, library size {c.result_library_size:,.0f}: "
        f"<b>{100 * c.qc_pass['generated_mad']:.1f}%</b> of generated cells pass the five MAD criteria at "
        f"k = {c.result_k:g}{data_part}; {doublet}; all six: {100 * c.qc_pass['generated']:.1f}%."
    )
