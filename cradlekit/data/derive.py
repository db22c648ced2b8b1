"""Integer counts from a log-normalised file, as done for the Norman subset (``shared/data/SOURCES.md``).

PerturBench's ``devel.h5ad`` stores ``X = log1p(c_ij / L_i · 10^4)`` for 500 highly variable
genes. Within a cell, ``expm1(x_ij)`` is proportional to the counts ``c_ij``, so dividing by the
cell's smallest non-zero value gives ``c_ij / min_j c_ij``: integers when the smallest count is 1.
When it is not, the smallest multiplier ``m`` in ``1 .. max_multiplier`` that makes every ratio an
integer is used (the smallest count is ``m``). :func:`counts_from_log1p` does this per cell and
reports how exact it was; :func:`derive_perturbench_counts` builds the shipped derived file's
layout (a manifest entry names it with ``derive: perturbench_counts``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import InvalidCountsError

__all__ = ["counts_from_log1p", "derive_perturbench_counts", "DERIVATIONS"]

#: A ratio is integral when it is this close to an integer (the Norman file's worst case is 3e-13).
INTEGER_TOLERANCE = 1e-6


def counts_from_log1p(
    X, *, target_sum: float = 1e4, max_multiplier: int = 10
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Reconstruct integer counts from ``log1p`` of per-cell normalised counts.

    Parameters
    ----------
    X
        Cells × genes, ``log1p(c / L · target_sum)`` (dense or sparse).
    target_sum
        The normalisation's target sum (used only for the implied library size).
    max_multiplier
        Largest smallest-count tried per cell.

    Returns
    -------
    counts, info
        CSR ``int32`` counts (same sparsity as ``X``) and a per-cell table with
        ``norm_lib_size_implied`` (``target_sum · m / min expm1(x)``),
        ``count_reconstruction_exact`` (all ratios within :data:`INTEGER_TOLERANCE`),
        ``count_reconstruction_maxdev`` (largest distance to an integer) and
        ``total_counts`` (sum of the reconstructed counts).

    Raises
    ------
    cradlekit.errors.InvalidCountsError
        If a cell's values cannot be made integral with any multiplier up to ``max_multiplier``.
    """
    X = sp.csr_matrix(X, dtype=np.float64)
    X.eliminate_zeros()
    n = X.shape[0]
    data = np.empty(X.data.shape, dtype=np.int32)
    lib = np.zeros(n)
    maxdev = np.zeros(n)
    for i in range(n):  # per cell: a few hundred values each
        lo, hi = X.indptr[i], X.indptr[i + 1]
        if lo == hi:
            continue
        v = np.expm1(X.data[lo:hi])
        ratio = v / v.min()
        for m in range(1, max_multiplier + 1):
            scaled = ratio * m
            dev = float(np.max(np.abs(scaled - np.rint(scaled))))
            if dev <= INTEGER_TOLERANCE:
                break
        else:
            raise InvalidCountsError(
                f"cell {i}: expm1(X) / its minimum is not integral for any multiplier up to {max_multiplier} "
                f"(deviation {dev:.3g}); X is not log1p of normalised counts"
            )
        data[lo:hi] = np.rint(scaled).astype(np.int32)
        lib[i] = target_sum * m / v.min()
        maxdev[i] = dev
    counts = sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
    counts.sort_indices()
    info = pd.DataFrame({
        "norm_lib_size_implied": lib,
        "count_reconstruction_exact": maxdev <= INTEGER_TOLERANCE,
        "count_reconstruction_maxdev": maxdev,
        "total_counts": np.asarray(counts.sum(axis=1)).ravel().astype(np.int64),
    })
    return counts, info


def derive_perturbench_counts(adata: AnnData) -> AnnData:
    """PerturBench ``devel.h5ad`` → the derived counts file described in ``shared/data/SOURCES.md``.

    ``X`` becomes integer counts, the original values move to ``layers['log1p_norm_original']``,
    and ``obs`` gains ``norm_lib_size_implied``, ``count_reconstruction_exact``,
    ``count_reconstruction_maxdev`` and ``total_counts_hvg500``. ``adata`` is not modified.
    """
    counts, info = counts_from_log1p(adata.X)
    out = adata.copy()
    out.layers["log1p_norm_original"] = sp.csr_matrix(adata.X, dtype=np.float64)
    out.X = counts
    for column in ("norm_lib_size_implied", "count_reconstruction_exact", "count_reconstruction_maxdev"):
        out.obs[column] = info[column].to_numpy()
    out.obs["total_counts_hvg500"] = info["total_counts"].to_numpy()
    return out


#: Derivations a manifest entry may name (``derive: <name>``).
DERIVATIONS: dict[str, Callable[[AnnData], AnnData]] = {"perturbench_counts": derive_perturbench_counts}
