"""Figure 4 of the paper: t-SNE of generated cells, by artifact presence and by perturbation group."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from .._keys import CONTROL_LABEL, UNS_KEY
from .._logging import logger
from .._validation import check_obs_key
from ..evaluate.log_normalize import perturbseq_normalize
from . import _style as st
from .pathways import norman_pathway_groups

__all__ = ["embed_tsne", "generated_tsne"]

TSNE_COLUMNS = ("tsne1", "tsne2")
#: Up to this many cells, PCA and t-SNE run on one thread by default (see ``embed_tsne``).
SINGLE_THREAD_MAX_CELLS = 5000


def embed_tsne(
    adata: AnnData,
    *,
    layer: str | None = None,
    n_pcs: int = 50,
    perplexity: float = 30.0,
    seed: int = 0,
    max_cells: int | None = None,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """Two-dimensional t-SNE of cells in the paper's metric space.

    Each cell is normalised with :func:`cradlekit.evaluate.perturbseq_normalize`
    (``log2(1e4 · x / Σx + 1)``; cells with zero counts stay at 0), reduced by PCA and embedded
    with :class:`sklearn.manifold.TSNE` (PCA initialisation), all seeded. Expected expressions
    (``predict_mean``) may be passed too: rescaling a profile that already sums to ``1e4`` changes
    nothing.

    Parameters
    ----------
    adata
        Cells × genes AnnData (counts or expected expression in ``X`` or ``layers[layer]``).
    layer
        Layer with the values; ``None`` uses ``X``.
    n_pcs
        Principal components fed to t-SNE (capped at ``min(cells, genes) - 1``).
    perplexity
        t-SNE perplexity (capped at ``(cells - 1) / 3`` for small inputs).
    seed
        Seed of the subsample, the PCA solver and t-SNE.
    max_cells
        Embed a seeded random subsample of at most this many cells (``None``: all).
    n_threads
        BLAS/OpenMP threads for PCA and t-SNE. ``None``: one thread up to
        :data:`SINGLE_THREAD_MAX_CELLS` cells (such runs take about a second, and OpenMP's
        spin-waiting on a busy machine can slow them 10-100×), the library default above.

    Returns
    -------
    pandas.DataFrame
        Columns ``tsne1``, ``tsne2``, indexed by the ``obs_names`` of the embedded cells (in
        ``adata`` order), so that other plots and widgets can align it with ``obs`` (make the
        names unique first, e.g. after concatenating two ``generate`` calls:
        ``adata.obs_names_make_unique()``).

    Raises
    ------
    ValueError
        Fewer than 5 cells, or invalid ``n_pcs``/``perplexity``/``max_cells``.
    cradlekit.errors.InvalidCountsError
        Negative or non-finite values.
    """
    rows, coords = _embed(adata, layer, n_pcs, perplexity, seed, max_cells, n_threads)
    return pd.DataFrame(coords, index=adata.obs_names[rows].copy(), columns=list(TSNE_COLUMNS))


def _embed(
    adata: AnnData, layer: str | None, n_pcs: int, perplexity: float, seed: int, max_cells: int | None,
    n_threads: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the embedded cells and their ``(n, 2)`` t-SNE coordinates."""
    if n_pcs < 1 or perplexity <= 0 or (max_cells is not None and max_cells < 5):
        raise ValueError(f"need n_pcs >= 1, perplexity > 0 and max_cells >= 5 (got {n_pcs}, {perplexity}, {max_cells})")
    rows = np.arange(adata.n_obs)
    if max_cells is not None and adata.n_obs > max_cells:
        rows = np.sort(np.random.default_rng(seed).choice(adata.n_obs, size=max_cells, replace=False))
    n = rows.size
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 cells, got {n}")
    sub = adata[rows] if rows.size < adata.n_obs else adata
    X = perturbseq_normalize(sub, layer=layer, zero_total="zero", dtype=np.float32)
    perp = min(float(perplexity), (n - 1) / 3.0)
    if perp < perplexity:
        logger.info(f"embed_tsne: perplexity lowered to {perp:.1f} for {n} cells")
    if n_threads is None and n <= SINGLE_THREAD_MAX_CELLS:
        n_threads = 1
    with threadpool_limits(limits=n_threads):
        if X.shape[1] > 1:
            n_comp = max(1, min(n_pcs, n - 1, X.shape[1] - 1))
            solver = "arpack" if sp.issparse(X) else "auto"
            X = PCA(n_components=n_comp, svd_solver=solver, random_state=seed).fit_transform(X)
        else:
            X = X.toarray() if sp.issparse(X) else X
        tsne = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=seed)
        coords = tsne.fit_transform(np.ascontiguousarray(X, dtype=np.float32))
    return rows, coords


