"""The slow part of a :class:`~cradlekit.widgets.LatentExplorer`: generating cells and embedding them.

Functions take the explorer and run in its background thread (they read settings, never set traits).
An embedding of more than ``max_cells`` cells optimises a seeded subsample and, with
``place_rest``, places every other cell at its nearest embedded neighbours
(:func:`cradlekit.pl.embed.place_cells`), so that every cell has coordinates and a lasso names
every cell in its region.
"""

from __future__ import annotations

from typing import Any

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData

from ..data import parse_perturbation
from ..pl.embed import EMBEDDINGS_UNS_KEY, embed_cells, place_cells
from ._messages import NO_MODEL, NOT_TRAINED

__all__ = ["generate_cells", "embed", "store", "stored", "library_size_of", "data_library_size", "coverage_text"]

METHOD_TITLES = {"tsne": "t-SNE", "umap": "UMAP"}


def data_library_size(adata: AnnData) -> float:
    """Median total counts of the observed cells (their ``X``)."""
    return float(np.median(np.asarray(adata.X.sum(axis=1)).ravel()))


def library_size_of(le: Any) -> float:
    """Library size of the generated cells: the data's median (``library_size="data"``) or 1e4."""
    if le.library_size == "data" and le.adata is not None:
        return data_library_size(le.adata)
    return 1e4


def generate_cells(le: Any) -> AnnData:
    """``n_per_perturbation`` cells of each perturbation, artifact off and on (``obs['generated_artifact']``)."""
    model = le.model
    if model is None:
        raise ValueError(NO_MODEL)
    if getattr(le._source_model, "running", False):
        raise ValueError("Training is running: wait for it or stop it before generating cells.")
    if not model.is_trained:
        raise ValueError(NOT_TRAINED)
    reg = model.registry
    control = str(reg["control_label"])
    labels = le.perturbations
    if labels is None:
        labels = [str(p) for p in reg["trained_perturbations"]]
        if le.adata is not None:
            key = le.adata.uns.get("cradlekit", {}).get("perturbation_key", "perturbation")
            known = set(map(str, reg["targets"]))
            for p in pd.unique(le.adata.obs[key].astype(str)):
                if set(parse_perturbation(p, control_label=control)) <= known:
                    labels.append(p)
        labels = list(dict.fromkeys(labels))
    library = library_size_of(le)
    parts = [model.generate(labels, n=le.n_per_perturbation, artifact=on, seed=le.seed, library_size=library)
             for on in (False, True)]  # fmt: skip
    return anndata.concat(parts, keys=["off", "on"], index_unique="_", merge="first", uns_merge="first")


def _settings(le: Any) -> dict:
    return {"method": le.method, "max_cells": int(le.max_cells), "seed": int(le.seed),
            "place_rest": bool(le.place_rest)}  # fmt: skip


def stored(le: Any, cells: AnnData) -> pd.DataFrame | None:
    """The stored embedding of the current settings (``obsm[le.obsm_key]``), if any."""
    key = le.obsm_key
    info = cells.uns.get(EMBEDDINGS_UNS_KEY, {}).get(key)
    if key not in cells.obsm or info is None:
        return None
    if any(type(v)(info.get(k, -1)) != v for k, v in _settings(le).items() if k != "method"):
        return None
    xy = np.asarray(cells.obsm[key], dtype=np.float64)[:, :2]
    keep = np.isfinite(xy).all(axis=1)
    return pd.DataFrame(xy[keep], index=cells.obs_names[keep].copy(), columns=["x", "y"])


def embed(le: Any, cells: AnnData, check) -> tuple[pd.DataFrame, dict]:
    """Embed at most ``max_cells`` cells (a seeded subsample), then place the others (``place_rest``).

    Returns the coordinates of every shown cell and ``{"n_embedded", "n_placed"}``.
    """
    rows = np.arange(cells.n_obs)
    if cells.n_obs > le.max_cells:
        rows = np.sort(np.random.default_rng(le.seed).choice(cells.n_obs, size=le.max_cells, replace=False))
    sub = AnnData(X=cells.X[rows], obs=pd.DataFrame(index=cells.obs_names[rows].copy()), var=cells.var[[]])
    emb = embed_cells(sub, method=le.method, seed=le.seed, check=check)
    check()
    if le.place_rest and rows.size < cells.n_obs:
        xy = place_cells(cells, rows, emb[["x", "y"]].to_numpy(), seed=le.seed, check=check)
        frame = pd.DataFrame(xy, index=cells.obs_names.copy(), columns=["x", "y"])
        return frame, {"n_embedded": int(rows.size), "n_placed": int(cells.n_obs - rows.size)}
    return emb, {"n_embedded": int(rows.size), "n_placed": 0}


def store(le: Any, cells: AnnData, emb: pd.DataFrame, info: dict) -> None:
    """Write the coordinates to ``cells.obsm[le.obsm_key]`` (NaN for cells not shown) and the settings to ``uns``."""
    full = np.full((cells.n_obs, 2), np.nan, dtype=np.float32)
    full[cells.obs_names.get_indexer(emb.index)] = emb[["x", "y"]].to_numpy()
    cells.obsm[le.obsm_key] = full
    cells.uns.setdefault(EMBEDDINGS_UNS_KEY, {})[le.obsm_key] = {**_settings(le), **info}


def coverage_text(le: Any) -> str:
    """Which cells the plot shows: how many were embedded, placed, or left out; the library size."""
    cells = le.adata if le.source == "data" else le.generated
    if cells is None or le.embedding.empty:
        return ""
    info = cells.uns.get(EMBEDDINGS_UNS_KEY, {}).get(le.obsm_key, {})
    n_emb, n_placed = int(info.get("n_embedded", len(le.embedding))), int(info.get("n_placed", 0))
    method = METHOD_TITLES[le.method]
    if n_emb >= cells.n_obs:
        text = f"All {cells.n_obs:,} {le.source} cells embedded by {method}."
    elif n_placed:
        text = (f"{method} of a seeded subsample of {n_emb:,} of the {cells.n_obs:,} {le.source} cells "
                f"(max_cells); the other {n_placed:,} are placed at their 10 nearest embedded cells (PCA space), "
                "so every cell is drawn and a lasso names every cell in its region.")  # fmt: skip
    else:
        text = (f"{method} of a seeded subsample of {n_emb:,} of the {cells.n_obs:,} {le.source} cells "
                f"(max_cells, place_rest=False): a lasso names only these {n_emb:,}.")  # fmt: skip
    if le.source == "generated":
        text += f" Generated at library size {library_size_of(le):,.0f}" + (
            " (the data's median)." if le.library_size == "data" and le.adata is not None else " (1e4).")
    return text
