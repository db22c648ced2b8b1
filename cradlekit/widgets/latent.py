"""LatentExplorer: UMAP/t-SNE of observed or generated cells, coloured by any obs column or gene (Figure 4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
import traitlets as T
from anndata import AnnData
from matplotlib.figure import Figure

from ..model import PerturbationModel
from ..pl.embed import umap_is_warm, warm_up_umap
from ._latent_compute import METHOD_TITLES, coverage_text, embed, generate_cells, store, stored
from ._latent_draw import PRESETS, colour_values, draw_embedding, match_genes, resolve_gene
from ._messages import EMPTY_SELECTION, report_errors, set_message
from ._views import Controller, model_of

__all__ = ["LatentExplorer"]



class LatentExplorer(Controller):
    """Two-dimensional embedding of observed or generated cells, coloured, selected and hovered interactively.

    The interactive version of the paper's Figure 4: generated cells (artifact latent off and on,
    :meth:`cradlekit.PerturbationModel.generate`, at the data's median library size by default) or
    observed cells, embedded by :func:`cradlekit.pl.embed.embed_cells` (UMAP by default; or t-SNE)
    on one shared neighbour graph. At most ``max_cells`` cells (a seeded subsample) are embedded;
    with ``place_rest`` every other cell is placed at its nearest embedded neighbours
    (:func:`cradlekit.pl.embed.place_cells`), so all cells are drawn and a lasso names every cell in
    its region (:attr:`coverage_note` says how many were embedded and placed). Cells can be
    coloured by artifact label, perturbation, group, split, a named selection, a gene's expression,
    or **any** ``obs`` column (categories, or a colour bar for a continuous column). Embeddings are
    written to ``obsm`` (``X_cradlekit_umap`` / ``X_cradlekit_tsne`` of ``adata``, or of
    :attr:`generated`) and reused; changing the colouring only redraws.

    The first embedding is computed in a background thread: the constructor returns at once and
    the widget shows a busy bar with Cancel (:attr:`busy`). :meth:`wait_task` (or ``wait=True``)
    waits for it; :meth:`static_figure`, :meth:`tables`, :meth:`export` and the selection methods
    wait by themselves. Setting a trait from code waits for a running computation, then applies.

    Parameters
    ----------
    adata
        Observed cells (``source="data"``); labelled by :func:`cradlekit.qc.label_artifacts` for
        colouring by artifact.
    model
        A trained :class:`cradlekit.PerturbationModel` or a :class:`TrainingController`
        (``source="generated"``).
    groups
        ``{perturbation: group}``, ``"norman"`` (the six Norman 2019 pathways) or ``None``:
        control / single / combination.
    perturbations
        Perturbations to generate (``None``: the model's training perturbations and those of
        ``adata`` the model can generate).
    interactive
        Draw the plot on an ipympl canvas (hover, lasso) when ipympl is installed; ``False``: a PNG,
        which is what a static page (a built book) can show (``show(static=True)`` does this too).
    wait
        Compute the first embedding before returning (``False``: in the background).
    **traits
        Initial values of the traits below.

    Attributes
    ----------
    source : {"data", "generated"}
    method : {"umap", "tsne"}
    color_by : str
        ``"artifact"``, ``"perturbation"``, ``"group"``, ``"split"``, ``"gene"``, ``"selection"``
        or the name of any ``obs`` column of the current cells (:attr:`color_options`).
    gene : str
        Gene (``var_names`` or a symbol of ``var['gene_symbols']``…, any case) for
        ``color_by="gene"``; stored as the gene's own spelling.
    continuous : bool
        The colouring is a value per cell (gene, numeric column) drawn with a colour bar.
    categories : list of str
        Categories of the current colouring (most frequent first; empty for values).
    selected : list of str
        Categories drawn in colour; the others are grey. Empty: a message, everything grey.
    selection_key : str
        ``obs`` column that :meth:`select_cells` writes named selections to.
    n_per_perturbation, max_cells, place_rest, seed, artifact_key
        Cells generated per perturbation and artifact setting; most cells embedded; place the
        others; seed; ``obs`` column of ``a_i`` in ``adata``.
    library_size : {"data", "1e4"}
        Library size of the generated cells: the data's median total counts or the paper's 1e4.
    embedding : pandas.DataFrame
        Coordinates (``x``, ``y``) of the shown cells, indexed like them.
    generated : AnnData or None
        The generated cells (their embeddings in ``obsm``).

    Examples
    --------
    >>> from cradlekit.widgets import LatentExplorer
    >>> le = LatentExplorer(adata, model=model, source="generated", groups="norman")   # doctest: +SKIP
    >>> le.color_by, le.gene = "gene", "gata1"                                          # doctest: +SKIP
    >>> le.color_by = "batch"                                # any obs column          # doctest: +SKIP
    >>> le.select_cells(le.embedding.index[le.embedding.x > 0], name="right arm")       # doctest: +SKIP
    """

    source = T.Enum(("data", "generated"), default_value="data")
    method = T.Enum(("umap", "tsne"), default_value="umap")
    color_by = T.Unicode("artifact")
    gene = T.Unicode("")
    categories = T.List(T.Unicode())
    selected = T.List(T.Unicode())
    selection_key = T.Unicode("cradlekit_selection")
    n_per_perturbation = T.Int(50)
    max_cells = T.Int(3000)
    place_rest = T.Bool(True)
    seed = T.Int(0)
    artifact_key = T.Unicode("artifact_k3")
    library_size = T.Enum(("data", "1e4"), default_value="data")
    top_n = T.Int(40)
    groups = T.Any(None, help="{perturbation: group}, 'norman' or None (control / single / combination)")
    revision = T.Int(0)

    def __init__(
        self,
        adata: AnnData | None = None,
        *,
        model: Any = None,
        groups: Mapping[str, str] | str | None = None,
        perturbations: Sequence[str] | None = None,
        interactive: bool = True,
        wait: bool = False,
        **traits: Any,
    ):
        self.adata = adata
        self.interactive = bool(interactive)
        self._source_model = model
        self.perturbations = None if perturbations is None else list(perturbations)
        self.generated: AnnData | None = None
        self.embedding = pd.DataFrame(columns=["x", "y"])
        self.continuous = False
        self._fallback = ""  # the colouring shown instead of an obs column the current cells lack
        self._labels = np.empty(0, dtype=object)
        self._updating = False
        self._constructing = True  # the settings below are applied once, by the update at the end
        super().__init__(**traits)
        self.set_trait("groups", groups)
        self._constructing = False
        if self.method == "umap":
            warm_up_umap()  # compile umap-learn's numba code while the user looks at the widget
        with nullcontext() if wait else self.in_background():  # the notebook cell returns at once
            self.update()

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> PerturbationModel | None:
        """The trained model shown (given directly, or the ``model`` of the controller given), or ``None``."""
        return model_of(self._source_model)

    @property
    def title(self) -> str:
        """What the plot shows (or will show once computed)."""
        what = f"{self.gene} expression" if self.color_by == "gene" else self.colour_name
        n = f"{len(self.embedding):,} " if not self.embedding.empty else ""
        return f"{METHOD_TITLES[self.method]} of {n}{self.source} cells by {what}"

    @property
    def coverage_note(self) -> str:
        """Which cells the plot shows: how many were embedded, placed, or left out; the library size."""
        return coverage_text(self)

    @property
    def color_options(self) -> list[str]:
        """Colourings available for the current cells: the presets, then every ``obs`` column."""
        cells = self.adata if self.source == "data" else self.generated
        columns = [str(c) for c in cells.obs.columns] if cells is not None else []
        return [*PRESETS, *[c for c in columns if c not in PRESETS]]

    @T.validate("gene")
    def _valid_gene(self, proposal):
        cells = self.adata if self.adata is not None else self.generated
        found = resolve_gene(cells, proposal["value"]) if cells is not None and proposal["value"].strip() else None
        return found or proposal["value"]

    @T.observe("source", "method", "color_by", "gene", "n_per_perturbation", "max_cells", "place_rest", "seed",
               "artifact_key", "groups", "selection_key", "library_size")  # fmt: skip
    def _on_setting(self, change) -> None:
        name = change["name"]
        if getattr(self, "_constructing", False):
            return
        if not self.background and self.busy:
            self.wait_task()  # from code: let the running computation finish, then apply this setting
        if name in ("n_per_perturbation", "seed", "library_size"):
            self.generated = None
        restore = (name, change["old"]) if name not in ("color_by", "gene", "groups") else None
        self.update(reset_selection=name not in ("method", "gene"), restore=restore)

    @T.observe("selected")
    def _on_selected(self, change) -> None:
        if not change["new"] and self.categories:
            text = EMPTY_SELECTION.replace("one item", "one group to colour (all cells are grey)")
            set_message(self, text, "warning")
        elif self.message.startswith("Nothing selected"):
            set_message(self, "", "info")
        if not self._updating:
            self.revision += 1

    def cells(self) -> AnnData:
        """The cells of the current source (generated ones are drawn once and kept in :attr:`generated`)."""
        if self.source == "data":
            if self.adata is None:
                raise ValueError("no observed cells: pass adata=")
            return self.adata
        if self.generated is None:
            self.generated = generate_cells(self)
        return self.generated

    def refresh(self) -> bool:
        """Forget the generated cells and every stored embedding (e.g. after more training) and recompute."""
        self.generated = None
        if self.adata is not None:
            for key in [k for k in self.adata.obsm if k.startswith("X_cradlekit_")]:
                del self.adata.obsm[key]
        return self.update(reset_selection=False)

    @property
    def obsm_key(self) -> str:
        """``obsm`` key of the current method's embedding (``X_cradlekit_umap`` / ``X_cradlekit_tsne``)."""
        return f"X_cradlekit_{self.method}"

    def update(self, *, reset_selection: bool = True, restore: tuple[str, Any] | None = None) -> bool:
        """Show the current settings: recolour at once, or compute the embedding (busy, cancellable) first."""
        ready = False
        with report_errors(self, f"show the {self.source} cells"):
            if self.source == "data" or self.generated is not None:
                cells = self.cells()
                if not cells.obs_names.is_unique:
                    raise ValueError("the cells' obs_names are not unique: call adata.obs_names_make_unique() first")
                emb = stored(self, cells)
                if emb is not None:
                    self._show(cells, emb, reset_selection)
                    ready = True
        if ready or (self.message and self.message_level == "error"):
            if not ready:
                self._clear()
            return ready
        source = self.source

        def work(token):
            cells = self.cells() if source == "data" or self.generated is not None else generate_cells(self)
            if not cells.obs_names.is_unique:
                raise ValueError("the cells' obs_names are not unique: call adata.obs_names_make_unique() first")
            token.check()
            return (cells, *embed(self, cells, token.check))

        def apply(result):
            cells, emb, info = result
            if source == "generated":
                self.generated = cells
            store(self, cells, emb, info)
            self._show(cells, stored(self, cells), reset_selection)  # as stored: the same values when reused

        def on_cancel():
            if restore is not None:
                setattr(self, *restore)

        self._clear()
        title = self.title
        if self.method == "umap" and not umap_is_warm():
            title += " (the first UMAP of this session also compiles umap-learn: up to a minute)"
        started = self.run_task(title, work, apply, action=f"show the {source} cells", on_cancel=on_cancel)
        return started if self.background else not self.embedding.empty

    def _clear(self) -> None:
        self.embedding, self._labels = pd.DataFrame(columns=["x", "y"]), np.empty(0, dtype=object)
        self._updating = True
        try:
            self.categories = []
        finally:
            self._updating = False
        self.revision += 1

    def _show(self, cells: AnnData, emb: pd.DataFrame, reset_selection: bool) -> None:
        labels, continuous = colour_values(self, cells, emb)
        self.embedding, self._labels, self.continuous = emb, labels, continuous
        cats: list[str] = []
        if not continuous:
            counts = pd.Series(labels).value_counts()
            cats = sorted(map(str, counts.index), key=lambda c: (-counts[c], c))
        self._updating = True
        try:
            self.categories = cats
            if reset_selection or not set(self.selected) <= set(cats):
                self.selected = cats[: self.top_n]
        finally:
            self._updating = False
        self.revision += 1

    # ------------------------------------------------------------------ genes, hover, selections
    def find_genes(self, query: str, limit: int = 20) -> list[str]:
        """Genes of the current cells whose name starts with (then contains) ``query`` (any case), as spelled."""
        cells = self.adata if self.adata is not None else self.generated
        return [] if cells is None else match_genes(cells, query, limit)

    def cell_info(self, cell: str) -> dict[str, Any]:
        """What hovering a cell shows: id, perturbation, split and QC status (and the colour value)."""
        cells = self.cells()
        obs = cells.obs.loc[cell]
        key = cells.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")
        info: dict[str, Any] = {"cell": str(cell), "perturbation": str(obs.get(key, "—"))}
        unsplit = "generated" if self.source == "generated" else "—"
        info["split"] = str(obs["split"]) if "split" in obs.index else unsplit
        if self.source == "generated":
            info["QC"] = "artifact on" if bool(obs.get("generated_artifact", False)) else "artifact off"
        elif self.artifact_key in obs.index:
            info["QC"] = "fails QC (a_i = 1)" if float(obs[self.artifact_key]) > 0 else "passes QC (a_i = 0)"
        else:
            info["QC"] = "not labelled"
        pos = self.embedding.index.get_indexer([cell])[0]
        if pos >= 0 and len(self._labels) == len(self.embedding):
            value = self._labels[pos]
            info[self.colour_name] = f"{value:.4g}" if self.continuous else value
        return info

    @property
    def colour_name(self) -> str:
        """Name of the colouring shown (a gene's; ``perturbation`` while the ``obs`` column is the other source's)."""
        return self.gene if self.color_by == "gene" else (self._fallback or self.color_by)

    def cells_in_polygon(self, vertices: Sequence[tuple[float, float]]) -> list[str]:
        """Every shown cell inside a lasso polygon (embedding coordinates); with ``place_rest``, every cell."""
        from matplotlib.path import Path as MplPath

        self.wait_task()
        if self.embedding.empty or len(vertices) < 3:
            return []
        inside = MplPath(np.asarray(vertices, dtype=float)).contains_points(self.embedding[["x", "y"]].to_numpy())
        return [str(c) for c in self.embedding.index[inside]]

    def select_cells(self, cells: Sequence[str], *, name: str) -> int:
        """Write a named selection to ``obs[selection_key]`` of the current cells (data or :attr:`generated`).

        Cells already in another selection keep theirs unless selected again; the rest are
        ``"unselected"``. Returns the number of cells named.
        """
        name = name.strip()
        n = 0
        with report_errors(self, "name the selection"):
            if not name:
                raise ValueError("give the selection a name")
            target = self.cells()
            cells = list(cells)
            if not cells:
                raise ValueError(EMPTY_SELECTION.replace("one item", "cells with the lasso or box first"))
            missing = [c for c in cells if c not in target.obs_names]
            if missing:
                raise ValueError(f"{len(missing)} cells are not in the {self.source} cells, e.g. {missing[:3]}")
            col = self.selection_key
            old = target.obs[col].astype(str) if col in target.obs else pd.Series("unselected", index=target.obs_names)
            old.loc[cells] = name
            target.obs[col] = pd.Categorical(old)
            n = len(cells)
        if n:
            if self.color_by == "selection":
                self.update(reset_selection=True)  # redraws (and clears the message first)
            set_message(self, f"Wrote {n} cells as {name!r} to {self.source} obs[{self.selection_key!r}].", "info")
        return n

    def export_label(self) -> str:
        """What the export files are named after (what is shown)."""
        return f"{self.source}_{self.method}_{self.colour_name}"

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables the widget shows, by name (exported as CSV); empty before there is a result."""
        self.wait_task()
        if self.embedding.empty:
            return {}
        table = self.embedding.copy()
        table[self.colour_name] = self._labels
        table.index.name = "cell"
        return {"embedding": table}

    # ------------------------------------------------------------------ figures and view
    def static_figure(self) -> Figure:
        """Scatter of the current embedding (square), its legend or colour bar beside it (waits for a running one)."""
        self.wait_task()
        return draw_embedding(self)

    def _make_view(self, interactive: bool | None = None):
        from .latent_view import LatentView

        return LatentView(self, interactive=self.interactive if interactive is None else interactive)

    def show(self, *, static: bool = False) -> None:
        """As :meth:`Controller.show`; with ``static=True`` the plot is a PNG, not an ipympl canvas
        (a static page has no ipympl JavaScript)."""
        if static and self._view is None:
            self._view = self._make_view(interactive=False)
        super().show(static=static)