def generated_tsne(
    panels: Mapping[str, AnnData],
    *,
    color: Sequence[str] = ("artifact", "group"),
    group_key: str = "perturbation",
    groups: Mapping[str, str] | Literal["norman"] | None = None,
    artifact_key: str = "generated_artifact",
    top_n: int = 10,
    n_pcs: int = 50,
    perplexity: float = 30.0,
    seed: int = 0,
    max_cells: int | None = None,
    n_threads: int | None = None,
    point_size: float | None = None,
    axes: np.ndarray | Sequence[Axes] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """t-SNE of each model's generated cells, coloured by artifact and by group (Figure 4).

    One column per model (entry of ``panels``), one row per entry of ``color``. Each model's cells
    are embedded separately with :func:`embed_tsne` (same seed); the rows of a column share the
    embedding. Colours of a row are the same across models; cells are drawn in a seeded random
    order so that no group hides another, except ``"other"`` cells, drawn first in grey.

    Parameters
    ----------
    panels
        ``{model name: generated AnnData}`` (e.g. ``{"CRADLE-VAE": ..., "CVAE": ...,
        "SAMS-VAE": ...}``), typically the artifact-off and artifact-on draws of a model
        concatenated (``anndata.concat([gen_off, gen_on])``).
    color
        Rows, each ``"artifact"`` (``obs[artifact_key]``: artifact on/off), ``"group"``
        (``obs[group_key]`` mapped through ``groups``) or any other ``obs`` column (categorical).
    group_key
        ``obs`` column with the perturbation labels.
    groups
        ``{perturbation: group}`` (e.g. :func:`~cradlekit.pl.norman_pathway_groups`), or
        ``"norman"`` for the six Norman 2019 pathways. Unlisted perturbations are ``"other"``,
        except the control label, which is ``"control"``. ``None``: each perturbation is its
        own group.
    artifact_key
        Boolean ``obs`` column: generated with the artifact latent on. A model without it (or
        without any ``True``) shows one colour, "artifact off".
    top_n
        Legend size: the ``top_n`` most frequent categories of a row (over all models) get their
        own colour; the rest are merged into grey ``"other"``.
    n_pcs, perplexity, seed, max_cells, n_threads
        As in :func:`embed_tsne` (``max_cells`` per model).
    point_size
        Marker area; default ``clip(20000 / cells, 2, 30)``.
    axes
        ``len(color) × len(panels)`` Axes of one figure to draw into.
    figsize
        Size of a new figure (default: 3.4 inches per column, 3.2 per row, plus the legends).

    Returns
    -------
    matplotlib.figure.Figure
        Top-row titles are the model names; the first column's y-labels name the rows; each
        row has one legend, on its last axes.

    Raises
    ------
    ValueError
        ``panels`` empty, ``top_n < 1``, a wrong number of ``axes``, or a model with fewer than
        5 cells.
    cradlekit.errors.MissingKeyError
        ``group_key`` or a ``color`` column absent.
    """
    if not panels:
        raise ValueError("panels is empty: pass {model name: generated AnnData}")
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    color = [color] if isinstance(color, str) else list(color)
    names = list(panels)
    for name in names:  # check every column before the (slow) embeddings
        for row in color:
            if row == "group":
                check_obs_key(panels[name], group_key, what=f"group_key of {name!r}")
            elif row != "artifact":
                check_obs_key(panels[name], row, what=f"color column of {name!r}")
    if axes is None:
        size = figsize or (3.4 * len(names) + 2.2, 3.2 * len(color))
        fig, grid = st.new_figure(len(color), len(names), size)
    else:
        grid = st.as_axes_grid(axes, len(color), len(names), what="axes")
        fig = grid[0, 0].get_figure(root=True)

    embeddings, labels = {}, {row: {} for row in color}
    for name in names:
        rows, embeddings[name] = _embed(panels[name], None, n_pcs, perplexity, seed, max_cells, n_threads)
        obs = panels[name].obs.iloc[rows]
        for row in color:
            labels[row][name] = _row_labels(panels[name], obs, row, group_key, groups, artifact_key)

    for i, row in enumerate(color):
        palette, order = _row_palette(row, labels[row], top_n)
        for j, name in enumerate(names):
            ax = grid[i, j]
            _scatter(ax, embeddings[name], labels[row][name], palette, seed, point_size)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name)
            if j == 0:
                ax.set_ylabel(_row_title(row, groups, group_key))
            if row == "artifact" and not (labels[row][name] == "artifact on").any():
                ax.text(0.02, 0.02, "no artifact cells", transform=ax.transAxes, fontsize="x-small")
        handles = [
            Line2D([], [], ls="", marker="o", markersize=6, color=palette[c], label=c) for c in order
        ]
        grid[i, -1].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
            frameon=False, borderaxespad=0.0,
        )  # fmt: skip
    return fig


