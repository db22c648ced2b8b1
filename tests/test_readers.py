"""load_dataset on the real local subset, and each normaliser on a tiny file in its published layout."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradlekit.data.manifest import load_manifest
from cradlekit.data.perturbations import dosage_matrix, is_combination
from cradlekit.data.readers import load_dataset, standardize_dataset
from cradlekit.errors import InvalidCountsError, MissingKeyError, UnknownControlError

NORMAN_SUBSET = "perturbench_devel_norman19_mcfaline23_counts500.h5ad"
PBMC = "pbmc_10k_protein_v3_subset200_scvi_testdata.h5ad"


@pytest.fixture(scope="module")
def norman_subset(shared_data_file, tmp_path_factory):
    path = shared_data_file(NORMAN_SUBSET)
    cache = tmp_path_factory.mktemp("cache")
    return load_dataset("norman_subset", local_dirs=[path.parent], cache_dir=cache), path


def test_norman_subset_has_canonical_labels(norman_subset):
    adata, _ = norman_subset
    labels = adata.obs["perturbation"]
    assert adata.n_obs == 3375 and isinstance(labels.dtype, pd.CategoricalDtype)
    uniq = set(labels.cat.categories)
    combos = {u for u in uniq if "+" in u}
    singles = uniq - combos - {"control"}
    assert "control" in uniq and len(singles) == 18 and len(combos) == 15
    assert all(c.split("+") == sorted(c.split("+")) for c in combos)
    assert "KLF1+SET" in combos and "SET+KLF1" not in uniq  # the file writes 'SET+KLF1'
    assert (labels == "control").sum() == 100
    meta = adata.uns["cradlekit"]
    assert meta["perturbation_key"] == "perturbation" and meta["control_label"] == "control"
    # read from the upstream PerturBench file (verified), counts derived from it
    assert meta["dataset"]["checksum"] == "sha256:220998f5630c813228c8661c86dd52244b9ac87127511289af90e0d900d8429b"
    assert meta["dataset"]["filename"] == "perturbench_devel.h5ad" and "derived" in meta["dataset"]["counts_from"]


def test_norman_subset_keeps_original_columns_and_counts(norman_subset):
    adata, path = norman_subset
    raw = ad.read_h5ad(path)
    raw = raw[raw.obs["dataset"] == "norman19"]
    pd.testing.assert_series_equal(adata.obs["condition"], raw.obs["condition"])  # untouched
    assert (adata.obs["perturbation_original"].astype(str) == raw.obs["perturbation"].astype(str)).all()
    assert np.issubdtype(adata.X.dtype, np.integer) and (adata.X != raw.X).nnz == 0
    assert adata.uns["cradlekit"]["precomputed_qc"] == {"total_counts": "ncounts", "n_genes_by_counts": "ngenes"}
    assert {"ncounts", "ngenes"} <= set(adata.obs.columns)


def test_norman_subset_dosage_matrix(norman_subset):
    adata, _ = norman_subset
    D, targets = dosage_matrix(adata)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    rows = D.sum(axis=1)
    combo = is_combination(labels)
    assert (rows[combo] == 2).all() and (rows[labels == "control"] == 0).all()
    assert (rows[~combo & (labels != "control")] == 1).all()
    assert set(D.ravel()) <= {0.0, 1.0} and targets == sorted(targets)


def test_norman_subset_all_parts(shared_data_file, tmp_path):
    path = shared_data_file(NORMAN_SUBSET)
    adata = load_dataset("norman_subset", path=path, subset="all", cache_dir=tmp_path)  # the derived file itself
    assert adata.n_obs == 5961 and adata.uns["cradlekit"]["dataset"]["subset"] == "all"
    assert adata.uns["cradlekit"]["dataset"]["checksum"].endswith(
        "e6e6967a84982a92e34b6eea17abfc61d888b58b5c0d7792a39c81765f64d4f7"
    )
    with pytest.raises(MissingKeyError, match="mcfaline23"):
        load_dataset("norman_subset", path=path, subset="nope", cache_dir=tmp_path)


def test_pbmc_has_no_perturbations(shared_data_file, tmp_path, cradlekit_log):
    adata = load_dataset("pbmc_qc", path=shared_data_file(PBMC), cache_dir=tmp_path)
    assert adata.shape == (200, 16727) and "perturbation" not in adata.obs
    assert adata.uns["cradlekit"]["dataset"]["name"] == "pbmc_qc"
    assert any("skipping label standardisation" in r.getMessage() for r in cradlekit_log.records)


# ----------------------------------------------------------------- tiny files in published layouts


def _write(tmp_path, name, X, obs, var=None, **layers):
    adata = ad.AnnData(X=X, obs=pd.DataFrame(obs, index=[f"c{i}" for i in range(X.shape[0])]), var=var)
    for key, value in layers.items():
        adata.layers[key] = value
    path = tmp_path / f"{name}.h5ad"
    adata.write_h5ad(path)
    return path


def _mem(obs: pd.DataFrame) -> ad.AnnData:
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(X=np.ones((len(obs), 2), np.float32), obs=obs)


def _load(name, path, tmp_path, **kw):
    return load_dataset(name, path=path, verify=False, cache_dir=tmp_path / "cache", **kw)


def test_norman_one_hot_layout(tmp_path):
    ident = [
        "NegCtrl0_NegCtrl0__NegCtrl0_NegCtrl0", "NegCtrl10_NegCtrl0__NegCtrl10_NegCtrl0",
        "KLF1_NegCtrl0__KLF1_NegCtrl0", "CBL_CNN1__CBL_CNN1", "CNN1_CBL__CNN1_CBL",
    ]
    onehot = {"guide_CBL": [0, 0, 0, 1, 1], "guide_CNN1": [0, 0, 0, 1, 1], "guide_KLF1": [0, 0, 1, 0, 0]}
    obs = {
        "guide_identity": ident,
        "guide_ids": ["", "", "KLF1", "CBL,CNN1", "CNN1,CBL"],
        "UMI_count": [50] * 5,
        **onehot,
    }
    counts = sp.csr_matrix(np.arange(15, dtype=np.float32).reshape(5, 3))
    var = pd.DataFrame({"index": ["ENSG1", "ENSG2", "ENSG3"]}, index=["MT-CO1", "GATA1", "HBG2"])
    path = _write(tmp_path, "norman", np.log1p(counts.toarray()) / 3.0, obs, var, counts=counts)
    adata = _load("norman", path, tmp_path)
    assert list(adata.obs["perturbation"]) == ["control", "control", "KLF1", "CBL+CNN1", "CBL+CNN1"]
    assert (adata.X != counts).nnz == 0 and "counts" not in adata.layers  # counts moved to X
    assert list(adata.var_names) == ["MT-CO1", "GATA1", "HBG2"]
    assert adata.uns["cradlekit"]["dataset"]["guide_identity_disagreements"] == 0
    assert adata.uns["cradlekit"]["dataset"]["counts_from"] == "layers['counts']"
    assert list(adata.obs["guide_identity"]) == ident  # original column untouched


def test_norman_guide_identity_only(tmp_path):
    obs = pd.DataFrame(
        {
            "guide_identity": [
                "NegCtrl1_NegCtrl0__NegCtrl1_NegCtrl0",
                "SET_KLF1__SET_KLF1",
                "FOXO4_NegCtrl0__FOXO4_NegCtrl0",
            ]
        }
    )
    adata = standardize_dataset(_mem(obs), "norman")
    assert list(adata.obs["perturbation"]) == ["control", "KLF1+SET", "FOXO4"]


def test_dixit_figshare_layout(tmp_path):
    g = {  # cells: no guide, intergenic, EGR1 (two guides), EGR1+ELK1, three targets (dropped)
        "INTERGENIC1144056": [False, True, False, False, False],
        "sgEGR1_2": [False, False, True, True, True],
        "sgEGR1_3": [False, False, True, False, False],
        "sgELK1_1": [False, False, False, True, True],
        "sgYY1_3": [False, False, False, False, True],
    }
    obs = {"cluster": ["tfs_highmoi"] * 5, "guide": ["", "x", "y", "z", "w"], "batch": ["0"] * 5, **g}
    var = pd.DataFrame({"gene_symbols": ["EGR1", "ELK1", "EGR1"]}, index=["ENSG1", "ENSG2", "ENSG3"])
    path = _write(tmp_path, "dixit", sp.csr_matrix(np.ones((5, 3), np.float32)), obs, var)
    adata = _load("dixit", path, tmp_path)
    assert list(adata.obs["perturbation"]) == ["control", "control", "EGR1", "EGR1+ELK1"]
    assert list(adata.var_names) == ["EGR1", "ELK1", "EGR1-1"] and list(adata.var["var_id"]) == [
        "ENSG1",
        "ENSG2",
        "ENSG3",
    ]
    info = adata.uns["cradlekit"]["dataset"]
    assert info["cells_dropped_too_many_targets"] == 1 and info["cells_without_guide"] == 1
    dropped = _load("dixit", path, tmp_path, normalizer_options={"unassigned": "drop", "max_targets": None})
    assert list(dropped.obs["perturbation"]) == ["control", "EGR1", "EGR1+ELK1", "EGR1+ELK1+YY1"]


def test_dixit_authors_layout():
    obs = pd.DataFrame({
        "combined_guides": ["", "EGR1", "ELK1_EGR1"], "guide": ["", "a", "b"], "cluster": ["c"] * 3,
        "EGR1": [0, 1, 1], "ELK1": [0, 0, 1], "INTERGENIC216151": [1, 0, 0], "UMI_count": [10, 20, 30],
    })
    adata = standardize_dataset(_mem(obs), "dixit")
    assert list(adata.obs["perturbation"]) == ["control", "EGR1", "EGR1+ELK1"]
    assert adata.uns["cradlekit"]["dataset"]["label_source"] == "authors' per-gene columns"


def test_adamson_scperturb_layout(tmp_path):
    labels = [
        "62(mod)_pBA581",
        "63(mod)_pBA580",
        "Gal4-4(mod)_pBA582",
        "*",
        None,
        "ATF6_pMJ1",
        "ATF6_pMJ2",
        "SEC61A1_pDS1",
    ]
    obs = {
        "perturbation": pd.Categorical(labels),
        "ncounts": np.arange(8.0) + 100,
        "ngenes": np.arange(8) + 50,
        "nperts": [2] * 8,
    }
    path = _write(tmp_path, "adamson", sp.csr_matrix(np.ones((8, 2), np.float32)), obs)
    adata = _load("adamson", path, tmp_path)
    assert list(adata.obs["perturbation"]) == ["control"] * 3 + ["ATF6", "ATF6", "SEC61A1"]
    assert list(adata.obs["perturbation_original"].astype(str)) == [lab for lab in labels if lab not in ("*", None)]
    info = adata.uns["cradlekit"]["dataset"]
    assert info["cells_dropped_star"] == 1 and info["cells_dropped_unlabelled"] == 1
    assert adata.uns["cradlekit"]["precomputed_qc"] == {"total_counts": "ncounts", "n_genes_by_counts": "ngenes"}


def test_replogle_lopez_selection_and_levels(tmp_path):
    genes = ["CCT2", "CCT2", "ZZZ9", "non-targeting", "non-targeting"]
    obs = {
        "gene": genes, "transcript": ["P1P2", "P1", "P1P2", "P1P2", "P1P2"],
        "sgID_AB": ["CCT2_+_1.23-P1P2|CCT2_-_2.23-P1P2", "CCT2_+_5.23-P1|CCT2_-_6.23-P1", "ZZZ9_+_1|ZZZ9_-_2",
                    "non-targeting_00001|non-targeting_00002", "non-targeting_00003|non-targeting_00004"],
        "UMI_count": [1000.0, 2000, 3000, 4000, 5000], "mitopercent": [0.05, 0.1, 0.2, 0.1, 0.08],
    }
    var = pd.DataFrame({"gene_name": ["MT-ND6", "HSPA5", "NOTLISTED"]}, index=["ENSG01", "ENSG02", "ENSG03"])
    X = np.arange(15, dtype=np.float32).reshape(5, 3)  # dense, as in the figshare file
    path = _write(tmp_path, "replogle", X, obs, var)
    adata = _load("replogle", path, tmp_path)
    assert list(adata.var_names) == ["MT-ND6", "HSPA5"] and adata.n_obs == 4  # ZZZ9 is not a Lopez target
    assert list(adata.obs["perturbation"]) == ["CCT2_P1P2", "CCT2_P1", "control", "control"]
    np.testing.assert_array_equal(adata.X, X[[0, 1, 3, 4]][:, :2])
    qc = adata.uns["cradlekit"]["precomputed_qc"]
    assert qc == {"total_counts": "UMI_count", "pct_counts_mt": "pct_counts_mt_precomputed"}
    np.testing.assert_allclose(adata.obs["pct_counts_mt_precomputed"], [5.0, 10.0, 10.0, 8.0])
    by_gene = _load("replogle", path, tmp_path, normalizer_options={"level": "gene", "n_control_cells": 1})
    assert list(by_gene.obs["perturbation"].astype(str)).count("control") == 1
    assert set(by_gene.obs["perturbation"]) == {"CCT2", "control"}
    everything = _load("replogle", path, tmp_path, select=False)
    assert everything.shape == (5, 3)


def test_float_counts_rejected_in_load_path(tmp_path):
    path = _write(tmp_path, "pbmc", np.full((3, 2), 0.5, np.float32), {"n_counts": [1.0, 1, 1]})
    with pytest.raises(InvalidCountsError, match="non-integer"):
        _load("pbmc_qc", path, tmp_path)


def test_missing_label_column_and_missing_controls(tmp_path):
    path = _write(tmp_path, "adamson_bad", np.ones((2, 2), np.float32), {"guide": ["a", "b"]})
    with pytest.raises(MissingKeyError, match="perturbation"):
        _load("adamson", path, tmp_path)
    obs = pd.DataFrame({"condition": ["KLF1", "SET"], "dataset": ["norman19"] * 2})
    with pytest.raises(UnknownControlError, match="no control cells"):
        standardize_dataset(_mem(obs), "norman_subset")


def test_counts_layer_missing_is_named(tmp_path):
    path = _write(
        tmp_path,
        "norman_nolayer",
        np.ones((2, 2), np.float32),
        {"guide_identity": ["NegCtrl0_NegCtrl0__NegCtrl0_NegCtrl0"] * 2},
    )
    with pytest.raises(MissingKeyError, match="counts"):
        _load("norman", path, tmp_path)


def test_every_manifest_normaliser_is_exercised():
    assert {e.normalizer for e in load_manifest().values()} == {
        "norman",
        "dixit",
        "adamson",
        "replogle",
        "canonical",
        None,
    }


def test_standardizing_twice_keeps_the_original_column(tmp_path):
    obs = pd.DataFrame({"perturbation": ["63(mod)_pBA580", "ATF6_pMJ1"]})
    once = standardize_dataset(_mem(obs), "adamson")
    twice = standardize_dataset(once, "adamson")
    assert list(twice.obs["perturbation_original"]) == ["63(mod)_pBA580", "ATF6_pMJ1"]
    assert list(twice.obs["perturbation"]) == ["control", "ATF6"]
