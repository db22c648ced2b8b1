"""LatentExplorer: UMAP/t-SNE of observed or generated cells by artifact, perturbation, group or gene (Figure 4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata
import numpy as np
import pandas as pd
import traitlets as T
from anndata import AnnData
from matplotlib.figure import Figure

from ..data import parse_perturbation
from ..model import PerturbationModel
from ..pl.embed import EMBEDDINGS_UNS_KEY, embed_cells, warm_up_umap
from ._latent_draw import cell_labels, draw_embedding, gene_values, match_genes
from ._messages import EMPTY_SELECTION, NO_MODEL, NOT_TRAINED, report_errors, set_message
from ._views import Controller

__all__ = ["LatentExplorer"]

METHOD_TITLES = {"tsne": "t-SNE", "umap": "UMAP"}


class LatentExplorer(Controller):
    """Two-dimensional embedding of observed or generated cells, coloured, selected and hovered interactively.

    The interactive version of the paper's Figure 4: generated cells (artifact latent off and on,
    :meth:`cradlekit.PerturbationModel.generate`) or observed cells, embedded by
    :func:`cradlekit.pl.embed.embed_cells` (UMAP by default: ~1 s for 3,000 cells; or t-SNE) on one
    shared neighbour graph, coloured by artifact label, perturbation, group, split, a gene's
    expression or a named selection. Embeddings are written to ``obsm`` (``X_cradlekit_umap`` /
    ``X_cradlekit_tsne`` of ``adata``, or of :attr:`generated`) and reused; changing the colouring
    or the selection only redraws. Computing one shows a busy state and can be cancelled
    (:meth:`cancel`).

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
    **traits
        Initial values of the traits below.

    Attributes
    ----------
    source : {"data", "generated"}
    method : {"umap", "tsne"}
    color_by : {"artifact", "perturbation", "group", "split", "gene", "selection"}
    gene : str
        Gene (``var_names`` or a symbol of ``var['gene_symbols']``…) for ``color_by="gene"``.
    categories : list of str
        Categories of the current colouring (most frequent first; empty for a gene).
    selected : list of str
        Categories drawn in colour; the others are grey. Empty: a message, everything grey.
    selection_key : str
        ``obs`` column that :meth:`select_cells` writes named selections to.
    n_per_perturbation, max_cells, seed, artifact_key
        Cells generated per perturbation and artifact setting; most cells embedded; seed; ``obs``
        column of ``a_i`` in ``adata``.
    embedding : pandas.DataFrame
        Coordinates (``x``, ``y``) of the current source and method, indexed like its cells.
    generated : AnnData or None
        The generated cells (their embeddings in ``obsm``).

    Examples
    --------
    >>> from cradlekit.widgets import LatentExplorer
    >>> le = LatentExplorer(adata, model=model, source="generated", groups="norman")   # doctest: +SKIP
    >>> le.color_by, le.gene = "gene", "GATA1"                                          # doctest: +SKIP
    >>> le.select_cells(le.embedding.index[le.embedding.x > 0], name="right arm")       # doctest: +SKIP
    """

    source = T.Enum(("data", "generated"), default_value="data")
    method = T.Enum(("umap", "tsne"), default_value="umap")
    color_by = T.Enum(("artifact", "perturbation", "group", "split", "gene", "selection"), default_value="artifact")
    gene = T.Unicode("")
    categories = T.List(T.Unicode())
    selected = T.List(T.Unicode())
    selection_key = T.Unicode("cradlekit_selection")
    n_per_perturbation = T.Int(50)
    max_cells = T.Int(3000)
    seed = T.Int(0)
    artifact_key = T.Unicode("artifact_k3")
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
        **traits: Any,
    ):
        self.adata = adata
        self.interactive = bool(interactive)
        self._source_model = model
        self.perturbations = None if perturbations is None else list(perturbations)
        self.generated: AnnData | None = None
        self.embedding = pd.DataFrame(columns=["x", "y"])
        self._labels = np.empty(0, dtype=object)
        self._updating = False
        super().__init__(**traits)
        if self.method == "umap":
            warm_up_umap()  # compile umap-learn's numba code while the user looks at the widget
        self.set_trait("groups", groups)
        self.update()

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> PerturbationModel | None:
        """The trained model shown (given directly, or the ``model`` of the controller given), or ``None``."""
        src = self._source_model
        if src is None or isinstance(src, PerturbationModel):
            return src
        return getattr(src, "model", None)

    @property
    def title(self) -> str:
        """What the plot shows (or will show once computed)."""
        what = f"{self.gene} expression" if self.color_by == "gene" else self.color_by
        return f"{METHOD_TITLES[self.method]} of {self.source} cells by {what}"

    @T.observe("source", "method", "color_by", "gene", "n_per_perturbation", "max_cells", "seed", "artifact_key",
               "groups", "selection_key")  # fmt: skip
    def _on_setting(self, change) -> None:
        name = change["name"]
        if name in ("n_per_perturbation", "seed"):
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
            self.generated = self._generate()
        return self.generated

    def refresh(self) -> bool:
        """Forget the generated cells and every stored embedding (e.g. after more training) and recompute."""
        self.generated = None
        if self.adata is not None:
            for key in [k for k in self.adata.obsm if k.startswith("X_cradlekit_")]:
                del self.adata.obsm[key]
        return self.update(reset_selection=False)

    def _generate(self) -> AnnData:
        model = self.model
        if model is None:
            raise ValueError(NO_MODEL)
        if getattr(self._source_model, "running", False):
            raise ValueError("Training is running: wait for it or stop it before generating cells.")
        if not model.is_trained:
            raise ValueError(NOT_TRAINED)
        reg = model.registry
        control = str(reg["control_label"])
        labels = self.perturbations
        if labels is None:
            labels = [str(p) for p in reg["trained_perturbations"]]
            if self.adata is not None:
                key = self.adata.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")
                known = set(map(str, reg["targets"]))
                for p in pd.unique(self.adata.obs[key].astype(str)):
                    if set(parse_perturbation(p, control_label=control)) <= known:
                        labels.append(p)
            labels = list(dict.fromkeys(labels))
        parts = [model.generate(labels, n=self.n_per_perturbation, artifact=on, seed=self.seed) for on in (False, True)]
        return anndata.concat(parts, keys=["off", "on"], index_unique="_", merge="first", uns_merge="first")

    @property
    def obsm_key(self) -> str:
        """``obsm`` key of the current method's embedding (``X_cradlekit_umap`` / ``X_cradlekit_tsne``)."""
        return f"X_cradlekit_{self.method}"

    def _stored(self, cells: AnnData) -> pd.DataFrame | None:
        """The stored embedding of the current settings, if any."""
        key = self.obsm_key
        info = cells.uns.get(EMBEDDINGS_UNS_KEY, {}).get(key)
        if key not in cells.obsm or info is None or int(info.get("max_cells", -1)) != self.max_cells \
                or int(info.get("seed", -1)) != self.seed:  # fmt: skip
            return None
        xy = np.asarray(cells.obsm[key], dtype=np.float64)[:, :2]
        keep = np.isfinite(xy).all(axis=1)
        return pd.DataFrame(xy[keep], index=cells.obs_names[keep].copy(), columns=["x", "y"])

    def _embed(self, cells: AnnData, check) -> pd.DataFrame:
        """Embed (a seeded subsample of at most ``max_cells`` of) the cells; store it in ``cells.obsm``."""
        rows = np.arange(cells.n_obs)
        if cells.n_obs > self.max_cells:
            rows = np.sort(np.random.default_rng(self.seed).choice(cells.n_obs, size=self.max_cells, replace=False))
        sub = AnnData(X=cells.X[rows], obs=pd.DataFrame(index=cells.obs_names[rows].copy()), var=cells.var[[]])
        emb = embed_cells(sub, method=self.method, seed=self.seed, check=check)
        return emb

    def _store(self, cells: AnnData, emb: pd.DataFrame) -> None:
        full = np.full((cells.n_obs, 2), np.nan, dtype=np.float32)
        full[cells.obs_names.get_indexer(emb.index)] = emb[["x", "y"]].to_numpy()
        cells.obsm[self.obsm_key] = full
        cells.uns.setdefault(EMBEDDINGS_UNS_KEY, {})[self.obsm_key] = {
            "method": self.method, "max_cells": int(self.max_cells), "seed": int(self.seed), "n_embedded": len(emb),
        }  # fmt: skip

    def update(self, *, reset_selection: bool = True, restore: tuple[str, Any] | None = None) -> bool:
        """Show the current settings: recolour at once, or compute the embedding (busy, cancellable) first."""
        ready = False
        with report_errors(self, f"show the {self.source} cells"):
            if self.source == "data" or self.generated is not None:
                cells = self.cells()
                if not cells.obs_names.is_unique:
                    raise ValueError("the cells' obs_names are not unique: call adata.obs_names_make_unique() first")
                emb = self._stored(cells)
                if emb is not None:
                    self._show(cells, emb, reset_selection)
                    ready = True
        if ready or (self.message and self.message_level == "error"):
            if not ready:
                self._clear()
            return ready
        source = self.source

        def work(token):
            cells = self.cells() if source == "data" or self.generated is not None else self._generate()
            if not cells.obs_names.is_unique:
                raise ValueError("the cells' obs_names are not unique: call adata.obs_names_make_unique() first")
            token.check()
            return cells, self._embed(cells, token.check)

        def apply(result):
            cells, emb = result
            if source == "generated":
                self.generated = cells
            self._store(cells, emb)
            self._show(cells, emb, reset_selection)

        def on_cancel():
            if restore is not None:
                setattr(self, *restore)

        self._clear()
        started = self.run_task(self.title, work, apply, action=f"show the {source} cells", on_cancel=on_cancel)
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
        obs = cells.obs.loc[emb.index]
        self.embedding = emb
        if self.color_by == "gene":
            self._labels = gene_values(cells[emb.index], self.gene) if self.gene else np.full(len(emb), np.nan)
            cats: list[str] = []
            if not self.gene:
                set_message(self, "Type a gene to colour the cells by its expression.", "info")
        else:
            self._labels = cell_labels(self, cells, obs)
            counts = pd.Series(self._labels).value_counts()
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
        """Genes of the current cells whose name starts with (then contains) ``query`` (case-insensitive)."""
        cells = self.adata if self.adata is not None else self.generated
        return [] if cells is None else match_genes(cells, query, limit)

    def cell_info(self, cell: str) -> dict[str, Any]:
        """What hovering a cell shows: id, perturbation, split and QC status (and the colour value)."""
        cells = self.cells()
        obs = cells.obs.loc[cell]
        key = cells.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")
        info: dict[str, Any] = {"cell": str(cell), "perturbation": str(obs.get(key, "—"))}
        info["split"] = str(obs["split"]) if "split" in obs.index else ("generated" if self.source == "generated"
                                                                         else "—")  # fmt: skip
        if self.source == "generated":
            info["QC"] = "artifact on" if bool(obs.get("generated_artifact", False)) else "artifact off"
        elif self.artifact_key in obs.index:
            info["QC"] = "fails QC (a_i = 1)" if float(obs[self.artifact_key]) > 0 else "passes QC (a_i = 0)"
        else:
            info["QC"] = "not labelled"
        pos = self.embedding.index.get_indexer([cell])[0]
        if pos >= 0 and len(self._labels) == len(self.embedding):
            info[self.gene if self.color_by == "gene" else self.color_by] = self._labels[pos]
        return info

    def cells_in_polygon(self, vertices: Sequence[tuple[float, float]]) -> list[str]:
        """Cells of the current embedding inside a lasso polygon (embedding coordinates)."""
        from matplotlib.path import Path as MplPath

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
            set_message(self, f"Wrote {n} cells as {name!r} to {self.source} obs[{col!r}].", "info")
            if self.color_by == "selection":
                self.update(reset_selection=True)
        return n

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables the widget shows, by name (exported as CSV); empty before there is a result."""
        if self.embedding.empty:
            return {}
        table = self.embedding.copy()
        table[self.gene if self.color_by == "gene" else self.color_by] = self._labels
        table.index.name = "cell"
        return {"embedding": table}

    # ------------------------------------------------------------------ figures and view
    def static_figure(self) -> Figure:
        """Scatter of the current embedding (square), its legend or colour bar beside it."""
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
