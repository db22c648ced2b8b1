"""Tests of counterfactual references (cradlekit.data.counterfactual)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cradlekit._keys import CF_INDEX_KEY, CF_LAYER, CF_MASK_KEY
from cradlekit.data.counterfactual import counterfactual_matrix, counterfactual_references, reference_table
from cradlekit.data.splits import split_combinations
from cradlekit.errors import InvalidCountsError, MissingKeyError


def _check_references(adata, n_max: int, artifact_key: str = "artifact_k3", key: str = CF_LAYER) -> dict:
    """Verify every reference against its recorded rows; return a few statistics."""
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    R = counterfactual_matrix(adata, key)
    assert sp.issparse(R) and R.format == "csr" and R.dtype == np.float32 and R.shape == adata.shape
    R = R.toarray()
    idx = adata.obsm[CF_INDEX_KEY]
    mask = adata.obs[CF_MASK_KEY].to_numpy()
    assert idx.shape == (adata.n_obs, n_max) and np.issubdtype(idx.dtype, np.integer)
    a = adata.obs[artifact_key].astype(int).to_numpy()
    pert = adata.obs["perturbation"].astype(str).to_numpy()
    split = adata.obs["split"].astype(str).to_numpy()
    group_failed = {}
    for p, s in set(zip(pert, split, strict=True)):
        group_failed[(p, s)] = np.flatnonzero((pert == p) & (split == s) & (a == 1))
    # failed cells and cells without a reference: no rows, empty reference
    assert not mask[a == 1].any()
    assert (idx[~mask] == -1).all() and not R[~mask].any()
    n_drawn = []
    for i in np.flatnonzero(mask):
        row = idx[i]
        rows = row[row >= 0]
        assert (row[len(rows):] == -1).all()  # padding only at the end
        pool = group_failed[(pert[i], split[i])]
        assert len(rows) == min(n_max, len(pool))
        assert len(np.unique(rows)) == len(rows)  # without replacement
        assert np.isin(rows, pool).all()  # failed cells of the same perturbation and split
        np.testing.assert_array_equal(R[i], np.median(X[rows], axis=0).astype(np.float32))
        n_drawn.append(len(rows))
    # passed cells in groups with failed cells have a reference; others do not
    has_pool = np.array([len(group_failed[(p, s)]) > 0 for p, s in zip(pert, split, strict=True)])
    np.testing.assert_array_equal(mask, (a == 0) & has_pool)
    return {"n_ref": int(mask.sum()), "max_drawn": max(n_drawn, default=0), "n_drawn": np.array(n_drawn)}


@pytest.fixture
def norman_cf(norman19_subset):
    """Norman subset with a combination split and a simple artifact rule (lowest 30% of total counts)."""
    a = norman19_subset.copy()
    split_combinations(a, seed=0)
    total = np.asarray(a.X.sum(axis=1)).ravel()
    a.obs["artifact_k3"] = (total < np.quantile(total, 0.3)).astype(int)
    return a


@pytest.fixture
def sim_cf(small_simulation):
    a = small_simulation.copy()
    split_combinations(a, seed=1)
    a.obs["artifact_k3"] = a.obs["true_artifact"].astype(int)
    return a


@pytest.mark.parametrize("n_max", [50, 10])
def test_norman_references_are_medians_of_recorded_failed_cells(norman_cf, n_max):
    counterfactual_references(norman_cf, n_max=n_max, seed=0)
    stats = _check_references(norman_cf, n_max)
    assert stats["n_ref"] > 0.5 * (norman_cf.obs["artifact_k3"] == 0).sum()
    assert stats["max_drawn"] == n_max if n_max == 10 else stats["max_drawn"] <= 50
    meta = norman_cf.uns["cf_reference"]
    assert meta["n_max"] == n_max and meta["artifact_key"] == "artifact_k3" and meta["layer"] == "X"


def test_simulated_references_draw_independently_per_cell(sim_cf):
    counterfactual_references(sim_cf, n_max=5, seed=0)
    stats = _check_references(sim_cf, 5)
    assert (stats["n_drawn"] == 5).mean() > 0.5  # most groups have more than n_max failed cells
    idx = sim_cf.obsm[CF_INDEX_KEY]
    full = (idx >= 0).all(axis=1)
    assert len({tuple(sorted(r)) for r in idx[full]}) > 0.9 * full.sum()  # independent draws
    assert sim_cf.obs[CF_MASK_KEY].dtype == bool


def test_small_groups_share_the_median(norman_cf):
    counterfactual_references(norman_cf, n_max=50)
    R = counterfactual_matrix(norman_cf)
    mask = norman_cf.obs[CF_MASK_KEY].to_numpy()
    groups = norman_cf.obs["perturbation"].astype(str) + "|" + norman_cf.obs["split"].astype(str)
    for g in np.unique(groups[mask])[:10]:
        rows = np.flatnonzero((groups == g).to_numpy() & mask)
        assert (R[rows] != R[rows[0]][np.zeros(len(rows), dtype=int)]).nnz == 0


def test_seeded_reproducibility(sim_cf):
    b = sim_cf.copy()
    counterfactual_references(sim_cf, n_max=20, seed=5)
    counterfactual_references(b, n_max=20, seed=5, max_block_mb=0.001)  # memory bound does not change results
    np.testing.assert_array_equal(sim_cf.obsm[CF_INDEX_KEY], b.obsm[CF_INDEX_KEY])
    assert (counterfactual_matrix(sim_cf) != counterfactual_matrix(b)).nnz == 0
    counterfactual_references(b, n_max=20, seed=6)
    assert not np.array_equal(sim_cf.obsm[CF_INDEX_KEY], b.obsm[CF_INDEX_KEY])


def test_group_without_failed_cells_is_masked(sim_cf):
    labels = sim_cf.obs["perturbation"].astype(str)
    target = "KLF1"
    sim_cf.obs.loc[(labels == target).to_numpy(), "artifact_k3"] = 0
    counterfactual_references(sim_cf, n_max=20)
    stats = _check_references(sim_cf, 20)
    mask = sim_cf.obs[CF_MASK_KEY].to_numpy()
    sel = (labels == target).to_numpy()
    assert not mask[sel].any()
    assert counterfactual_matrix(sim_cf)[np.flatnonzero(sel)].nnz == 0
    assert (sim_cf.obsm[CF_INDEX_KEY][sel] == -1).all()
    meta = sim_cf.uns["cf_reference"]
    expected = {f"{target}|{s}" for s in sim_cf.obs["split"][sel].astype(str).unique()}
    assert expected <= set(meta["groups_without_failed"])
    assert meta["n_passed_without_reference"] == sel.sum()
    assert stats["n_ref"] == meta["n_with_reference"]


def test_sparse_input_stays_sparse_and_matches_dense(sim_cf):
    X_before = sim_cf.X.copy()
    dense = sim_cf.copy()
    dense.X = dense.X.toarray()
    counterfactual_references(sim_cf, n_max=20, seed=3)
    counterfactual_references(dense, n_max=20, seed=3)
    assert sp.issparse(sim_cf.X) and (sim_cf.X != X_before).nnz == 0
    assert sp.issparse(dense.uns["cf_reference_table"])
    assert (counterfactual_matrix(sim_cf) != counterfactual_matrix(dense)).nnz == 0
    np.testing.assert_array_equal(sim_cf.obsm[CF_INDEX_KEY], dense.obsm[CF_INDEX_KEY])


def test_counts_layer_and_h5ad_roundtrip(sim_cf, tmp_path):
    sim_cf.layers["counts"] = sim_cf.X.copy()
    sim_cf.X = sp.csr_matrix(np.log1p(sim_cf.X.toarray()))
    counterfactual_references(sim_cf, n_max=15, layer="counts", key_added="cf_ref_counts")
    assert "cf_ref_counts_table" in sim_cf.uns and sim_cf.uns["cf_reference"]["layer"] == "counts"
    sim_cf.X = sim_cf.layers["counts"]
    _check_references(sim_cf, 15, key="cf_ref_counts")
    sim_cf.write_h5ad(tmp_path / "cf.h5ad")
    import anndata as ad

    b = ad.read_h5ad(tmp_path / "cf.h5ad")
    np.testing.assert_array_equal(b.obsm[CF_INDEX_KEY], sim_cf.obsm[CF_INDEX_KEY])
    assert (counterfactual_matrix(b, "cf_ref_counts") != counterfactual_matrix(sim_cf, "cf_ref_counts")).nnz == 0
    assert b.uns["cf_reference"]["n_max"] == 15


def test_errors(sim_cf):
    with pytest.raises(MissingKeyError, match="label_artifacts"):
        counterfactual_references(sim_cf, artifact_key="artifact_k4")
    with pytest.raises(MissingKeyError, match="split_combinations"):
        counterfactual_references(sim_cf, split_key="split_other")
    bad = sim_cf.copy()
    bad.X = sp.csr_matrix(bad.X.astype(np.float32) * 0.5)
    with pytest.raises(InvalidCountsError):
        counterfactual_references(bad)
    bad = sim_cf.copy()
    bad.obs["artifact_k3"] = 2
    with pytest.raises(ValueError, match="0/1"):
        counterfactual_references(bad)
    with pytest.raises(ValueError):
        counterfactual_references(sim_cf, n_max=0)


def test_table_holds_one_row_per_distinct_reference(sim_cf):
    """Shared group medians are stored once; per-cell draws once per cell; the layer form agrees."""
    layer = sim_cf.copy()
    counterfactual_references(sim_cf, n_max=20, seed=1)
    counterfactual_references(layer, n_max=20, seed=1, per_cell_layer=True)
    table, row = reference_table(sim_cf)
    mask = sim_cf.obs[CF_MASK_KEY].to_numpy()
    idx = sim_cf.obsm[CF_INDEX_KEY]
    # distinct references = distinct sets of failed cells behind them (the independent oracle)
    distinct = {tuple(r) for r in idx[mask]}
    assert table.shape[0] == len(distinct) == sim_cf.uns["cf_reference"]["n_references"]
    assert len(np.unique(row[mask])) == table.shape[0] and (row[~mask] == -1).all()
    shared = (idx[mask] == -1).any(axis=1)  # groups with fewer than n_max failed cells
    assert shared.any() and table.shape[0] < mask.sum()
    assert "cf_reference" in layer.layers and "cf_reference_table" not in layer.uns
    assert (layer.layers[CF_LAYER] != counterfactual_matrix(sim_cf)).nnz == 0


def test_backed_file_gives_the_same_references(sim_cf, tmp_path):
    import anndata as ad

    path = tmp_path / "screen.h5ad"
    sim_cf.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    counterfactual_references(sim_cf, n_max=20, seed=2)
    counterfactual_references(backed, n_max=20, seed=2)
    assert backed.isbacked
    np.testing.assert_array_equal(backed.obsm[CF_INDEX_KEY], sim_cf.obsm[CF_INDEX_KEY])
    assert (counterfactual_matrix(backed) != counterfactual_matrix(sim_cf)).nnz == 0
    backed.file.close()
