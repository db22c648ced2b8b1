"""Your own Perturb-seq AnnData: one call that makes it ready for QC, split, model and runner.

:func:`setup` is the entry for data that is not in the manifest (scvi-tools' ``setup_anndata``
style): it checks the counts, writes canonical labels to ``obs['perturbation']`` (keeping the
original column), and records in ``uns['cradlekit']`` the keys every later step reads as its
default: :func:`cradlekit.qc.label_artifacts` (precomputed metrics, batch key),
:func:`cradlekit.data.split_combinations`, :class:`cradlekit.PerturbationModel` and the
experiment runner (a config ``dataset: {path: ..., perturbation_key: ..., control_label: ...}``).

:func:`read_h5ad` reads a file fully into memory (a backed file is refused by the count checks
with a message saying how to load it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from anndata import AnnData

from .._h5ad import read_h5ad_checked
from .._keys import COMBO_SEP, CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .._logging import logger
from .._rows import check_counts_in_chunks
from .._validation import BACKED_HINT, check_obs_key, check_raw_counts
from ..errors import InvalidCountsError, MissingKeyError
from .perturbations import standardize_perturbations

__all__ = ["setup", "read_h5ad", "is_backed", "BACKED_HINT"]

def is_backed(adata: AnnData) -> bool:
    """Whether ``adata`` keeps its matrix on disk (``read_h5ad(..., backed='r')``)."""
    return bool(getattr(adata, "isbacked", False))


def read_h5ad(path: str | Path) -> AnnData:
    """Read an ``.h5ad`` file fully into memory.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the message gives the absolute path).
    cradlekit.errors.DamagedFileError
        If the file exists but does not read as an AnnData (damaged, truncated, another format):
        the message names the file and what to do.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such .h5ad file: {path.resolve()}")
    return read_h5ad_checked(path.resolve(), what="input")


def setup(
    adata: AnnData,
    *,
    perturbation_key: str,
    control_label: str,
    separator: str = COMBO_SEP,
    extra_control_labels: Sequence[str] = (),
    qc_metrics: Mapping[str, str] | None = None,
    counts_layer: str | None = None,
    batch_key: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Prepare your own Perturb-seq AnnData for cradlekit.

    Parameters
    ----------
    adata
        Cells × genes, in memory (see :func:`read_h5ad`), raw integer UMI counts in ``X`` or in
        ``layers[counts_layer]``.
    perturbation_key
        ``obs`` column with each cell's perturbation: a target (``KLF1``), a combination
        (``KLF1+SET``, in any order) or the control label.
    control_label
        The label of control cells in that column (e.g. ``"non-targeting"``); it must occur.
    separator
        Separator of combination members in your labels (``"+"``, ``"_"``, ``"|"`` ...).
    extra_control_labels
        Further labels meaning "control" (e.g. ``"ctrl"`` in ``"KLF1+ctrl"``).
    qc_metrics
        Per-cell QC metrics already in ``obs``, computed on the full transcriptome (needed when
        ``adata`` holds a gene panel): ``{scanpy metric: obs column}``, metrics among
        ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``,
        ``pct_counts_hb`` (percent), ``predicted_doublet``, ``doublet_score``.
    counts_layer
        Layer holding the raw counts when ``X`` does not. They are moved to ``X``; the previous
        ``X`` is kept in ``layers['X_before_setup']``.
    batch_key
        ``obs`` column of batches (lanes, donors): QC runs scrublet per batch and can compute
        per-batch thresholds (:func:`cradlekit.qc.label_artifacts`).
    copy
        Return a prepared copy instead of changing ``adata``.

    Returns
    -------
    AnnData or None
        The copy if ``copy=True``. Fields written:

        ``obs['perturbation']``
            Canonical labels: sorted targets joined by ``+``, whitespace stripped, duplicate and
            control members removed (with a warning), controls ``"control"``. When your column
            is itself called ``perturbation``, its labels are kept in
            ``obs['perturbation_original']``.
        ``uns['cradlekit']``
            ``perturbation_key``, ``control_label``, ``combo_sep`` (read by split, model,
            evaluation); ``source`` (your key, control label and separator);
            ``precomputed_qc`` (= ``qc_metrics``); ``batch_key``.

    Raises
    ------
    cradlekit.errors.InvalidCountsError
        Counts that are not raw integers; a backed AnnData (the message says how to load it).
    cradlekit.errors.MissingKeyError
        An absent column or layer; empty or missing labels (with the number of cells).
    cradlekit.errors.InvalidLabelError
        Labels with an empty member (``+``, ``A+``, ``+B``, ``A++B``), with the number of cells.
    cradlekit.errors.UnknownControlError
        The control label has no cell.

    Warns
    -----
    UserWarning
        Labels that look like a missing value (``nan``, ``None``) or differ from the control label
        only in case (``Control``): they are kept as targets (see
        :func:`~cradlekit.data.standardize_perturbations`).

    Examples
    --------
    >>> adata = ck.data.read_h5ad("screen.h5ad")  # doctest: +SKIP
    >>> ck.data.setup(adata, perturbation_key="guide", control_label="non-targeting",
    ...               qc_metrics={"total_counts": "total_counts_full"})  # doctest: +SKIP
    """
    if is_backed(adata) and (copy or counts_layer is not None):
        raise InvalidCountsError(f"copy=True and counts_layer need the matrix in memory: {BACKED_HINT}")
    if copy:
        adata = adata.copy()
    check_obs_key(adata, perturbation_key, what="perturbation_key")
    if batch_key is not None:
        check_obs_key(adata, batch_key, what="batch_key")
    if qc_metrics:
        from ..qc.metrics import validate_precomputed

        qc_metrics = validate_precomputed(adata, qc_metrics)
    if counts_layer is not None:
        if counts_layer not in adata.layers:
            raise MissingKeyError(
                f"counts_layer {counts_layer!r} not in adata.layers (available: {sorted(adata.layers.keys())})"
            )
        check_raw_counts(adata.layers[counts_layer], what=f"adata.layers[{counts_layer!r}]")
    else:
        check_counts_in_chunks(adata.X, what="adata.X")  # also a backed matrix, chunk by chunk
    standardize_perturbations(
        adata, perturbation_key=perturbation_key, control_label=control_label, sep=separator,
        extra_control_labels=extra_control_labels,
    )
    if counts_layer is not None:
        if adata.X is not None:
            adata.layers["X_before_setup"] = adata.X
        adata.X = adata.layers[counts_layer].copy()
    meta: dict[str, Any] = dict(adata.uns.get(UNS_KEY, {}))
    meta["source"] = {
        "perturbation_key": perturbation_key, "control_label": control_label, "separator": separator,
        "counts": "X" if counts_layer is None else f"layers[{counts_layer!r}]",
    }
    if qc_metrics:
        meta["precomputed_qc"] = dict(qc_metrics)
    if batch_key is not None:
        meta["batch_key"] = batch_key
    adata.uns[UNS_KEY] = meta
    labels = adata.obs[PERTURBATION_KEY].astype(str)
    n_combo = int(np.sum([CONTROL_LABEL != u and COMBO_SEP in u for u in labels.unique()]))
    logger.info(
        "setup: %d cells, %d perturbations (%d combinations) + %d control cells; QC metrics from obs: %s",
        adata.n_obs, labels.nunique() - 1, n_combo, int((labels == CONTROL_LABEL).sum()),
        dict(qc_metrics) if qc_metrics else "none (computed from the genes in adata)",
    )
    return adata if copy else None
