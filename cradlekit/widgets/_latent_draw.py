"""Colours, gene values and the figure of a :class:`~cradlekit.widgets.LatentExplorer`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..data import is_combination
from ..pl import norman_pathway_groups
from ..pl._style import category_colors
from ._messages import set_message
from ._qc_tables import is_categorical
from ._views import OTHER_COLOR

__all__ = ["cell_labels", "colour_values", "gene_values", "match_genes", "resolve_gene", "draw_embedding",
           "SYMBOL_COLUMNS", "PRESETS"]

#: The colourings a LatentExplorer offers besides any ``obs`` column.
PRESETS = ("artifact", "perturbation", "group", "split", "gene", "selection")

_ARTIFACT_LABELS = {"data": ("clean (a_i = 0)", "artifact (a_i = 1)"), "generated": ("artifact off", "artifact on")}
#: ``var`` columns searched for gene symbols besides ``var_names``.
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "feature_name", "symbol")
LEGEND_ROWS = 24  # legend entries per column


_LOOKUP: dict[tuple, tuple[dict[str, str], dict[str, str]]] = {}


def _symbols(cells: AnnData) -> tuple[dict[str, str], dict[str, str]]:
    """``({name or symbol (upper case): var_name}, {upper case: as spelled})``, cached per ``var``."""
    names = cells.var_names
    key = (id(cells.var), cells.n_vars, str(names[0]) if len(names) else "", str(names[-1]) if len(names) else "",
           tuple(c for c in SYMBOL_COLUMNS if c in cells.var.columns))  # fmt: skip
    if key not in _LOOKUP:
        lookup = {str(v).upper(): str(v) for v in cells.var_names}
        spelled = {str(v).upper(): str(v) for v in cells.var_names}
        for col in SYMBOL_COLUMNS:
            if col in cells.var.columns:
                for sym, v in zip(cells.var[col].astype(str), cells.var_names, strict=True):
                    lookup.setdefault(sym.upper(), str(v))
                    spelled.setdefault(sym.upper(), sym)
        if len(_LOOKUP) > 16:
            _LOOKUP.clear()
        _LOOKUP[key] = (lookup, spelled)
    return _LOOKUP[key]


def match_genes(cells: AnnData, query: str, limit: int = 20) -> list[str]:
    """Gene names/symbols starting with ``query``, then containing it (any case), as the data spells them."""
    q = query.strip().upper()
    if not q:
        return []
    lookup, spelled = _symbols(cells)
    names = sorted(lookup)
    starts = [n for n in names if n.startswith(q)]
    contains = [n for n in names if q in n and not n.startswith(q)]
    return [spelled[n] for n in (starts + contains)[:limit]]


def resolve_gene(cells: AnnData, text: str) -> str | None:
    """The data's own spelling of a gene typed in any case (``"gata1"`` → ``"GATA1"``); ``None`` if unknown."""
    return _symbols(cells)[1].get(text.strip().upper())


def gene_values(cells: AnnData, gene: str) -> np.ndarray:
    """``log2(1e4 · x / Σx + 1)`` of one gene (name or symbol) in each cell (the paper's normalisation)."""
    var = _symbols(cells)[0].get(gene.strip().upper())
    if var is None:
        raise ValueError(f"gene {gene!r} not found in var_names or var[{'/'.join(SYMBOL_COLUMNS)}]")
    X = cells.X
    col = X[:, cells.var_names.get_loc(var)]
    col = np.asarray(col.toarray() if sp.issparse(col) else col, dtype=np.float64).ravel()
    total = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.log2(1e4 * col / np.where(total > 0, total, 1.0) + 1.0), 0.0)


def _perturbation_key(cells: AnnData) -> str:
    return cells.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")


def cell_labels(le: Any, cells: AnnData, obs: pd.DataFrame) -> np.ndarray:
    """The category of each embedded cell for ``le.color_by`` (not ``gene``)."""
    key = cells.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")
    control = str(cells.uns.get("cradlekit", {}).get("control_label", "control"))
    if le.color_by == "artifact":
        column = "generated_artifact" if le.source == "generated" else le.artifact_key
        if column not in obs.columns:
            raise ValueError(
                f"adata.obs[{column!r}] not found: run cradlekit.qc.label_artifacts(adata) to colour by artifact"
            )
        off, on = _ARTIFACT_LABELS[le.source]
        return np.where(obs[column].astype(float).to_numpy() > 0, on, off).astype(object)
    if le.color_by in ("split", "selection"):
        column = "split" if le.color_by == "split" else le.selection_key
        if column not in obs.columns and le.color_by == "selection":
            return np.full(len(obs), "unselected", dtype=object)
        if column not in obs.columns:
            how = "cradlekit.data.split_combinations(adata)" if le.color_by == "split" else "select_cells(...)"
            raise ValueError(f"obs[{column!r}] not found in the {le.source} cells: run {how} first")
        return obs[column].astype(str).to_numpy().astype(object)
    perts = obs[key].astype(str).to_numpy()
    if le.color_by == "perturbation":
        return perts.astype(object)
    uniq = pd.unique(perts)
    if le.groups is None:
        combo = dict(zip(uniq, is_combination(list(uniq), control_label=control), strict=True))
        mapping = {p: "control" if p == control else ("combination" if combo[p] else "single") for p in uniq}
    elif isinstance(le.groups, str):
        if le.groups != "norman":
            raise ValueError(f"groups must be a mapping, 'norman' or None, got {le.groups!r}")
        mapping = norman_pathway_groups(uniq, control_label=control)
    else:
        mapping = {p: le.groups.get(p, "control" if p == control else "other") for p in uniq}
    return np.asarray([mapping[p] for p in perts], dtype=object)


