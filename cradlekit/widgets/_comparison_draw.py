"""Figures of a :class:`~cradlekit.widgets.ComparisonExplorer`: the joint embedding and scanpy's gene plot.

The gene plot is scanpy's own :func:`scanpy.pl.dotplot` or :func:`scanpy.pl.matrixplot`, drawn into
axes of a pyplot-free figure (``ax=``, ``return_fig=True``), with one row per perturbation and origin
(observed above generated) and the top genes of each perturbation as labelled column groups.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D

from ..pl._style import DATA_COLOR, GENERATED_COLOR, category_colors
from ._comparison_data import ORIGINS

__all__ = ["draw_joint_embedding", "draw_gene_plot", "comparison_figure"]

_MARKERS = {"observed": "o", "generated": "^"}
_ORIGIN_COLORS = {"observed": DATA_COLOR, "generated": GENERATED_COLOR}


def _placeholder(ax, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize="small")


def draw_joint_embedding(ce: Any, fig: Figure | SubFigure) -> None:
    """Observed (circles) and generated (triangles) cells in one embedding, coloured by origin or perturbation."""
    ax = fig.add_axes((0.04, 0.1, 0.62, 0.8))  # the legend goes to the right of it
    ax.set_xticks([])
    ax.set_yticks([])
    method = {"umap": "UMAP", "tsne": "t-SNE"}[ce.method]
    if ce.cells is None or ce.embedding.empty:
        _placeholder(ax, f"computing: {ce.busy_title}…" if ce.busy else (ce.message or "nothing to compare yet"))
        return
    obs = ce.cells.obs.loc[ce.embedding.index]
    xy = ce.embedding[["x", "y"]].to_numpy()
    size = float(np.clip(8000.0 / max(len(xy), 1), 3.0, 25.0))
    perts = list(obs["perturbation"].cat.categories)
    colors = dict(zip(perts, category_colors(len(perts)), strict=True))
    handles = []
    for origin in ORIGINS:
        mask = (obs["origin"] == origin).to_numpy()
        if ce.color_by == "origin":
            c = _ORIGIN_COLORS[origin]
            handles.append(Line2D([], [], ls="", marker=_MARKERS[origin], color=c, label=f"{origin} ({mask.sum()})"))
        else:
            c = [colors[p] for p in obs["perturbation"].astype(str)[mask]]
            handles.append(Line2D([], [], ls="", marker=_MARKERS[origin], color="#555555", label=origin))
        ax.scatter(xy[mask, 0], xy[mask, 1], c=c, s=size, marker=_MARKERS[origin], linewidths=0, alpha=0.75,
                   rasterized=len(xy) > 5000, gid=origin)  # fmt: skip
    if ce.color_by == "perturbation":
        handles += [Line2D([], [], ls="", marker="s", color=colors[p], label=p) for p in perts]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
              borderaxespad=0.0)  # fmt: skip
    ax.set_title(f"{method} of observed and generated cells, one embedding", fontsize="medium")


def draw_gene_plot(ce: Any, fig: Figure | SubFigure) -> None:
    """Scanpy's dot plot (or matrix plot) of each perturbation's top genes, observed above generated."""
    import scanpy as sc

    # margins for scanpy's row labels (left), gene names (below) and perturbation brackets (above)
    ax = fig.add_subplot(fig.add_gridspec(1, 1, left=0.3, right=0.98, bottom=0.2, top=0.8)[0])
    if ce.cells is None or not ce.genes:
        _placeholder(ax, "the top genes appear here once cells are compared")
        return
    groups = [g for g in ce.cells.obs["group"].cat.categories if (ce.cells.obs["group"] == g).any()]
    cells = ce.cells[ce.cells.obs["group"].isin(groups)].copy()
    cells.obs["group"] = cells.obs["group"].cat.remove_unused_categories()
    fig.suptitle("top genes per perturbation, observed above generated: log2(1e4·x/Σx + 1)", fontsize="medium")
    kwargs = {"groupby": "group", "layer": "lognorm", "ax": ax, "show": False, "return_fig": True}
    if ce.plot == "dotplot":
        plot = sc.pl.dotplot(cells, ce.genes, **kwargs, colorbar_title="mean expression", size_title="% of cells")
    else:
        plot = sc.pl.matrixplot(cells, ce.genes, **kwargs, colorbar_title="mean expression")
    plot.make_figure()


def comparison_figure(ce: Any) -> Figure:
    """Both panels side by side (the static figure), sized for the number of genes and groups."""
    n_genes = sum(len(v) for v in ce.genes.values()) if ce.genes else 6
    n_rows = 2 * max(len(ce.genes), 1) if ce.genes else 6
    right = max(5.0, 0.32 * n_genes + 4.2)
    height = max(4.8, 0.3 * n_rows + 3.0)
    fig = Figure(figsize=(6.2 + right, height))
    left, gene_fig = fig.subfigures(1, 2, width_ratios=[6.2, right])
    draw_joint_embedding(ce, left)
    draw_gene_plot(ce, gene_fig)
    if ce.note:
        fig.text(0.01, 0.005, ce.note, fontsize="x-small", color="#555555", ha="left", va="bottom", wrap=True)
    return fig
