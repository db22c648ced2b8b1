r"""The paper's metric space: per-cell library-size normalisation and ``log2(· + 1)`` (design page, "Metrics").

Every ATE metric of Table 2 compares means of

.. math:: y_{ig} = \log_2\left(10^4 \cdot x_{ig} / \textstyle\sum_{g'} x_{ig'} + 1\right),

the ``"perturbseq"`` method of the authors' ``estimate_data_average_treatment_effects``.
Expected expressions already scaled to a library of ``1e4`` (a model's ``predict_mean``)
only need ``log2(x + 1)``: pass ``normalized=True`` where a function offers it.

Cells with zero total counts have no defined normalisation (``0 / 0``); the authors' code
silently produces NaN rows that poison every mean. Here they raise
:class:`~cradlekit.errors.InvalidCountsError` unless ``zero_total="zero"`` is passed, which
keeps such a cell at ``0`` for every gene (the value ``log2(0 + 1)`` of an empty cell).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .._validation import get_counts
from ..errors import InvalidCountsError

__all__ = ["perturbseq_normalize", "TARGET_SUM"]

#: Library size of the paper's metric space.
TARGET_SUM = 1e4

ZeroTotal = Literal["raise", "zero"]


def perturbseq_normalize(
    data: AnnData | np.ndarray | sp.spmatrix,
    *,
    layer: str | None = None,
    target_sum: float = TARGET_SUM,
    normalized: bool = False,
    zero_total: ZeroTotal = "raise",
    dtype: np.dtype | type = np.float64,
) -> np.ndarray | sp.csr_matrix:
    """Normalise each cell to ``log2(target_sum · x / Σx + 1)``.

    Parameters
    ----------
    data
        Cells × genes AnnData (counts in ``X`` or ``layers[layer]``), or the matrix itself
        (dense array or any scipy sparse matrix). Values must be finite and non-negative.
    layer
        Layer with the counts, for AnnData input; ``None`` uses ``X``.
    target_sum
        Library size after scaling (the paper's ``1e4``).
    normalized
        The values are already scaled to ``target_sum`` (e.g. expected expressions from
        ``predict_mean(library_size=1e4)``): only ``log2(x + 1)`` is applied.
    zero_total
        Cells whose counts sum to zero: ``"raise"`` (default) raises; ``"zero"`` leaves them at
        0 for every gene.
    dtype
        Floating dtype of the result.

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_matrix
        A new matrix of the same shape; sparse input gives CSR output with the same sparsity
        pattern (``log2(0 + 1) = 0``). ``data`` is not modified.

    Raises
    ------
    cradlekit.errors.InvalidCountsError
        Negative or non-finite values; a cell with zero total when ``zero_total="raise"``.
    cradlekit.errors.MissingKeyError
        ``layer`` absent.

    Examples
    --------
    >>> import numpy as np
    >>> perturbseq_normalize(np.array([[1, 3, 15, 9981]]))[0, :3]
    array([1., 2., 4.])
    """
    if zero_total not in ("raise", "zero"):
        raise ValueError(f"zero_total must be 'raise' or 'zero', got {zero_total!r}")
    X = get_counts(data, layer) if isinstance(data, AnnData) else data
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if sp.issparse(X):
        out = sp.csr_matrix(X, dtype=dtype, copy=True)
        _check_values(out.data, what)
        if not normalized:
            totals = np.asarray(out.sum(axis=1), dtype=np.float64).ravel()
            scale = _row_scale(totals, target_sum, zero_total, what)
            out.data *= np.repeat(scale, np.diff(out.indptr)).astype(dtype, copy=False)
        np.log2(out.data + 1, out=out.data)
        return out
    out = np.array(X, dtype=dtype, copy=True)
    if out.ndim != 2:
        raise ValueError(f"expected a cells × genes matrix, got shape {out.shape}")
    _check_values(out, what)
    if not normalized:
        totals = out.sum(axis=1, dtype=np.float64)
        out *= _row_scale(totals, target_sum, zero_total, what)[:, None].astype(dtype, copy=False)
    np.log2(out + 1, out=out)
    return out


def _check_values(values: np.ndarray, what: str) -> None:
    if values.size == 0:
        return
    if not np.isfinite(values).all():
        raise InvalidCountsError(f"{what} contains NaN or infinite values")
    if values.min() < 0:
        raise InvalidCountsError(f"{what} contains negative values (min {values.min()}); pass counts")


def _row_scale(totals: np.ndarray, target_sum: float, zero_total: ZeroTotal, what: str) -> np.ndarray:
    """``target_sum / total`` per cell; zero-total cells raise or get scale 0."""
    empty = totals <= 0
    if empty.any() and zero_total == "raise":
        raise InvalidCountsError(
            f"{int(empty.sum())} cell(s) in {what} have zero total counts (first at row "
            f"{int(np.flatnonzero(empty)[0])}); their normalisation 0/0 is undefined. Drop them "
            "or pass zero_total='zero' to keep them as all-zero rows."
        )
    scale = np.zeros_like(totals)
    np.divide(target_sum, totals, out=scale, where=~empty)
    return scale
