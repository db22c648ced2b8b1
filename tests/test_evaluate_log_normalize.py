"""perturbseq_normalize: log2(1e4 · x / Σx + 1) per cell, sparse kept sparse, zero totals."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cradlekit.errors import InvalidCountsError, MissingKeyError
from cradlekit.evaluate import perturbseq_normalize

# Row 0 sums to 1e4, so 1e4·x/Σx = x and log2(x + 1) of 1, 3, 15 is 1, 2, 4.
# Row 1 is row 0 doubled (library 2e4): the same normalised values.
# Row 2 sums to 4: 1e4·1/4 = 2500 → log2(2501); 1e4·3/4 = 7500 → log2(7501).
COUNTS = np.array(
    [
        [1, 3, 15, 9981],
        [2, 6, 30, 19962],
        [1, 0, 3, 0],
    ]
)
EXPECTED = np.array(
    [
        [1.0, 2.0, 4.0, np.log2(9982)],
        [1.0, 2.0, 4.0, np.log2(9982)],
        [np.log2(2501), 0.0, np.log2(7501), 0.0],
    ]
)


def test_hand_computed_values_dense_and_sparse():
    dense = perturbseq_normalize(COUNTS)
    np.testing.assert_allclose(dense, EXPECTED, rtol=1e-12)
    sparse = perturbseq_normalize(sp.csr_matrix(COUNTS))
    assert sp.isspmatrix_csr(sparse)
    assert sparse.nnz == np.count_nonzero(COUNTS)  # sparsity pattern kept
    np.testing.assert_allclose(sparse.toarray(), EXPECTED, rtol=1e-12)
    np.testing.assert_allclose(perturbseq_normalize(sp.csc_matrix(COUNTS)).toarray(), EXPECTED, rtol=1e-12)


def test_anndata_input_layer_and_input_untouched():
    adata = ad.AnnData(X=np.zeros((3, 4)), layers={"counts": sp.csr_matrix(COUNTS.astype(np.float32))})
    out = perturbseq_normalize(adata, layer="counts")
    np.testing.assert_allclose(out.toarray(), EXPECTED, rtol=1e-6)
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), COUNTS)  # not modified
    with pytest.raises(MissingKeyError, match="layer 'raw' not found"):
        perturbseq_normalize(adata, layer="raw")
    assert perturbseq_normalize(COUNTS, dtype=np.float32).dtype == np.float32


def test_normalized_values_only_get_log2():
    values = np.array([[0.0, 1.0, 3.0, 7.0], [15.0, 0.0, 0.0, 0.5]])
    expected = np.array([[0.0, 1.0, 2.0, 3.0], [4.0, 0.0, 0.0, np.log2(1.5)]])
    np.testing.assert_allclose(perturbseq_normalize(values, normalized=True), expected)


def test_zero_total_cells_raise_or_stay_zero():
    X = np.array([[1, 3], [0, 0], [0, 0]])
    with pytest.raises(InvalidCountsError, match=r"2 cell\(s\).*zero total.*first at row 1"):
        perturbseq_normalize(X)
    with pytest.raises(InvalidCountsError, match="zero total"):
        perturbseq_normalize(sp.csr_matrix(X))
    out = perturbseq_normalize(X, zero_total="zero")
    np.testing.assert_allclose(out, [[np.log2(2501), np.log2(7501)], [0, 0], [0, 0]])
    np.testing.assert_allclose(perturbseq_normalize(sp.csr_matrix(X), zero_total="zero").toarray(), out)
    with pytest.raises(ValueError, match="zero_total"):
        perturbseq_normalize(X, zero_total="nan")


def test_invalid_values_raise():
    with pytest.raises(InvalidCountsError, match="negative"):
        perturbseq_normalize(np.array([[1.0, -1.0]]))
    with pytest.raises(InvalidCountsError, match="NaN"):
        perturbseq_normalize(sp.csr_matrix(np.array([[1.0, np.nan]])))
