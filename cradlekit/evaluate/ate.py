"""Average treatment effects (ATE) of perturbations, from data and from generated cells (design page, "Metrics").

The ATE of perturbation ``t`` is, per gene, the mean normalised expression
(:func:`~cradlekit.evaluate.log_normalize.perturbseq_normalize`) of the cells with ``t`` minus that
of the control cells:

* :func:`data_ate`: observed cells; by default only QC-passed cells (``a_i = 0``) on both sides.
* :func:`model_ate`: generated cells (artifact off, library size ``1e4``, e.g. 2,500 per
  perturbation from ``model.generate``), or expected expressions from ``model.predict_mean``
  with ``normalized=True``.

Both return, like SAMS-VAE's ``estimate_data_average_treatment_effects``, an AnnData with one row
per perturbation (``obs_names``) and one column per gene (``var_names``), the ATEs in a dense
float64 ``X`` and the control label in ``uns['control']``. Means are computed in chunks of cells
with a sparse indicator matrix, so sparse counts are never densified as a whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import CONTROL_LABEL, PERTURBATION_KEY, SPLIT_KEY, UNS_KEY, artifact_key as _artifact_key
from .._logging import logger
from .._validation import check_control_label, check_labels, check_obs_key, check_raw_counts, get_counts
from ..data.perturbations import canonicalize_labels, cell_labels, perturbation_info
from ..errors import EmptyPerturbationError, InvalidCountsError, MissingKeyError
from .log_normalize import TARGET_SUM, ZeroTotal, perturbseq_normalize

__all__ = ["data_ate", "model_ate"]

OnEmpty = Literal["raise", "skip"]

#: Cells normalised at once: about this many matrix entries per chunk.
_CHUNK_ENTRIES = 2**25


def data_ate(
    adata: AnnData,
    *,
    artifact_key: str = _artifact_key(3),
    perturbation_key: str | None = None,
    control_label: str | None = None,
    perturbations: Sequence[str] | None = None,
    qc_passed_only: bool = True,
    split_key: str = SPLIT_KEY,
    split: str | Sequence[str] | None = None,
    layer: str | None = None,
    on_empty: OnEmpty = "raise",
    zero_total: ZeroTotal = "raise",
) -> AnnData:
    """Data ATE: mean normalised expression of QC-passed cells with ``t`` minus that of QC-passed controls.

    Parameters
    ----------
    adata
        Cells × genes AnnData of raw integer UMI counts, labelled by
        :func:`cradlekit.qc.label_artifacts` (when ``qc_passed_only``).
    artifact_key
        ``obs`` column with ``a_i`` (0 = QC passed): ``artifact_k3``/``k4``/``k5``.
    perturbation_key, control_label
        Default to those recorded in ``adata.uns['cradlekit']``.
    perturbations
        Perturbations to report, in this order; ``None``: every non-control perturbation with a
        cell (in ``split``), sorted. The control label, if listed, is dropped.
    qc_passed_only
        Use only QC-passed cells (the paper's data ATE). ``False`` uses every cell, like the
        authors' ``eval.py`` without ``--qc_pass``.
    split_key, split
        Restrict to cells whose ``obs[split_key]`` is ``split`` (or one of several splits);
        ``None`` uses every cell, as the authors do.
    layer
        Layer with the counts; ``None`` uses ``X``.
    on_empty
        A perturbation without (QC-passed) cells: ``"raise"`` (default) raises
        :class:`~cradlekit.errors.EmptyPerturbationError` naming all of them; ``"skip"`` leaves
        them out with a warning.
    zero_total
        Used cells with zero total counts: ``"raise"`` or ``"zero"`` (see
        :func:`~cradlekit.evaluate.perturbseq_normalize`).

    Returns
    -------
    AnnData
        ``X``: perturbations × genes ATEs (float64); ``obs_names``: perturbations; ``obs``:
        ``n_cells`` (cells averaged) and ``n_cells_failed`` (QC-failed cells left out);
        ``var``: a copy of ``adata.var``; ``uns``: ``control`` (label) and ``ate``
        (``source="data"``, ``normalization``, ``n_control_cells``, ``qc_passed_only``,
        ``artifact_key``, ``split``).

    Raises
    ------
    cradlekit.errors.EmptyPerturbationError
        A perturbation (``on_empty="raise"``) or the control without (QC-passed) cells.
    cradlekit.errors.MissingKeyError
        Missing perturbation, QC or split column, or layer.
    cradlekit.errors.InvalidCountsError
        Counts that are not raw integers; a used cell with zero total (``zero_total="raise"``).
    """
    key, control = perturbation_info(adata, perturbation_key=perturbation_key, control_label=control_label)
    labels = _labels(adata, key, control)
    in_split = np.ones(adata.n_obs, dtype=bool)
    if split is not None:
        splits = [split] if isinstance(split, str) else list(split)
        in_split = check_obs_key(adata, split_key, what="split key").astype(str).isin(splits).to_numpy()
    passed = np.ones(adata.n_obs, dtype=bool)
    if qc_passed_only:
        passed = _qc_passed(adata, artifact_key)
    where = "" if split is None else f" in split {split!r}"
    where += " passing QC" if qc_passed_only else ""
    names, codes = _groups(labels, in_split, in_split & passed, control, perturbations, on_empty, where)
    X = get_counts(adata, layer)
    means, n_cells = _group_means(
        X, codes, len(names) + 1, obs_names=adata.obs_names, normalized=False,
        zero_total=zero_total, raw_counts=True, what="adata.X" if layer is None else f"adata.layers[{layer!r}]",
    )  # fmt: skip
    n_failed = np.bincount(_codes(labels, [control, *names])[in_split & ~passed] + 1, minlength=len(names) + 2)[2:]
    ate = _ate_anndata(means, n_cells, names, control, adata.var.copy())
    ate.obs["n_cells_failed"] = n_failed.astype(np.int64)
    ate.uns["ate"].update(
        source="data", qc_passed_only=bool(qc_passed_only),
        artifact_key=artifact_key if qc_passed_only else "", split="" if split is None else split,
    )  # fmt: skip
    return ate


def model_ate(
    generated: AnnData,
    *,
    control_label: str | None = None,
    perturbation_key: str | None = None,
    perturbations: Sequence[str] | None = None,
    normalized: bool = False,
    layer: str | None = None,
    on_empty: OnEmpty = "raise",
    zero_total: ZeroTotal = "raise",
) -> AnnData:
    """Model ATE: mean normalised expression of generated cells with ``t`` minus that of generated controls.

    Generation is the generator's job (the paper: 2,500 cells per perturbation and 2,500 controls,
    artifact off, library size ``1e4``); this function only averages what it is given.

    Parameters
    ----------
    generated
        Generated cells × genes with ``obs[perturbation_key]``, control cells included: counts
        (``model.generate``), or expected expressions already scaled to a library of ``1e4``
        (``model.predict_mean``) with ``normalized=True``.
    control_label
        ``None``: ``uns['cradlekit']['control_label']`` when recorded, else ``"control"``.
    perturbation_key
        ``None``: ``uns['cradlekit']['perturbation_key']`` when recorded, else ``"perturbation"``.
    perturbations
        Perturbations to report, in this order; ``None``: every non-control label, sorted.
    normalized
        ``False``: values are counts, normalised with ``log2(1e4 · x / Σx + 1)``. ``True``: values
        are already library-normalised at ``1e4``; only ``log2(x + 1)`` is applied. Not guessed
        from the data; a warning is logged when ``uns['generation']`` contradicts it.
    layer
        Layer with the values; ``None`` uses ``X``.
    on_empty, zero_total
        As in :func:`data_ate`.

    Returns
    -------
    AnnData
        As :func:`data_ate` (without ``n_cells_failed``); ``uns['ate']['source'] = "model"``.

    Raises
    ------
    cradlekit.errors.EmptyPerturbationError
        A requested perturbation (``on_empty="raise"``) or the control has no generated cell.
    cradlekit.errors.UnknownControlError
        The control label does not occur.
    cradlekit.errors.InvalidCountsError
        Negative or non-finite values; a zero-total cell (``zero_total="raise"``).
    """
    meta = generated.uns.get(UNS_KEY, {})
    key = perturbation_key or meta.get("perturbation_key") or PERTURBATION_KEY
    control = control_label or meta.get("control_label") or CONTROL_LABEL
    check_obs_key(generated, key, what="perturbation key")
    check_control_label(generated, key, control)
    _check_generation(generated.uns.get("generation"), normalized)
    labels = _labels(generated, key, control)
    everything = np.ones(generated.n_obs, dtype=bool)
    names, codes = _groups(labels, everything, everything, control, perturbations, on_empty, " among generated cells")
    means, n_cells = _group_means(
        get_counts(generated, layer), codes, len(names) + 1, obs_names=generated.obs_names,
        normalized=normalized, zero_total=zero_total, raw_counts=False, what="generated values",
    )  # fmt: skip
    ate = _ate_anndata(means, n_cells, names, control, generated.var.copy())
    ate.uns["ate"]["source"] = "model"
    if normalized:
        ate.uns["ate"]["normalization"] = "log2(x + 1)"
    return ate


# --- helpers ------------------------------------------------------------------------------------
def _labels(adata: AnnData, key: str, control: str) -> np.ndarray:
    """Canonical labels (``B+A`` and ``A+B`` are one group; see :func:`canonicalize_labels`)."""
    check_labels(adata, key)
    return cell_labels(adata, key, control).to_numpy()


def _qc_passed(adata: AnnData, key: str) -> np.ndarray:
    if key not in adata.obs.columns:
        raise MissingKeyError(
            f"QC label adata.obs[{key!r}] not found: run cradlekit.qc.label_artifacts first, choose "
            f"another artifact_key (available: {[c for c in adata.obs.columns if c.startswith('artifact_k')]}), "
            "or pass qc_passed_only=False"
        )
    a = pd.to_numeric(adata.obs[key], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(a).any() or not np.isin(a, (0.0, 1.0)).all():
        raise InvalidCountsError(f"adata.obs[{key!r}] must hold 0/1 QC labels (a_i), without missing values")
    return a == 0


def _codes(labels: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Index of each cell's label in ``categories`` (-1 elsewhere)."""
    return pd.Categorical(labels, categories=list(categories)).codes.astype(np.int64)


