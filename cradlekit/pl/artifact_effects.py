"""What each artifact does to genes: one panel per artifact, genes grouped by QC gene set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..evaluate.artifact_effects import CRITERION_OF_ARTIFACT, gene_classes
from . import _style as st

__all__ = ["artifact_effects"]

#: Gene groups on the x axis, in order.
GENE_GROUPS = ("mt", "ribo", "hb", "other")
_GROUP_LABELS = {"mt": "MT-", "ribo": "RPS/RPL", "hb": "HB", "other": "other"}
#: Which simulated artifact type stands beside which criterion's panel.
_TRUTH_OF_CRITERION = {**{c: t for t, c in CRITERION_OF_ARTIFACT.items()}, "n_genes": "low_umi"}


def artifact_effects(
    effects: pd.DataFrame,
    *,
    truth: pd.DataFrame | None = None,
    gene_class: pd.Series | None = None,
    top: int = 3,
    axes: Axes | Sequence[Axes] | None = None,
    seed: int = 0,
) -> Figure:
    """One panel per artifact: each gene's change when it is switched on, by gene group.

    Parameters
    ----------
    effects
        Rows: artifacts (QC criteria, or ``"artifact"`` for the single ``u``); columns: genes; values:
        log2 changes, e.g. from :func:`cradlekit.evaluate.artifact_gene_effects`.
    truth
        Optional true effects of a simulated screen (rows: artifact types ``high_mito`` ...,
        :func:`cradlekit.evaluate.true_artifact_effects`), drawn beside the panel of the criterion
        each type fails (black rings).
    gene_class
        ``mt``/``ribo``/``hb``/``other`` per gene (default: from the gene symbols).
    top
        Genes named in each panel (largest absolute change).
    axes
        ``len(effects)`` axes to draw into (default: a new figure, one row).
    seed
        Seed of the horizontal jitter.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if effects.empty:
        raise ValueError("no artifact effects to plot")
    genes = effects.columns.astype(str)
    classes = (gene_classes(genes) if gene_class is None else gene_class.reindex(genes)).fillna("other")
    classes = classes.astype(str).to_numpy()
    n = len(effects)
    if axes is None:
        fig, grid = st.new_figure(1, n, (2.6 * n + 0.6, 3.2))
        panels = list(grid[0])
    else:
        panels = list(st.as_axes_grid(axes, 1, n, what="artifact_effects")[0])
        fig = panels[0].figure
    rng = np.random.default_rng(seed)
    for ax, (name, row) in zip(panels, effects.iterrows(), strict=True):
        values = row.to_numpy(dtype=np.float64)
        true_row = None
        if truth is not None and _TRUTH_OF_CRITERION.get(str(name)) in truth.index:
            true_row = truth.loc[_TRUTH_OF_CRITERION[str(name)]].reindex(genes).to_numpy(dtype=np.float64)
        _panel(ax, str(name), values, classes, true_row, rng)
        for g in np.argsort(-np.abs(np.nan_to_num(values)))[: int(top)]:
            x = GENE_GROUPS.index(classes[g]) if classes[g] in GENE_GROUPS else len(GENE_GROUPS) - 1
            ax.annotate(genes[g], (x, values[g]), fontsize="x-small", xytext=(4, 0), textcoords="offset points")
    panels[0].set_ylabel("log2 change, artifact on − off")
    handles = [Line2D([], [], marker="o", linestyle="", color=st.GENERATED_COLOR, label="model")]
    if truth is not None:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color="black", label="truth"))
    panels[-1].legend(handles=handles, fontsize="x-small", loc="best")
    return fig


def _panel(ax: Axes, name: str, values: np.ndarray, classes: np.ndarray, truth: np.ndarray | None,
           rng: np.random.Generator) -> None:
    """Strip plot of one artifact's gene effects (and the truth's beside them)."""
    for x, group in enumerate(GENE_GROUPS):
        sel = classes == group
        if not sel.any():
            continue
        jitter = rng.uniform(-0.15, 0.15, int(sel.sum()))
        ax.scatter(x + jitter - (0.12 if truth is not None else 0.0), values[sel], s=8, alpha=0.7,
                   color=st.GENERATED_COLOR, linewidths=0)
        if truth is not None:
            ax.scatter(x + jitter + 0.12, truth[sel], s=10, facecolors="none", edgecolors="black", linewidths=0.6)
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    ax.set_xticks(range(len(GENE_GROUPS)), [_GROUP_LABELS[g] for g in GENE_GROUPS], fontsize="small")
    ax.set_title(st.CRITERION_TITLES.get(name, name), fontsize="medium")
