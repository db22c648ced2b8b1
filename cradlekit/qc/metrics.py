"""Per-cell QC metrics with scanpy's names, computed without densifying sparse counts.

The values equal ``sc.pp.calculate_qc_metrics(adata, qc_vars=["mt", "ribo", "hb"],
percent_top=None)`` (computed in float64), with the gene sets of :mod:`cradlekit.qc.genes`.
Unlike scanpy, the input matrix is never modified (scanpy calls ``eliminate_zeros`` in place).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._rows import CHUNK_ELEMENTS, check_counts_in_chunks, csr_view, is_in_memory, row_chunks
from .._validation import check_obs_key, get_counts
from ..errors import InvalidCountsError
from .genes import GENE_SET_OF_CRITERION, gene_set_masks

__all__ = ["PRECOMPUTABLE", "PCT_METRIC", "QCMetrics", "compute_metrics", "counts_description"]

#: Metric names that may be taken from ``obs`` through ``precomputed={metric: column}``.
PRECOMPUTABLE = (
    "total_counts",
    "n_genes_by_counts",
    "pct_counts_mt",
    "pct_counts_ribo",
    "pct_counts_hb",
    "predicted_doublet",
    "doublet_score",
)
#: Percentage metric of each gene-set criterion.
PCT_METRIC = {"mito": "pct_counts_mt", "ribo": "pct_counts_ribo", "hb": "pct_counts_hb"}
_SET_LABEL = {"mito": "MT- genes", "ribo": "RPS/RPL ribosomal genes", "hb": "hemoglobin genes"}


@dataclass
class QCMetrics:
    """Result of :func:`compute_metrics`.

    Attributes
    ----------
    table
        ``obs``-indexed frame with ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``,
        ``pct_counts_ribo``, ``pct_counts_hb`` (float64; a skipped percentage is NaN).
    gene_set_sizes
        Number of genes matched per gene-set criterion (``mito``, ``ribo``, ``hb``).
    skipped
        Gene-set criteria skipped because no gene matched and no precomputed column was given.
    metric_source
        For each metric, a human-readable description of where it came from.
    precomputed_doublets
        ``predicted_doublet`` (and ``doublet_score`` when given) taken from ``obs``, else ``None``.
    """

    table: pd.DataFrame
    gene_set_sizes: dict[str, int]
    skipped: list[str]
    metric_source: dict[str, str]
    precomputed_doublets: pd.DataFrame | None = field(default=None)


def counts_description(layer: str | None) -> str:
    """Human-readable name of the count matrix (``"adata.X"`` or ``"adata.layers['counts']"``)."""
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def _by_chunks(fn, X, *args) -> np.ndarray:
    """``fn`` applied to bounded row chunks, concatenated: for an on-disk matrix (a backed h5ad) and
    for a large CSR matrix, whose float64 / int64 temporaries would otherwise be the size of its values."""
    return np.concatenate([fn(block, *args) for _, block in row_chunks(X)] or [np.zeros(0)])


def _chunked(X) -> bool:
    if not is_in_memory(X):
        return True
    return sp.issparse(X) and X.format == "csr" and X.nnz > 2 * CHUNK_ELEMENTS


def _row_sums(X, cols: np.ndarray | None = None) -> np.ndarray:
    """Float64 row sums of ``X`` (optionally over the boolean column mask ``cols``)."""
    if _chunked(X):
        return _by_chunks(_row_sums, X, cols)
    if sp.issparse(X):
        if cols is None:
            return np.asarray(X.sum(axis=1, dtype=np.float64)).ravel()
        return np.asarray(X @ cols.astype(np.float64)).ravel()
    X = np.asarray(X)
    if cols is not None:
        X = X[:, cols]
    return X.sum(axis=1, dtype=np.float64)


def _row_nnz_positive(X) -> np.ndarray:
    """Number of entries > 0 per row (explicitly stored zeros are not counted)."""
    if _chunked(X):
        return _by_chunks(_row_nnz_positive, X)
    if sp.issparse(X):
        if X.format != "csr":
            X = X.tocsr()
        positive = np.concatenate(([0], np.cumsum(X.data > 0, dtype=np.int64)))
        return (positive[X.indptr[1:]] - positive[X.indptr[:-1]]).astype(np.float64)
    return np.count_nonzero(np.asarray(X) > 0, axis=1).astype(np.float64)


def validate_precomputed(adata: AnnData, precomputed: Mapping[str, str] | None) -> dict[str, str]:
    """Check a ``{metric: obs column}`` mapping: known metric names (:data:`PRECOMPUTABLE`), existing columns."""
    if precomputed is None:
        return {}
    if not isinstance(precomputed, Mapping):
        raise TypeError(
            "precomputed must be a mapping {metric: obs column}, "
            f"got {type(precomputed).__name__}"
        )
    unknown = [m for m in precomputed if m not in PRECOMPUTABLE]
    if unknown:
        raise ValueError(
            f"unknown precomputed metric(s) {unknown}; allowed keys are {list(PRECOMPUTABLE)} "
            "(e.g. precomputed={'total_counts': 'ncounts', 'n_genes_by_counts': 'ngenes'})"
        )
    out = {}
    for metric, column in precomputed.items():
        check_obs_key(adata, column, what=f"precomputed column for {metric!r}")
        out[metric] = column
    return out


def _numeric_obs(adata: AnnData, metric: str, column: str) -> np.ndarray:
    series = adata.obs[column]
    where = f"precomputed {metric!r} (adata.obs[{column!r}])"
    if not (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)):
        raise InvalidCountsError(f"{where} has dtype {series.dtype}; expected numbers")
    values = series.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        n_bad = int((~np.isfinite(values)).sum())
        raise InvalidCountsError(f"{where} contains {n_bad} NaN/inf values")
    if (values < 0).any():
        raise InvalidCountsError(f"{where} contains negative values (min {values.min()})")
    if metric.startswith("pct_"):
        if (values > 100).any():
            raise InvalidCountsError(f"{where} has values above 100; expected a percentage (0-100)")
        if values.max() <= 1.0 and values.max() > 0:
            msg = (
                f"{where} is at most 1: it looks like a fraction, but percentages (0-100) are "
                "expected; multiply it by 100 if so"
            )
            warnings.warn(msg, UserWarning, stacklevel=4)
    return values


def _doublet_obs(adata: AnnData, precomputed: dict[str, str]) -> pd.DataFrame | None:
    if "predicted_doublet" not in precomputed:
        if "doublet_score" in precomputed:
            raise ValueError(
                "precomputed 'doublet_score' needs 'predicted_doublet' too (the QC criterion "
                "is the doublet call)"
            )
        return None
    column = precomputed["predicted_doublet"]
    series = adata.obs[column]
    where = f"precomputed 'predicted_doublet' (adata.obs[{column!r}])"
    if series.isna().any():
        raise InvalidCountsError(f"{where} contains {int(series.isna().sum())} missing values")
    if pd.api.types.is_bool_dtype(series):
        calls = series.to_numpy(dtype=bool)
    elif pd.api.types.is_numeric_dtype(series) and set(np.unique(series.to_numpy())) <= {0, 1}:
        calls = series.to_numpy() == 1
    else:
        raise InvalidCountsError(f"{where} must be boolean (or 0/1), got dtype {series.dtype}")
    out = pd.DataFrame({"predicted_doublet": calls}, index=adata.obs_names)
    if "doublet_score" in precomputed:
        out["doublet_score"] = _numeric_obs(adata, "doublet_score", precomputed["doublet_score"])
    return out


def compute_metrics(
    adata: AnnData,
    *,
    layer: str | None = None,
    gene_symbols: str | None = None,
    precomputed: Mapping[str, str] | None = None,
    validate: bool = True,
    warn_missing: bool = True,
) -> QCMetrics:
    """Compute the per-cell QC metrics (scanpy's names, percentages 0-100).

    Sparse counts stay sparse: row sums, a sparse matrix-vector product per gene set and a
    count of positive stored values per row. The input is not modified.

    Parameters
    ----------
    adata
        Cells × genes AnnData of raw UMI counts.
    layer
        Layer holding the counts; ``None`` uses ``adata.X``.
    gene_symbols
        Column of ``adata.var`` with gene symbols; ``None`` uses ``var_names``.
    precomputed
        ``{metric: obs column}`` for metrics already computed on the full transcriptome, e.g.
        ``{"total_counts": "ncounts", "n_genes_by_counts": "ngenes"}``. Allowed metrics:
        :data:`PRECOMPUTABLE`. Such values are used instead of recomputing them on the genes in
        ``adata``. When ``total_counts`` is precomputed it is also the denominator of the
        percentages computed from ``adata`` (percent of the whole transcriptome).
    validate
        Check that the counts are raw integer UMI counts (see
        :func:`cradlekit._validation.check_raw_counts`).
    warn_missing
        Warn when a gene set is empty (its criterion is skipped either way).

    Returns
    -------
    QCMetrics
        Metric table, gene-set sizes, skipped criteria and where each metric came from.

    Raises
    ------
    cradlekit.errors.InvalidCountsError
        Non-integer, negative or non-finite counts, or an invalid precomputed column.
    cradlekit.errors.MissingKeyError
        Missing layer, ``gene_symbols`` column or precomputed column.
    ValueError
        Unknown precomputed metric name.

    Warns
    -----
    UserWarning
        When a gene set is empty (unless ``warn_missing=False``): the criteria concerned are
        named and skipped. When a precomputed ``total_counts`` is below the counts in
        ``adata`` for some cells (a wrong column?), or a precomputed percentage looks like a
        fraction.
    """
    X = csr_view(get_counts(adata, layer))
    where = counts_description(layer)
    if validate:
        check_counts_in_chunks(X, what=where)
    pre = validate_precomputed(adata, precomputed)
    if sp.issparse(X) and X.format not in ("csr", "csc"):
        X = X.tocsr()

    table = pd.DataFrame(index=adata.obs_names.copy())
    source: dict[str, str] = {}
    for metric, compute in (("total_counts", _row_sums), ("n_genes_by_counts", _row_nnz_positive)):
        if metric in pre:
            table[metric] = _numeric_obs(adata, metric, pre[metric])
            source[metric] = f"obs[{pre[metric]!r}]"
        else:
            table[metric] = compute(X)
            source[metric] = f"computed from {where} ({adata.n_vars} genes)"

    masks = gene_set_masks(adata, gene_symbols=gene_symbols)
    total = table["total_counts"].to_numpy()
    sizes: dict[str, int] = {}
    skipped: list[str] = []
    for criterion, metric in PCT_METRIC.items():
        mask = masks[criterion]
        sizes[criterion] = int(mask.sum())
        if metric in pre:
            table[metric] = _numeric_obs(adata, metric, pre[metric])
            source[metric] = f"obs[{pre[metric]!r}]"
        elif sizes[criterion] == 0:
            table[metric] = np.nan
            skipped.append(criterion)
            source[metric] = f"skipped (no {_SET_LABEL[criterion]})"
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                table[metric] = _row_sums(X, mask) / total * 100.0
            denominator = source["total_counts"]
            source[metric] = (
                f"computed from {where} ({sizes[criterion]} {_SET_LABEL[criterion]}) "
                f"/ total_counts [{denominator}] * 100"
            )
    if "total_counts" in pre:
        n_below = int((_row_sums(X) > total * (1 + 1e-9)).sum())
        if n_below:
            msg = (
                f"precomputed total_counts (adata.obs[{pre['total_counts']!r}]) is smaller than "
                f"the counts in {where} for {n_below} cell(s); is it the right column?"
            )
            warnings.warn(msg, UserWarning, stacklevel=3)
    if skipped and warn_missing:
        named = ", ".join(
            f"{c!r} ({PCT_METRIC[c]}: no {_SET_LABEL[c]}, rule {GENE_SET_OF_CRITERION[c][1]!r})"
            for c in skipped
        )
        msg = (
            f"QC criteria skipped because their genes are absent from the {adata.n_vars} genes: "
            f"{named}. Their flags are all False and their thresholds NaN. If the metrics exist "
            "for the full transcriptome, pass them with precomputed={...}."
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
    n_zero = int((total == 0).sum())
    if n_zero:
        warnings.warn(f"{n_zero} cell(s) have total_counts == 0: their percentages are NaN", UserWarning, stacklevel=3)
    return QCMetrics(
        table=table,
        gene_set_sizes=sizes,
        skipped=skipped,
        metric_source=source,
        precomputed_doublets=_doublet_obs(adata, pre),
    )