def _groups(
    labels: np.ndarray,
    considered: np.ndarray,
    used: np.ndarray,
    control: str,
    perturbations: Sequence[str] | None,
    on_empty: OnEmpty,
    where: str,
) -> tuple[list[str], np.ndarray]:
    """Resolve the reported perturbations and each used cell's group (0 = control, -1 = unused)."""
    if on_empty not in ("raise", "skip"):
        raise ValueError(f"on_empty must be 'raise' or 'skip', got {on_empty!r}")
    if perturbations is None:
        names = sorted(set(pd.unique(labels[considered])) - {control})
    else:
        requested = [perturbations] if isinstance(perturbations, str) else perturbations
        requested = canonicalize_labels([str(p) for p in requested], control_label=control, what="perturbations")
        names = [p for p in dict.fromkeys(requested) if p != control]
    n_used = pd.Series(labels[used]).value_counts()
    if n_used.get(control, 0) == 0:
        raise EmptyPerturbationError(f"the control {control!r} has no cells{where}")
    empty = [p for p in names if n_used.get(p, 0) == 0]
    if empty:
        msg = f"{len(empty)} perturbation(s) have no cells{where}: {empty[:20]}"
        if on_empty == "raise":
            raise EmptyPerturbationError(msg + " (pass on_empty='skip' to leave them out)")
        msg += "; left out of the ATE"
        warnings.warn(msg, UserWarning, stacklevel=3)
        names = [p for p in names if p not in set(empty)]
    if not names:
        raise EmptyPerturbationError(f"no perturbation other than the control {control!r} has cells{where}")
    codes = _codes(labels, [control, *names])
    codes[~used] = -1
    return names, codes


