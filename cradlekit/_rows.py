"""Row access to a count matrix that is in memory (numpy / scipy) or on disk (a backed h5ad).

A backed AnnData (``anndata.read_h5ad(path, backed="r")``) exposes ``X`` as anndata's on-disk
sparse dataset; reading a slice of rows reads one contiguous range of the file. These helpers read
rows in bounded chunks so that no caller needs the whole matrix in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

__all__ = [
    "csr_view",
    "is_in_memory",
    "stored_values",
    "gather_rows",
    "row_chunks",
    "chunk_rows_for",
    "densify_rows",
    "check_counts_in_chunks",
]

#: Elements (stored values of a sparse matrix, cells x genes of a dense one) per chunk.
CHUNK_ELEMENTS = 2**23


def csr_view(X):
    """``X`` with index arrays of one dtype (a new CSR sharing ``data`` and ``indices``; else ``X``).

    anndata may read CSR with int32 ``indices`` and int64 ``indptr``; scipy then casts all
    ``indices`` to int64 on *every* row selection (a copy of the size of the matrix per call).
    Narrowing ``indptr`` (one entry per row) avoids that; past 2**31 stored values the indices are
    widened once instead.
    """
    if not (sp.issparse(X) and X.format == "csr") or X.indices.dtype == X.indptr.dtype:
        return X
    if X.indices.dtype == np.int32 and X.nnz < 2**31 - 1:
        indptr = X.indptr.astype(np.int32)
        indices = X.indices
    else:
        indptr, indices = X.indptr.astype(np.int64), X.indices.astype(np.int64)
    return sp.csr_matrix((X.data, indices, indptr), shape=X.shape, copy=False)


def is_in_memory(X) -> bool:
    """Whether ``X`` is a numpy array or a scipy sparse matrix (not an on-disk dataset)."""
    return sp.issparse(X) or isinstance(X, np.ndarray)


def stored_values(X) -> int | None:
    """Number of stored values of a sparse matrix (in memory or on disk); ``None`` for dense."""
    if sp.issparse(X):
        return int(X.nnz)
    indptr = getattr(X, "group", None)
    if indptr is not None and "indptr" in indptr:  # anndata's on-disk CSR / CSC dataset
        return int(indptr["indptr"][-1])
    return None


def chunk_rows_for(X, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that a chunk holds about ``elements`` stored values (at least 1 row)."""
    n_obs, n_vars = X.shape
    nnz = stored_values(X)
    per_row = (nnz / max(n_obs, 1)) if nnz is not None else n_vars
    return max(1, int(elements // max(per_row, 1.0)))


def gather_rows(X, rows: np.ndarray, *, max_span: float = 4.0):
    """``X[rows]`` for sorted ``rows``, CSR (or a numpy array when ``X`` is dense).

    For an on-disk dataset the rows are read as one contiguous slice of the file when the slice
    is at most ``max_span`` times longer than ``rows`` (sequential reads), else row by row.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if is_in_memory(X):
        if rows.size and rows[-1] - rows[0] + 1 == rows.size and np.all(np.diff(rows) == 1):
            return X[int(rows[0]) : int(rows[-1]) + 1]  # a contiguous range: a slice
        return X[rows]
    if rows.size == 0:
        return sp.csr_matrix((0, X.shape[1]), dtype=X.dtype)
    start, stop = int(rows[0]), int(rows[-1]) + 1
    if stop - start <= max_span * rows.size:
        block = csr_view(X[start:stop])
        return block if (stop - start == rows.size) else block[rows - start]
    return X[rows]


def row_chunks(
    X, rows: np.ndarray | None = None, *, chunk_rows: int | None = None
) -> Iterator[tuple[np.ndarray, object]]:
    """Yield ``(rows_of_chunk, X[rows_of_chunk])`` over ``rows`` (default all rows), in order."""
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    step = chunk_rows or chunk_rows_for(X)
    for start in range(0, rows.size, step):
        part = rows[start : start + step]
        yield part, gather_rows(X, part)


def densify_rows(X, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write ``X[rows]`` as float32 into ``out`` (shape ``(len(rows), n_genes)``), in place.

    ``X`` is an in-memory CSR matrix or array; ``out`` may be the numpy view of a pinned tensor.
    """
    if sp.issparse(X):
        sub = X[rows]
        if sub.dtype != np.float32:
            sub = sub.astype(np.float32)
        out.fill(0.0)
        sub.toarray(out=out)  # scipy accumulates into the zeroed buffer
    else:
        np.copyto(out, np.asarray(X)[rows], casting="unsafe")
    return out


def check_counts_in_chunks(X, *, what: str = "adata.X") -> None:
    """:func:`~cradlekit._validation.check_raw_counts` over bounded chunks (in memory or on disk)."""
    from ._validation import check_raw_counts

    if sp.issparse(X) and hasattr(X, "data") and X.format in ("csr", "csc", "coo"):
        values = X.data
        for start in range(0, values.size, CHUNK_ELEMENTS):  # views of the stored values
            check_raw_counts(values[start : start + CHUNK_ELEMENTS], what=what)
        if values.size == 0:
            check_raw_counts(values, what=what)
        return
    if isinstance(X, np.ndarray) or sp.issparse(X):
        for start in range(0, X.shape[0], chunk_rows_for(X)):
            check_raw_counts(X[start : start + chunk_rows_for(X)], what=what)
        return
    for _, block in row_chunks(X):
        check_raw_counts(block, what=what)
