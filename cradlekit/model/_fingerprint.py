"""The data a model trains on, summarised for checkpoints: which cells, which split, which labels,
which counts. A resumed run with a different fingerprint is refused (:mod:`cradlekit.train.checkpoint`).

The counts enter twice: as per-cell and per-gene totals (``counts``) and as a digest of the train/val
counts themselves (``content``): every stored value with its row and column, in a canonical CSR form
(sorted columns, no explicit zeros, values as float64), so the storage (dense or sparse, int or float,
in memory or backed) does not matter but any change of a count does, including one that keeps every
total (a 2x2 swap). The digest costs about 25 ms per million stored counts on one core, several times
the totals (``benchmarks/results/fault_injection.md``), once per AnnData and only with a checkpoint_dir.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._validation import get_counts
from ..train.fingerprint import CountsDigest, counts_digest, digest

__all__ = ["adata_fingerprint"]

_FIT = ("train", "val")


def _sums(X, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-cell totals of ``X[rows]`` and per-gene totals over ``rows`` (float64), and the digest of the
    rows' counts (``rows`` sorted), without copying ``X`` whole.

    In memory: one sparse product for the totals; the digest, and every pass over a matrix on disk (a
    backed AnnData), go in row chunks.
    """
    from .._rows import row_chunks

    content = CountsDigest(X.shape[1])
    if isinstance(X, np.ndarray) or sp.issparse(X):
        weights = np.zeros(X.shape[0], dtype=np.float64)
        weights[rows] = 1.0
        per_cell = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()[rows]
        per_gene = np.asarray(X.T @ weights, dtype=np.float64).ravel()
        return per_cell, per_gene, counts_digest(X, rows)
    per_cell, per_gene = [], np.zeros(X.shape[1], dtype=np.float64)
    for _, block in row_chunks(X, np.sort(rows)):
        per_cell.append(np.asarray(block.sum(axis=1), dtype=np.float64).ravel())
        per_gene += np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
        content.update(block)
    order = np.argsort(np.argsort(rows))  # back to the order of ``rows``
    per_cell = np.concatenate(per_cell)[order] if per_cell else np.zeros(0)
    return per_cell, per_gene, content.hexdigest()


def adata_fingerprint(adata: AnnData, registry: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of train/val cells, the trained targets and digests of the cells, split and counts.

    Returns
    -------
    dict
        ``n_train``, ``n_val``, ``targets`` (the perturbation set), ``cells`` (names, split and
        perturbation label of every train/val cell, in order), ``labels`` (artifact labels and
        counterfactual mask when the model reads them), ``counts`` (per-cell and per-gene totals
        of the train/val counts) and ``content`` (a digest of the train/val counts themselves).
    """
    split = adata.obs[registry["split_key"]].astype(str).to_numpy()
    fit = np.isin(split, _FIT)
    rows = np.flatnonzero(fit)
    names = adata.obs_names.to_numpy()[rows].astype(str)
    labels = adata.obs[registry["perturbation_key"]].astype(str).to_numpy()[rows]
    extra = []
    if registry.get("uses_artifact") and registry.get("artifact_key") in adata.obs.columns:
        extra.append(adata.obs[registry["artifact_key"]].astype(str).to_numpy()[rows])
    *counts, content = _sums(get_counts(adata, registry.get("layer")), rows)
    if registry.get("cf_layer"):
        from ..data.counterfactual import reference_table
        from ..errors import MissingKeyError

        try:  # the references as one table row per distinct reference, or a per-cell layer
            table, row = reference_table(adata, registry["cf_layer"])
        except MissingKeyError:
            pass
        else:
            per_row = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()
            fit_rows = row[rows]
            counts.extend([np.where(fit_rows >= 0, per_row[np.maximum(fit_rows, 0)], -1.0),
                           np.asarray(table.sum(axis=0), dtype=np.float64).ravel()])
    return {
        "n_train": int((split == "train").sum()),
        "n_val": int((split == "val").sum()),
        "targets": list(registry["targets"]),
        "cells": digest(names, split[rows], labels),
        "labels": digest(extra),
        "counts": digest(counts),
        "content": content,
    }
