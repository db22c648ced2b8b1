"""The model's training data as :class:`~cradlekit.train.CellBatches`: sparse on the host, dense per batch.

Nothing of size cells x genes is built: the counts stay as they are in ``adata`` (a CSR matrix, an
array, or the on-disk matrix of a backed h5ad), the dosages are one row per perturbation label
plus a code per cell, the counterfactual references one row per distinct reference plus a row
index per cell. Each minibatch is gathered and densified on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from ..errors import EmptyPerturbationError
from ..module import condition_onehot
from ..train import CellBatches
from ._criteria import criteria_columns, to_tensor
from ._setup import _FIT_SPLITS, _artifact, _cf, _condition_table, _counts, _labels, _split, check_genes, label_dosage

__all__ = ["build_batches"]


def build_batches(
    adata: AnnData,
    registry: Mapping[str, Any],
    *,
    device: torch.device | str = "cpu",
    check_counts: bool = True,
    chunk_cells: int = 8192,
    buffer_chunks: int | None = None,
) -> dict[str, CellBatches | None]:
    """Train and validation batch sources of ``adata`` for a model with ``registry``.

    Parameters
    ----------
    adata
        The AnnData the model was set up with (in memory or backed).
    registry
        The model's registry (see :func:`~cradlekit.model._setup.register_anndata`).
    device
        Training device (batches are densified into pinned memory for CUDA).
    check_counts
        Check the counts (in chunks) again; off when they were just checked at registration.
    chunk_cells, buffer_chunks
        Shuffling of a backed file (see :class:`~cradlekit.train.CellBatches`).

    Returns
    -------
    ``{"train": CellBatches, "val": CellBatches or None}``; a batch holds ``X``, ``D`` and, for
    CRADLE-VAE, ``A`` (and ``X_cf``, ``cf_mask`` when J2 is on), like :func:`build_tensors`; with
    per-criterion artifact latents also ``A_criteria`` (and ``A_cf``), see :mod:`._criteria`.
    """
    check_genes(adata, registry)
    key, control = registry["perturbation_key"], registry["control_label"]
    X = _counts(adata, registry["layer"], check=check_counts)
    split = _split(adata, registry["split_key"])
    labels = _labels(adata, key)
    fit = split.isin(_FIT_SPLITS).to_numpy()
    unknown = sorted(set(labels[fit].unique()) - set(registry["fit_perturbations"]))
    if unknown:
        raise EmptyPerturbationError(f"train/val perturbations unknown to this model: {unknown[:20]}")
    codes, uniques = pd.factorize(labels)
    D_table = torch.from_numpy(label_dosage(uniques, control, registry["targets"]))
    used = np.zeros(len(uniques), dtype=bool)
    used[np.unique(codes[fit])] = True
    D_table[torch.from_numpy(~used)] = (
        0.0  # labels of test cells only: never gathered (sVAE+ has no condition for them)
    )
    if registry["conditions"] is not None:
        D_table = condition_onehot(D_table, _condition_table(registry))
    a = _artifact(adata, registry["artifact_key"]) if registry["uses_artifact"] else None
    cf = (
        _cf(adata, registry["cf_layer"], registry["artifact_key"], registry["split_key"])
        if registry["cf_layer"]
        else None
    )
    crit = criteria_columns(adata, registry, None if cf is None else cf[2] & (a == 0))
    out: dict[str, CellBatches | None] = {}
    for name in _FIT_SPLITS:
        rows = np.flatnonzero((split == name).to_numpy())
        if rows.size == 0:
            out[name] = None
            continue
        tables: dict[str, tuple[Any, np.ndarray]] = {"D": (D_table, codes[rows])}
        columns: dict[str, torch.Tensor] = {}
        if a is not None:
            columns["A"] = torch.from_numpy(a[rows].astype(np.float32))
        if cf is not None:
            table, ref_row, mask = cf
            tables["X_cf"] = (table, ref_row[rows])
            columns["cf_mask"] = torch.from_numpy(mask[rows] & (a[rows] == 0))
        if crit is not None:
            columns["A_criteria"] = to_tensor(crit[0], rows)
            if crit[1] is not None:
                columns["A_cf"] = to_tensor(crit[1], rows)
        out[name] = CellBatches(
            X,
            rows,
            tables=tables,
            columns=columns,
            device=device,
            chunk_cells=chunk_cells,
            buffer_chunks=buffer_chunks,
        )
    return out
