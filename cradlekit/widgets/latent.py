"""LatentExplorer: t-SNE/UMAP of observed or generated cells by artifact, perturbation or group (Figure 4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anndata
import ipywidgets as W
import numpy as np
import pandas as pd
import traitlets as T
from anndata import AnnData
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..data import is_combination, parse_perturbation
from ..evaluate import perturbseq_normalize
from ..model import PerturbationModel
from ..pl import embed_tsne, norman_pathway_groups
from ._messages import EMPTY_SELECTION, NO_MODEL, NOT_TRAINED, report_errors, set_message
from ._views import OTHER_COLOR, Controller, FigureImage, View, new_figure

__all__ = ["LatentExplorer", "LatentView"]

_ARTIFACT_LABELS = {"data": ("clean (a_i = 0)", "artifact (a_i = 1)"), "generated": ("artifact off", "artifact on")}
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
)  # fmt: skip


class LatentExplorer(Controller):
    """Two-dimensional embedding of observed or generated cells, coloured and filtered interactively.

    The interactive version of the paper's Figure 4: generated cells (artifact latent off and on,
    :meth:`cradlekit.PerturbationModel.generate`) or observed cells, embedded with t-SNE
    (:func:`cradlekit.pl.embed_tsne`) or UMAP (``umap-learn`` on the PCA of
    :func:`cradlekit.evaluate.perturbseq_normalize`), coloured by artifact label, perturbation or
    group. Embeddings are computed once per (source, method) and cached; changing the colouring or
    the selected groups only redraws.

    Parameters
    ----------
    adata
        Observed cells (``source="data"``); labelled by :func:`cradlekit.qc.label_artifacts` for
        colouring by artifact.
    model
        A trained :class:`cradlekit.PerturbationModel` or a :class:`TrainingController`
        (``source="generated"``).
    groups
        ``{perturbation: group}``, ``"norman"`` (the six Norman 2019 pathways,
        :func:`cradlekit.pl.norman_pathway_groups`) or ``None``: control / single / combination.
    perturbations
        Perturbations to generate (``None``: the model's training perturbations and those of
        ``adata`` the model can generate).
    **traits
        Initial values of the traits below.

    Attributes
    ----------
    source : {"data", "generated"}
    method : {"tsne", "umap"}
    color_by : {"artifact", "perturbation", "group"}
    groups : mapping, str or None
        As the parameter; changing it recolours.
    categories : list of str
        Categories of the current colouring (most frequent first).
    selected : list of str
        Categories drawn in colour; the others are grey. Empty: a message, everything grey.
    n_per_perturbation, max_cells, seed, artifact_key
        Cells generated per perturbation and artifact setting; most cells embedded; seed; ``obs``
        column of ``a_i`` in ``adata``.
    embedding : pandas.DataFrame
        Coordinates (``x``, ``y``) of the current source and method, indexed like its cells.

    Examples
    --------
    >>> from cradlekit.widgets import LatentExplorer
    >>> LatentExplorer(adata, model=model, source="generated", groups="norman")   # doctest: +SKIP
    """

    source = T.Enum(("data", "generated"), default_value="data")
    method = T.Enum(("tsne", "umap"), default_value="tsne")
    color_by = T.Enum(("artifact", "perturbation", "group"), default_value="artifact")
    categories = T.List(T.Unicode())
    selected = T.List(T.Unicode())
    n_per_perturbation = T.Int(50)
    max_cells = T.Int(3000)
    seed = T.Int(0)
    artifact_key = T.Unicode("artifact_k3")
    top_n = T.Int(12)
    groups = T.Any(None, help="{perturbation: group}, 'norman' or None (control / single / combination)")
    revision = T.Int(0)

    def __init__(
        self,
        adata: AnnData | None = None,
        *,
        model: Any = None,
        groups: Mapping[str, str] | str | None = None,
        perturbations: Sequence[str] | None = None,
        **traits: Any,
    ):
        self.adata = adata
        self._source_model = model
        self.perturbations = None if perturbations is None else list(perturbations)
        self._cells: dict[str, AnnData] = {}
        self._embeddings: dict[tuple[str, str], pd.DataFrame] = {}
        self.embedding = pd.DataFrame(columns=["x", "y"])
        self._labels = np.empty(0, dtype=object)
        self._updating = False
        super().__init__(**traits)
        self.set_trait("groups", groups)
        self.update()

    # ------------------------------------------------------------------ state
    @property
    def model(self) -> PerturbationModel | None:
        src = self._source_model
        if src is None or isinstance(src, PerturbationModel):
            return src
        return getattr(src, "model", None)

    @T.observe("source", "method", "color_by", "n_per_perturbation", "max_cells", "seed", "artifact_key", "groups")
    def _on_setting(self, change) -> None:
        if change["name"] in ("n_per_perturbation", "seed"):
            self._cells.pop("generated", None)
            self._embeddings = {k: v for k, v in self._embeddings.items() if k[0] != "generated"}
        if change["name"] in ("max_cells", "seed"):
            self._embeddings = {}
        self.update(reset_selection=change["name"] != "method")

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
        """The cells of the current source (generated ones are drawn once and cached)."""
        if self.source == "data":
            if self.adata is None:
                raise ValueError("no observed cells: pass adata=")
            return self.adata
        if "generated" not in self._cells:
            self._cells["generated"] = self._generate()
        return self._cells["generated"]

    def refresh(self) -> bool:
        """Forget cached cells and embeddings (e.g. after more training) and recompute."""
        self._cells, self._embeddings = {}, {}
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
        gen = anndata.concat(parts, merge="first", uns_merge="first")
        gen.obs_names_make_unique()
        return gen

    def _embed(self, cells: AnnData) -> pd.DataFrame:
        if self.method == "tsne":
            emb = embed_tsne(cells, max_cells=self.max_cells, seed=self.seed)
            return emb.set_axis(["x", "y"], axis=1)
        try:
            import umap
        except ImportError as err:  # pragma: no cover - umap-learn comes with scanpy
            raise ValueError("UMAP needs the umap-learn package (pip install umap-learn); t-SNE works without it") \
                from err
        from sklearn.decomposition import PCA

        rows = np.arange(cells.n_obs)
        if cells.n_obs > self.max_cells:
            rows = np.sort(np.random.default_rng(self.seed).choice(cells.n_obs, size=self.max_cells, replace=False))
        if rows.size < 5:
            raise ValueError(f"UMAP needs at least 5 cells, got {rows.size}")
        sub = cells[rows] if rows.size < cells.n_obs else cells
        X = perturbseq_normalize(sub, zero_total="zero", dtype=np.float32)
        X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
        X = PCA(n_components=max(1, min(50, X.shape[0] - 1, X.shape[1] - 1)), random_state=self.seed).fit_transform(X)
        coords = umap.UMAP(n_neighbors=min(15, rows.size - 1), random_state=self.seed).fit_transform(X)
        return pd.DataFrame(coords, index=sub.obs_names.copy(), columns=["x", "y"])

    def _cell_labels(self, cells: AnnData, obs: pd.DataFrame) -> np.ndarray:
        key = cells.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")
        control = str(cells.uns.get("cradlekit", {}).get("control_label", "control"))
        if self.color_by == "artifact":
            column = "generated_artifact" if self.source == "generated" else self.artifact_key
            if column not in obs.columns:
                raise ValueError(
                    f"adata.obs[{column!r}] not found: run cradlekit.qc.label_artifacts(adata) to colour by artifact"
                )
            off, on = _ARTIFACT_LABELS[self.source]
            return np.where(obs[column].astype(float).to_numpy() > 0, on, off).astype(object)
        perts = obs[key].astype(str).to_numpy()
        if self.color_by == "perturbation":
            return perts.astype(object)
        uniq = pd.unique(perts)
        if self.groups is None:
            combo = dict(zip(uniq, is_combination(list(uniq), control_label=control), strict=True))
            mapping = {p: "control" if p == control else ("combination" if combo[p] else "single") for p in uniq}
        elif isinstance(self.groups, str):
            if self.groups != "norman":
                raise ValueError(f"groups must be a mapping, 'norman' or None, got {self.groups!r}")
            mapping = norman_pathway_groups(uniq, control_label=control)
        else:
            mapping = {p: self.groups.get(p, "control" if p == control else "other") for p in uniq}
        return np.asarray([mapping[p] for p in perts], dtype=object)

    def update(self, *, reset_selection: bool = True) -> bool:
        """Recompute (if needed) the embedding and the colours of the current settings."""
        ok = False
        with report_errors(self, f"show the {self.source} cells"):
            cells = self.cells()
            if not cells.obs_names.is_unique:
                raise ValueError("the cells' obs_names are not unique: call adata.obs_names_make_unique() first")
            key = (self.source, self.method)
            if key not in self._embeddings:
                self._embeddings[key] = self._embed(cells)
            emb = self._embeddings[key]
            obs = cells.obs.loc[emb.index]
            labels = self._cell_labels(cells, obs)
            counts = pd.Series(labels).value_counts()
            cats = sorted(counts.index, key=lambda c: (-counts[c], str(c)))
            self.embedding, self._labels = emb, labels
            self._updating = True
            try:
                self.categories = [str(c) for c in cats]
                if reset_selection or not set(self.selected) <= set(self.categories):
                    self.selected = self.categories[: self.top_n]
            finally:
                self._updating = False
            ok = True
        if not ok:
            self.embedding, self._labels = pd.DataFrame(columns=["x", "y"]), np.empty(0, dtype=object)
        self.revision += 1
        return ok

    # ------------------------------------------------------------------ figures and view
    def static_figure(self) -> Figure:
        """Scatter of the current embedding; unselected categories grey, drawn first."""
        fig, axes = new_figure(1, 1, (6.4, 4.6))
        ax = axes[0, 0]
        ax.set_xticks([])
        ax.set_yticks([])
        title = {"tsne": "t-SNE", "umap": "UMAP"}[self.method]
        ax.set_title(f"{title} of {self.source} cells by {self.color_by}")
        if self.embedding.empty:
            ax.text(0.5, 0.5, self.message or "nothing to show", ha="center", va="center", wrap=True,
                    transform=ax.transAxes, fontsize="small")  # fmt: skip
            return fig
        xy = self.embedding[["x", "y"]].to_numpy()
        chosen = [c for c in self.categories if c in set(self.selected)]
        palette = {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(chosen)}
        grey = ~np.isin(self._labels, chosen)
        rng = np.random.default_rng(self.seed)
        order = np.concatenate([np.flatnonzero(grey), rng.permutation(np.flatnonzero(~grey))])
        colors = [palette.get(c, OTHER_COLOR) for c in self._labels[order]]
        size = float(np.clip(20000.0 / max(len(order), 1), 2.0, 30.0))
        ax.scatter(xy[order, 0], xy[order, 1], c=colors, s=size, linewidths=0, rasterized=len(order) > 5000)
        handles = [Line2D([], [], ls="", marker="o", color=palette[c], label=c) for c in chosen]
        if grey.any():
            handles.append(Line2D([], [], ls="", marker="o", color=OTHER_COLOR, label="other / not selected"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
        return fig

    def _make_view(self) -> LatentView:
        return LatentView(self)


class LatentView(View):
    """Widgets of a :class:`LatentExplorer`: source, method, colouring, group selection, the plot."""

    def __init__(self, controller: LatentExplorer):
        super().__init__(controller)
        c = controller
        self.source = W.ToggleButtons(options=["data", "generated"], description="cells")
        self.method = W.ToggleButtons(options=[("t-SNE", "tsne"), ("UMAP", "umap")], description="method")
        self.color_by = W.ToggleButtons(options=["artifact", "perturbation", "group"], description="colour by")
        for name in ("source", "method", "color_by"):
            T.link((c, name), (getattr(self, name), "value"))
        self.select = W.SelectMultiple(options=c.categories, value=c.selected, rows=10, description="show")
        self.select.observe(self._on_select, names="value")
        self.all = W.Button(description="all", layout=W.Layout(width="60px"))
        self.none = W.Button(description="none", layout=W.Layout(width="60px"))
        self.all.on_click(lambda _: setattr(c, "selected", list(c.categories)))
        self.none.on_click(lambda _: setattr(c, "selected", []))
        self.image = FigureImage()
        self._syncing = False
        c.observe(self._render, names="revision")
        self._render()
        self.root = W.VBox([
            self.source, self.method, self.color_by, self.message,
            W.HBox([W.VBox([self.select, W.HBox([self.all, self.none])]), self.image.widget]),
        ])  # fmt: skip
        self.root.add_class("cradlekit-latent")

    def _on_select(self, change) -> None:
        if not self._syncing:
            self.controller.selected = [str(v) for v in change["new"]]

    def _render(self, change=None) -> None:
        c = self.controller
        self._syncing = True
        try:
            self.select.options = tuple(c.categories)
            self.select.value = tuple(s for s in c.selected if s in c.categories)
        finally:
            self._syncing = False
        self.image.show(c.static_figure())
