"""ComparisonExplorer: generated and observed cells side by side, in one embedding and in scanpy's dot plot."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import traitlets as T
from anndata import AnnData
from matplotlib.figure import Figure

from ..model import PerturbationModel
from ..pl.embed import embed_cells, umap_is_warm, warm_up_umap
from ._comparison_data import gene_summary, joint_cells, top_genes
from ._comparison_draw import comparison_figure
from ._latent_compute import data_library_size
from ._messages import EMPTY_SELECTION, NO_MODEL, NOT_TRAINED, set_message
from ._views import Controller, model_of

__all__ = ["ComparisonExplorer"]


class ComparisonExplorer(Controller):
    """Generated versus observed cells of several perturbations: one joint embedding and a dot plot of top genes.

    For each chosen perturbation (and the control) the model generates ``n`` cells
    (:meth:`cradlekit.PerturbationModel.generate`, artifact off by default, at the data's median
    library size by default) and up to ``n`` observed cells are drawn (QC-passed ones:
    ``artifact_key == 0``). Both sets are embedded together (:func:`cradlekit.pl.embed.embed_cells`,
    UMAP or t-SNE; observed circles, generated triangles, coloured by origin or perturbation), and
    scanpy's :func:`~scanpy.pl.dotplot` (or :func:`~scanpy.pl.matrixplot`) shows the ``n_genes``
    genes each perturbation changes most (against the control, in the observed cells; in the
    generated ones for a perturbation never measured), one row per perturbation and origin. Where the
    two rows of a perturbation agree, the model reproduces the data. :attr:`note` states what was
    compared. Computing runs in the background from the widget (busy bar, Cancel); the first
    comparison starts when the controller is created.

    Parameters
    ----------
    model
        A trained :class:`cradlekit.PerturbationModel` or a :class:`TrainingController`.
    adata
        The observed cells (labelled by :func:`cradlekit.qc.label_artifacts` for ``qc_passed_only``).
    perturbations
        Perturbations to compare (``None``: up to six the model can generate, the test split's first,
        then those with most cells).
    wait
        Compute before returning (``False``: in the background, the notebook cell returns at once).
    **traits
        Initial values of the traits below.

    Attributes
    ----------
    perturbations : list of str
    n, n_genes, seed : int
        Cells per perturbation and origin; genes per perturbation in the gene plot; seed.
    plot : {"dotplot", "matrixplot"}
    color_by : {"origin", "perturbation"}
    method : {"umap", "tsne"}
    library_size : {"data", "1e4"}
    artifact, qc_passed_only : bool
        Generate with the artifact latent on; draw only QC-passed observed cells.
    cells : AnnData or None
        The compared cells (``obs``: ``perturbation``, ``origin``, ``group``; ``layers['lognorm']``).
    embedding : pandas.DataFrame
        Their joint coordinates (``x``, ``y``).
    genes : dict
        ``{perturbation: top genes}`` of the gene plot.

    Examples
    --------
    >>> from cradlekit.widgets import ComparisonExplorer
    >>> ComparisonExplorer(model, adata, perturbations=["KLF1", "CEBPA+KLF1"])   # doctest: +SKIP
    """

    perturbations = T.List(T.Unicode())
    n = T.Int(100)
    n_genes = T.Int(3)
    seed = T.Int(0)
    plot = T.Enum(("dotplot", "matrixplot"), default_value="dotplot")
    color_by = T.Enum(("origin", "perturbation"), default_value="origin")
    method = T.Enum(("umap", "tsne"), default_value="umap")
    library_size = T.Enum(("data", "1e4"), default_value="data")
    artifact = T.Bool(False)
    qc_passed_only = T.Bool(True)
    artifact_key = T.Unicode("artifact_k3")
    revision = T.Int(0)

    def __init__(self, model: Any, adata: AnnData, *, perturbations: Sequence[str] | None = None, wait: bool = False,
                 **traits: Any):  # fmt: skip
        self._source = model
        self.adata = adata
        self.cells: AnnData | None = None
        self.embedding = pd.DataFrame(columns=["x", "y"])
        self.genes: dict[str, list[str]] = {}
        self.note = ""
        self._constructing = True
        super().__init__(**traits)
        chosen = list(perturbations) if perturbations is not None else self.default_perturbations()
        self.set_trait("perturbations", chosen)
        self._constructing = False
        if self.method == "umap":
            warm_up_umap()
        with nullcontext() if wait else self.in_background():
            self.compare()

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> PerturbationModel | None:
        """The model that generates the cells (from a TrainingController when one was given)."""
        return model_of(self._source)

    @property
    def control(self) -> str:
        """The control label of the model's data."""
        model = self.model
        return str(model.registry["control_label"]) if model is not None else "control"

    @property
    def perturbation_key(self) -> str:
        """The ``obs`` column of the perturbation labels."""
        return self.adata.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")

    @property
    def options(self) -> list[str]:
        """Perturbations of the data the model can generate (the control excluded), most cells first."""
        model = self.model
        if model is None or self.perturbation_key not in self.adata.obs:
            return []
        counts = self.adata.obs[self.perturbation_key].astype(str).value_counts()
        return [p for p in counts.index if p != self.control and model.can_generate(p)]

    def default_perturbations(self, limit: int = 6) -> list[str]:
        """Up to ``limit`` of :attr:`options`: those with test cells first (held out), then the most measured."""
        options = self.options
        if "split" in self.adata.obs:
            test = set(self.adata.obs[self.perturbation_key].astype(str)[self.adata.obs["split"].astype(str) == "test"])
            options = [p for p in options if p in test] + [p for p in options if p not in test]
        return options[:limit]

    @T.observe("perturbations", "n", "seed", "method", "library_size", "artifact", "qc_passed_only", "artifact_key")
    def _on_setting(self, change) -> None:
        if self._constructing:
            return
        if not self.background and self.busy:
            self.wait_task()
        self.compare()

    @T.observe("n_genes")
    def _on_genes(self, change) -> None:
        if self.cells is not None and not self._constructing:
            self.genes = top_genes(self.cells, list(self.cells.obs["perturbation"].cat.categories), self.control,
                                   self.n_genes)  # fmt: skip
            self.revision += 1

    @T.observe("plot", "color_by")
    def _on_look(self, change) -> None:
        self.revision += 1

    # ------------------------------------------------------------------ actions
    def _check(self) -> PerturbationModel | None:
        model = self.model
        if model is None:
            set_message(self, NO_MODEL, "warning")
        elif getattr(self._source, "running", False):
            set_message(self, "Training is running: wait for it or stop it before comparing.", "warning")
        elif not model.is_trained:
            set_message(self, NOT_TRAINED, "warning")
        elif not self.perturbations:
            set_message(self, EMPTY_SELECTION.replace("one item", "one perturbation to compare"), "warning")
        else:
            bad = [p for p in self.perturbations if not model.can_generate(p)]
            if not bad:
                return model
            set_message(self, f"The model cannot generate {bad} (a target it never trained): choose others.", "warning")
        return None

    def compare(self) -> bool:
        """Generate, draw observed cells, embed both together and pick the top genes (busy, cancellable)."""
        model = self._check()
        if model is None:
            self.revision += 1
            return False
        settings = {name: getattr(self, name) for name in ("n", "seed", "method", "artifact", "n_genes")}
        perts = [self.control, *[p for p in dict.fromkeys(self.perturbations) if p != self.control]]
        library = data_library_size(self.adata) if self.library_size == "data" else 1e4
        art_key = self.artifact_key if self.qc_passed_only and self.artifact_key in self.adata.obs else None

        def work(token):
            gen = model.generate(perts, n=settings["n"], artifact=settings["artifact"], seed=settings["seed"],
                                 library_size=library)  # fmt: skip
            token.check()
            cells = joint_cells(self.adata, gen, perts, n=settings["n"], seed=settings["seed"],
                                perturbation_key=self.perturbation_key, artifact_key=art_key)  # fmt: skip
            emb = embed_cells(cells, method=settings["method"], seed=settings["seed"], check=token.check)
            return cells, emb, top_genes(cells, perts, self.control, settings["n_genes"])

        def apply(result):
            self.cells, self.embedding, self.genes = result
            origin = self.cells.obs["origin"].astype(str)
            n_obs, n_gen = int((origin == "observed").sum()), int((origin == "generated").sum())
            what = f"QC-passed ({art_key} = 0)" if art_key else "all"
            self.note = (
                f"Observed: {n_obs:,} cells, up to {settings['n']} {what} per perturbation. Generated: {n_gen:,} "
                f"cells, {settings['n']} per perturbation, artifact {'on' if settings['artifact'] else 'off'}, "
                f"library size {library:,.0f}" + (" (the data's median)." if self.library_size == "data" else
                                                  " (the paper's 1e4; the data's median is "
                                                  f"{data_library_size(self.adata):,.0f}).")  # fmt: skip
            )
            missing = [p for p in perts if not ((self.cells.obs["perturbation"] == p) & (origin == "observed")).any()]
            if missing:
                set_message(self, f"No observed cells of {missing}: their genes come from the generated cells.", "info")
            self.revision += 1

        title = (f"{self.method.upper() if self.method == 'umap' else 't-SNE'} of generated and observed cells of "
                 f"{len(perts)} perturbations")  # fmt: skip
        if self.method == "umap" and not umap_is_warm():
            title += " (the first UMAP of this session also compiles umap-learn: up to a minute)"
        return self.run_task(title, work, apply, action="compare generated and observed cells")

    # ------------------------------------------------------------------ tables, figures, view
    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables the widget shows, by name (exported as CSV); empty before there is a result."""
        self.wait_task()
        if self.cells is None:
            return {}
        embedding = self.embedding.join(self.cells.obs[["perturbation", "origin"]])
        return {"top_genes": gene_summary(self.cells, self.genes), "embedding": embedding}

    def export_label(self) -> str:
        """What the export files are named after (what is shown)."""
        return f"{len(self.perturbations)}perturbations_{self.plot}"

    def static_figure(self) -> Figure:
        """The joint embedding beside the dot plot (or matrix plot); waits for a running comparison."""
        self.wait_task()
        return comparison_figure(self)

    def agreement(self) -> pd.Series:
        """Per perturbation, the Pearson correlation of observed and generated mean expression of its top genes."""
        summary = gene_summary(self.cells, self.genes) if self.cells is not None else pd.DataFrame()
        if summary.empty:
            return pd.Series(dtype=float)
        out = {}
        for p, part in summary.groupby(level="perturbation"):
            a, b = part["observed mean"].to_numpy(), part["generated mean"].to_numpy()
            ok = np.isfinite(a) & np.isfinite(b)
            out[p] = float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 1 and a[ok].std() and b[ok].std() else np.nan
        return pd.Series(out, name="top-gene correlation")

    def _make_view(self):
        from ._comparison_view import ComparisonView

        return ComparisonView(self)
