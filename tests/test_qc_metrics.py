"""Per-cell QC metrics: agreement with scanpy, sparse handling, precomputed metrics."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from cradlekit.errors import InvalidCountsError, MissingKeyError
from cradlekit.qc import compute_metrics, gene_set_masks

METRICS = ["total_counts", "n_genes_by_counts", "pct_counts_mt", "pct_counts_ribo", "pct_counts_hb"]
NORMAN = "perturbench_devel_norman19_mcfaline23_counts500.h5ad"


def scanpy_metrics(adata):
    """scanpy's metrics with our gene sets, on a copy (scanpy edits sparse X in place)."""
    ref = adata.copy()
    masks = gene_set_masks(ref)
    for name, key in (("mt", "mito"), ("ribo", "ribo"), ("hb", "hb")):
        ref.var[name] = masks[key]
    obs, _ = sc.pp.calculate_qc_metrics(ref, qc_vars=["mt", "ribo", "hb"], percent_top=None)
    return obs


@pytest.mark.parametrize("sparse", [True, False])
def test_metrics_equal_scanpy(make_qc_adata, sparse):
    adata = make_qc_adata(sparse=sparse)
    res = compute_metrics(adata)
    expected = scanpy_metrics(adata)
    for metric in METRICS:
        np.testing.assert_allclose(res.table[metric], expected[metric], rtol=1e-6)  # float32 X
    assert res.gene_set_sizes == {"mito": 3, "ribo": 4, "hb": 2}  # decoys excluded
    assert res.skipped == []


def test_sparse_stays_sparse_unchanged_and_explicit_zeros_ignored(make_qc_adata):
    adata = make_qc_adata()
    X = adata.X
    X.data[:50] = 0  # explicitly stored zeros: not expressed genes
    before = X.copy()
    res = compute_metrics(adata)
    assert adata.X is X and sp.issparse(adata.X) and adata.X.format == "csr"
    assert X.nnz == before.nnz  # no eliminate_zeros on the user's matrix (scanpy does it)
    assert (X != before).nnz == 0
    dense_nnz = (before.toarray() > 0).sum(axis=1)
    np.testing.assert_array_equal(res.table["n_genes_by_counts"], dense_nnz)
    np.testing.assert_allclose(
        res.table["n_genes_by_counts"], scanpy_metrics(adata)["n_genes_by_counts"]
    )


def test_csc_input_gives_same_metrics(make_qc_adata):
    adata = make_qc_adata()
    expected = compute_metrics(adata).table
    adata.X = adata.X.tocsc()
    got = compute_metrics(adata).table
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())
    assert adata.X.format == "csc"


def test_precomputed_full_transcriptome_metrics_norman(shared_data_file):
    adata = ad.read_h5ad(shared_data_file(NORMAN))
    with pytest.warns(UserWarning, match=r"'mito' \(pct_counts_mt.*'ribo' \(pct_counts_ribo"):
        res = compute_metrics(
            adata, precomputed={"total_counts": "ncounts", "n_genes_by_counts": "ngenes"}
        )
    np.testing.assert_array_equal(res.table["total_counts"], adata.obs["ncounts"])
    np.testing.assert_array_equal(res.table["n_genes_by_counts"], adata.obs["ngenes"])
    assert res.metric_source["total_counts"] == "obs['ncounts']"
    assert res.metric_source["n_genes_by_counts"] == "obs['ngenes']"
    assert res.skipped == ["mito", "ribo"]
    assert res.table["pct_counts_mt"].isna().all()
    # HBG2, HBE1, HBZ are counted; HBEGF is not. Denominator: full-transcriptome ncounts.
    assert res.gene_set_sizes["hb"] == 3
    hb = adata[:, ["HBG2", "HBE1", "HBZ"]].X.sum(axis=1).A1
    np.testing.assert_allclose(res.table["pct_counts_hb"], hb / adata.obs["ncounts"] * 100)
    assert "HBEGF" in adata.var_names and adata[:, "HBEGF"].X.sum() > 0
    # without precomputed metrics the subset totals are used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sub = compute_metrics(adata)
    assert (sub.table["total_counts"] < adata.obs["ncounts"]).all()


def test_precomputed_errors(make_qc_adata):
    adata = make_qc_adata(n_cells=40)
    with pytest.raises(MissingKeyError, match="precomputed column for 'total_counts'.*'ncounts'"):
        compute_metrics(adata, precomputed={"total_counts": "ncounts"})
    with pytest.raises(ValueError, match="unknown precomputed metric"):
        compute_metrics(adata, precomputed={"n_counts": "batch"})
    adata.obs["ncounts"] = np.nan
    with pytest.raises(InvalidCountsError, match="NaN"):
        compute_metrics(adata, precomputed={"total_counts": "ncounts"})
    adata.obs["frac_mt"] = np.linspace(0, 0.2, adata.n_obs)
    with pytest.warns(UserWarning, match="looks like a fraction"):
        compute_metrics(adata, precomputed={"pct_counts_mt": "frac_mt"})


def test_precomputed_total_smaller_than_counts_warns(make_qc_adata):
    adata = make_qc_adata(n_cells=40)
    adata.obs["log_counts"] = np.log1p(adata.X.sum(axis=1).A1)  # a wrong column
    with pytest.warns(UserWarning, match="smaller than the counts in adata.X for 40 cell"):
        compute_metrics(adata, precomputed={"total_counts": "log_counts"})