def colour_values(le: Any, cells: AnnData, emb: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """The colour of each shown cell: categories (strings) or values (floats, ``continuous``)."""
    obs = cells.obs.loc[emb.index]
    le._fallback = ""
    if le.color_by == "gene":
        if not le.gene:
            set_message(le, "Type a gene to colour the cells by its expression.", "info")
            return np.full(len(emb), np.nan), True
        return gene_values(cells[emb.index], le.gene), True
    if le.color_by in PRESETS:
        return cell_labels(le, cells, obs), False
    if le.color_by not in obs.columns:
        other = le.generated if le.source == "data" else le.adata
        if other is None or le.color_by not in other.obs.columns:
            raise ValueError(f"obs[{le.color_by!r}] not found in the {le.source} cells: choose one of "
                             f"{le.color_options[:12]}")  # fmt: skip
        # a column of the other cells only (e.g. a QC metric of the data, after switching to generated
        # cells): show the perturbations, keep the choice for when the other cells come back
        le._fallback = "perturbation"
        set_message(le, f"The {le.source} cells have no obs[{le.color_by!r}]: coloured by perturbation.", "info")
        return obs[_perturbation_key(cells)].astype(str).to_numpy().astype(object), False
    column = obs[le.color_by]
    if is_categorical(column):
        return column.astype(str).to_numpy().astype(object), False
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64), True


def palette_of(categories: list[str]) -> dict[str, str]:
    """Colours of the categories in their order (distinguishable for 30+; see ``category_colors``)."""
    return dict(zip(categories, category_colors(len(categories)), strict=True))


def draw_embedding(le: Any, fig: Figure | None = None) -> Figure:
    """Square scatter axes, the legend (in as many columns as needed) or a colour bar in its own axes."""
    chosen = [c for c in le.categories if c in set(le.selected)]
    n_entries = len(chosen) + 1
    n_cols = max(1, math.ceil(n_entries / LEGEND_ROWS))
    longest = max([len(c) for c in chosen] + [20])
    continuous = bool(getattr(le, "continuous", le.color_by == "gene"))
    legend_w = 0.9 if continuous else n_cols * (0.35 + 0.065 * min(longest, 40))
    width, height = 4.8 + legend_w, 4.8
    if fig is None:
        fig = Figure(figsize=(width, height))
    else:
        fig.clear()
        fig.set_size_inches(width, height)
    ax = fig.add_axes((0.2 / width, 0.3 / height, 4.3 / width, 4.1 / height))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(le.title, fontsize="medium")
    if le.embedding.empty:
        text = f"computing the {le.busy_title}…" if le.busy else (le.message or "nothing to show")
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize="small")
        return fig
    xy = le.embedding[["x", "y"]].to_numpy()
    size = float(np.clip(20000.0 / max(len(xy), 1), 1.0, 30.0))
    rng = np.random.default_rng(le.seed)
    if continuous:
        values = np.asarray(le._labels, dtype=np.float64)
        order = np.argsort(np.nan_to_num(values, nan=-np.inf), kind="stable")  # high values on top, NaN below
        cmap = colormaps["viridis"].with_extremes(bad=OTHER_COLOR)  # cells without a value: grey
        pts = ax.scatter(xy[order, 0], xy[order, 1], c=values[order], cmap=cmap, s=size, linewidths=0,
                         plotnonfinite=True, rasterized=len(order) > 5000)  # fmt: skip
        cax = fig.add_axes(((4.6) / width, 0.6 / height, 0.15 / width, 3.4 / height))
        label = f"{le.gene} log2(1e4·x/Σx + 1)" if le.color_by == "gene" else str(le.color_by)
        fig.colorbar(pts, cax=cax, label=label)
        return fig
    palette = palette_of(chosen)
    grey = ~np.isin(le._labels, chosen)
    order = np.concatenate([np.flatnonzero(grey), rng.permutation(np.flatnonzero(~grey))])
    colors = [palette.get(c, OTHER_COLOR) for c in le._labels[order]]
    ax.scatter(xy[order, 0], xy[order, 1], c=colors, s=size, linewidths=0, rasterized=len(order) > 5000)
    handles = [Line2D([], [], ls="", marker="o", color=palette[c], label=c) for c in chosen]
    if grey.any():
        handles.append(Line2D([], [], ls="", marker="o", color=OTHER_COLOR, label="other / not selected"))
    lax = fig.add_axes((4.6 / width, 0.05, (legend_w - 0.05) / width, 0.9))
    lax.axis("off")
    lax.legend(handles=handles, loc="upper left", ncols=n_cols, fontsize="small", frameon=False,
               borderaxespad=0.0, handletextpad=0.2, columnspacing=0.6)  # fmt: skip
    return fig
