"""The data a model trains on, summarised for checkpoints: which cells, which split, which labels,
which counts. A resumed run with a different fingerprint is refused (:mod:`cradlekit.train.checkpoint`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from .._validation import get_counts
from ..train.fingerprint import digest

__all__ = ["data_fingerprint"]

_FIT = ("train", "val")


def _sums(X, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell totals of ``X[rows]`` and per-gene totals over ``rows`` (float64), without copying ``X``."""
    weights = np.zeros(X.shape[0], dtype=np.float64)
    weights[rows] = 1.0
    per_cell = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()[rows]
    per_gene = np.asarray(X.T @ weights, dtype=np.float64).ravel()
    return per_cell, per_gene


def data_fingerprint(adata: AnnData, registry: Mapping[str, Any]) -> dict[str, Any]:
    """Counts of train/val cells, the trained targets and digests of the cells, split and counts.

    Returns
    -------
    dict
        ``n_train``, ``n_val``, ``targets`` (the perturbation set), ``cells`` (names, split and
        perturbation label of every train/val cell, in order), ``labels`` (artifact labels and
        counterfactual mask when the model reads them) and ``counts`` (per-cell and per-gene totals
        of the train/val counts).
    """
    split = adata.obs[registry["split_key"]].astype(str).to_numpy()
    fit = np.isin(split, _FIT)
    rows = np.flatnonzero(fit)
    names = adata.obs_names.to_numpy()[rows].astype(str)
    labels = adata.obs[registry["perturbation_key"]].astype(str).to_numpy()[rows]
    extra = []
    if registry.get("uses_artifact") and registry.get("artifact_key") in adata.obs.columns:
        extra.append(adata.obs[registry["artifact_key"]].astype(str).to_numpy()[rows])
    counts = [*_sums(get_counts(adata, registry.get("layer")), rows)]
    if registry.get("cf_layer") and registry["cf_layer"] in adata.layers:
        counts.extend(_sums(adata.layers[registry["cf_layer"]], rows))
    return {
        "n_train": int((split == "train").sum()),
        "n_val": int((split == "val").sum()),
        "targets": list(registry["targets"]),
        "cells": digest(names, split[rows], labels),
        "labels": digest(extra),
        "counts": digest(counts),
    }