def _row_labels(
    adata: AnnData, obs: pd.DataFrame, row: str, group_key: str, groups, artifact_key: str
) -> np.ndarray:
    """The category of each embedded cell for one row."""
    if row == "artifact":
        if artifact_key not in obs.columns:
            return np.full(len(obs), "artifact off", dtype=object)
        on = obs[artifact_key].fillna(False).to_numpy(dtype=bool)
        return np.where(on, "artifact on", "artifact off").astype(object)
    if row == "group":
        perts = obs[group_key].astype(str).to_numpy()
        if groups is None:
            return perts.astype(object)
        control = adata.uns.get(UNS_KEY, {}).get("control_label", CONTROL_LABEL)
        uniq = pd.unique(perts)
        mapping = norman_pathway_groups(uniq, control_label=control) if isinstance(groups, str) else groups
        lookup = {p: mapping.get(p, "control" if p == control else "other") for p in uniq}
        return np.asarray([lookup[p] for p in perts], dtype=object)
    return obs[row].astype(str).to_numpy().astype(object)


def _row_palette(row: str, per_model: Mapping[str, np.ndarray], top_n: int) -> tuple[dict[str, str], list[str]]:
    """Colours of a row's categories (shared by all models) and their legend order.

    The ``top_n`` most frequent categories over all models keep their name; the others are
    renamed ``"other"`` in place (grey).
    """
    if row == "artifact":
        return dict(st.ARTIFACT_COLORS), list(st.ARTIFACT_COLORS)
    counts = Counter()
    for values in per_model.values():
        counts.update(values.tolist())
    ranked = sorted((c for c in counts if c != "other"), key=lambda c: (-counts[c], c))
    kept, folded = ranked[:top_n], ranked[top_n:]
    if folded:
        keep = set(kept)
        for values in per_model.values():
            values[~np.isin(values, list(keep))] = "other"
    palette = dict(zip(kept, st.category_colors(len(kept)), strict=True))
    order = list(kept)
    if folded or "other" in counts:
        palette["other"] = st.OTHER_COLOR
        order.append("other")
    return palette, order


def _scatter(ax: Axes, emb: np.ndarray, labels: np.ndarray, palette: Mapping[str, str], seed: int, size) -> None:
    """One scatter call per panel: grey ``other`` first, the rest in a seeded random order."""
    rng = np.random.default_rng(seed)
    other = labels == "other"
    order = np.concatenate([np.flatnonzero(other), rng.permutation(np.flatnonzero(~other))])
    xy = emb[order]
    colors = [palette[c] for c in labels[order]]
    s = size if size is not None else float(np.clip(20000.0 / max(len(order), 1), 2.0, 30.0))
    ax.scatter(xy[:, 0], xy[:, 1], c=colors, s=s, linewidths=0, rasterized=len(order) > 5000)


def _row_title(row: str, groups, group_key: str) -> str:
    if row == "artifact":
        return "artifact"
    if row == "group":
        return "pathway" if isinstance(groups, str) else ("group" if groups is not None else group_key)
    return row