def _group_means(
    X: Any,
    codes: np.ndarray,
    n_groups: int,
    *,
    obs_names: pd.Index,
    normalized: bool,
    zero_total: ZeroTotal,
    raw_counts: bool,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group means of the normalised rows, in chunks of cells (sparse stays sparse until the means)."""
    rows = np.flatnonzero(codes >= 0)
    if sp.issparse(X) and not isinstance(X, (sp.csr_matrix, sp.csr_array)):
        X = sp.csr_matrix(X)
    n_genes = X.shape[1]
    if not normalized and zero_total == "raise":
        totals = np.asarray(X[rows].sum(axis=1)).ravel() if len(rows) else np.zeros(0)
        empty = rows[totals <= 0]
        if len(empty):
            raise InvalidCountsError(
                f"{len(empty)} used cell(s) in {what} have zero total counts (e.g. "
                f"{list(obs_names[empty[:5]])}); normalising them is 0/0. Drop them or pass zero_total='zero'."
            )
    sums = np.zeros((n_groups, n_genes), dtype=np.float64)
    step = max(1, _CHUNK_ENTRIES // max(n_genes, 1))
    for start in range(0, len(rows), step):  # chunks of cells, not single cells
        chunk = rows[start : start + step]
        Xc = X[chunk]
        if raw_counts:  # dense chunks go in flat (1-D values), sparse ones as they are
            check_raw_counts(Xc if sp.issparse(Xc) else np.asarray(Xc).ravel(), what=what)
        Yc = perturbseq_normalize(Xc, normalized=normalized, zero_total="zero", target_sum=TARGET_SUM)
        indicator = sp.csr_matrix(
            (np.ones(len(chunk)), (codes[chunk], np.arange(len(chunk)))), shape=(n_groups, len(chunk))
        )
        block = indicator @ Yc
        sums += block.toarray() if sp.issparse(block) else np.asarray(block)
    n_cells = np.bincount(codes[rows], minlength=n_groups)
    return sums / n_cells[:, None], n_cells


def _ate_anndata(means: np.ndarray, n_cells: np.ndarray, names: list[str], control: str, var: pd.DataFrame) -> AnnData:
    """Rows 1.. minus row 0 (the control) as an AnnData."""
    obs = pd.DataFrame({"n_cells": n_cells[1:].astype(np.int64)}, index=pd.Index(names, dtype=str))
    ate = AnnData(X=means[1:] - means[0], obs=obs, var=var)
    ate.uns["control"] = control
    ate.uns["ate"] = {
        "normalization": f"log2({TARGET_SUM:g} * x / sum(x) + 1)",
        "n_control_cells": int(n_cells[0]),
    }
    return ate


def _check_generation(info: Any, normalized: bool) -> None:
    """Warn when the generator's record contradicts the chosen normalisation (never switch it)."""
    if not isinstance(info, dict):
        return
    values = str(info.get("values", ""))
    if normalized and values == "counts":
        warnings.warn("normalized=True but uns['generation'] says these are sampled counts: use normalized=False",
                      UserWarning, stacklevel=3)
    if not normalized and values == "expected expression":
        logger.info("normalized=False on expected expressions: rescaled to 1e4 per cell before log2(x + 1)")
    library = info.get("library_size")
    if normalized and library is not None and float(library) != TARGET_SUM:
        warnings.warn(f"normalized=True but the values were generated at library size {library}, not {TARGET_SUM:g}",
                      UserWarning, stacklevel=3)
    if bool(info.get("artifact", False)):
        warnings.warn("these cells were generated with the artifact switched on; the paper's ATE uses artifact-off "
                      "cells", UserWarning, stacklevel=3)
