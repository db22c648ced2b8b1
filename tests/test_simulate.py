"""Tests of the Perturb-seq simulator (cradlekit.data.simulate)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cradlekit.data.perturbations import canonical_label, dosage_matrix, parse_perturbation, perturbation_info
from cradlekit.data.simulate import ARTIFACT_TYPES, DECOY_GENES, HB_GENES, MT_GENES, simulate_perturbseq, true_ate_frame


def _metrics(adata):
    X = adata.X
    total = np.asarray(X.sum(axis=1)).ravel()
    cls = adata.var["gene_class"].to_numpy()

    def pct(c):
        return 100 * np.asarray(X[:, np.flatnonzero(cls == c)].sum(axis=1)).ravel() / total

    return {"total": total, "n_genes": np.diff(X.indptr), "mt": pct("mt"), "ribo": pct("ribo"), "hb": pct("hb")}


def _log2_norm(X):
    X = X.toarray().astype(float)
    return np.log2(1e4 * X / X.sum(axis=1, keepdims=True) + 1)


def test_shapes_counts_and_gene_panel(small_simulation):
    a = small_simulation
    assert a.shape == (3000, 300)
    assert isinstance(a.X, sp.csr_matrix) and a.X.dtype in (np.int32, np.int64)
    assert a.X.data.min() > 0 and a.X.nnz > 0.2 * np.prod(a.shape)
    names = set(a.var_names)
    assert a.var_names.is_unique
    assert set(MT_GENES) <= names and len(MT_GENES) == 13
    assert set(HB_GENES) <= names and set(DECOY_GENES) <= names
    n_ribo = sum(n.startswith(("RPS", "RPL")) and not n.startswith("RPS6K") for n in names)
    assert 75 <= n_ribo <= 85
    assert (a.var.loc[list(DECOY_GENES), "gene_class"] == "decoy").all()
    sim = a.uns["simulation"]
    assert set(sim["targets"]) <= names
    assert a.obs["true_library_size"].gt(0).all()
    assert a.obsm["true_basal"].shape == (3000, 10)


def test_perturbation_labels_registered_and_canonical(small_simulation):
    a = small_simulation
    key, control = perturbation_info(a)
    assert (key, control) == ("perturbation", "control")
    labels = a.obs[key].astype(str)
    for lab in labels.unique():
        assert canonical_label(parse_perturbation(lab)) == lab
    counts = labels.value_counts()
    assert len(counts) == 1 + 12 + 16
    assert counts["control"] > 2 * counts.drop("control").mean()
    assert counts.drop("control").max() - counts.drop("control").min() <= 1
    P, targets = dosage_matrix(a)
    assert P.shape == (3000, 12) and set(targets) == set(a.uns["simulation"]["targets"])


def test_baseline_fractions_clean_cells(small_simulation):
    a = small_simulation
    m = _metrics(a)
    clean = ~a.obs["true_artifact"].to_numpy()
    assert 3 <= np.median(m["mt"][clean]) <= 8
    assert 15 <= np.median(m["ribo"][clean]) <= 30
    assert np.median(m["hb"][clean]) < 0.1
    assert (m["hb"][clean] == 0).mean() > 0.3  # MAD of hemoglobin % is 0: the QC guard is exercised
    assert 2000 <= np.median(m["total"][clean]) <= 5000


def test_artifact_truth_and_metric_shifts(small_simulation):
    a = small_simulation
    t = a.obs["true_artifact_type"].astype(str).to_numpy()
    assert set(t) == set(ARTIFACT_TYPES)
    np.testing.assert_array_equal(a.obs["true_artifact"].to_numpy(), t != "none")
    assert abs(a.obs["true_artifact"].mean() - 0.18) < 0.005
    m = _metrics(a)
    med = {ty: {k: np.median(v[t == ty]) for k, v in m.items()} for ty in ARTIFACT_TYPES}
    assert med["low_umi"]["total"] < 0.2 * med["none"]["total"]
    assert med["low_umi"]["n_genes"] < 0.6 * med["none"]["n_genes"]
    assert med["high_mito"]["mt"] > 2 * med["none"]["mt"]
    assert med["high_ribo"]["ribo"] > 1.4 * med["none"]["ribo"]
    assert med["high_hb"]["hb"] > 20 * np.quantile(m["hb"][t == "none"], 0.9) + 0.1
    assert 1.6 < med["doublet"]["total"] / med["none"]["total"] < 2.4
    # true library size tracks the observed totals
    assert np.corrcoef(np.log(m["total"]), np.log(a.obs["true_library_size"]))[0, 1] > 0.95


def test_artifacts_mostly_but_not_all_found_by_mad(small_simulation):
    """A plain 5-MAD rule on UMI/features/MT/RP finds most such artifacts but not all of them."""
    a = small_simulation
    t = a.obs["true_artifact_type"].astype(str).to_numpy()
    m = _metrics(a)
    flag = np.zeros(a.n_obs, dtype=bool)
    for name, side in (("total", -1), ("n_genes", -1), ("mt", 1), ("ribo", 1)):
        v = m[name]
        med, mad = np.median(v), np.median(np.abs(v - np.median(v)))
        flag |= (v < med - 5 * mad) if side < 0 else (v > med + 5 * mad)
    target = np.isin(t, ["low_umi", "high_mito", "high_ribo"])
    recall = flag[target].mean()
    assert 0.6 < recall < 0.99
    assert flag[t == "none"].mean() < 0.02


def test_combination_effects_are_sums_of_singles():
    a = simulate_perturbseq(n_cells=300, n_genes=200, true_ate_cells=20)
    sim = a.uns["simulation"]
    eff = dict(zip(sim["perturbations"], sim["perturbation_effects"], strict=True))
    single = dict(zip(sim["targets"], sim["target_effects"], strict=True))
    for combo in sim["combinations"]:
        x, y = parse_perturbation(combo)
        np.testing.assert_allclose(eff[combo], single[x] + single[y])
    np.testing.assert_array_equal(eff["control"], 0)
    masks = sim["target_masks"]
    np.testing.assert_array_equal(sim["target_effects"] != 0, masks)
    assert masks[~sim["target_is_null"]].any(axis=1).all() and not masks[sim["target_is_null"]].any()
    assert masks.mean() < 0.5  # sparse

    b = simulate_perturbseq(n_cells=300, n_genes=200, true_ate_cells=20, interaction_scale=0.5)
    sim = b.uns["simulation"]
    eff = dict(zip(sim["perturbations"], sim["perturbation_effects"], strict=True))
    single = dict(zip(sim["targets"], sim["target_effects"], strict=True))
    inter = sim["combination_interactions"]
    assert np.abs(inter).sum() > 0
    for j, combo in enumerate(sim["combinations"]):
        x, y = parse_perturbation(combo)
        np.testing.assert_allclose(eff[combo], single[x] + single[y] + inter[j])


def test_same_seed_identical_different_seed_differs():
    kw = dict(n_cells=600, n_genes=200, true_ate_cells=20, chunk_size=250)
    a, b, c = simulate_perturbseq(seed=3, **kw), simulate_perturbseq(seed=3, **kw), simulate_perturbseq(seed=4, **kw)
    assert (a.X != b.X).nnz == 0
    assert a.obs.equals(b.obs) and (a.var_names == b.var_names).all()
    np.testing.assert_array_equal(a.uns["simulation"]["true_ate"], b.uns["simulation"]["true_ate"])
    assert a.X.shape == c.X.shape and (a.X != c.X).nnz > 0


def test_chunking_keeps_cell_level_truth():
    kw = dict(n_cells=700, n_genes=200, true_ate_cells=20, seed=1)
    a, b = simulate_perturbseq(chunk_size=100, **kw), simulate_perturbseq(chunk_size=10_000, **kw)
    assert a.obs.equals(b.obs)
    np.testing.assert_allclose(a.obs["true_library_size"], b.obs["true_library_size"])
    ta, tb = (np.asarray(x.X.sum(axis=1)).ravel() for x in (a, b))
    assert abs(np.median(ta) / np.median(tb) - 1) < 0.1


def test_uns_roundtrip_h5ad(tmp_path):
    a = simulate_perturbseq(n_cells=400, n_genes=200, true_ate_cells=20)
    path = tmp_path / "sim.h5ad"
    a.write_h5ad(path)
    b = ad.read_h5ad(path)
    assert (a.X != b.X).nnz == 0
    assert b.uns["cradlekit"] == a.uns["cradlekit"]
    sa, sb = a.uns["simulation"], b.uns["simulation"]
    assert set(sa) == set(sb)
    assert sb["params"] == sa["params"]
    for key, value in sa.items():
        if key != "params":
            np.testing.assert_array_equal(np.asarray(sb[key]), np.asarray(value), err_msg=key)
    assert true_ate_frame(b).equals(true_ate_frame(a))
    assert b.obs["true_artifact_type"].astype(str).equals(a.obs["true_artifact_type"].astype(str))


def test_true_ate_shape_null_and_agreement_with_data():
    a = simulate_perturbseq(n_cells=6000, n_genes=300, true_ate_cells=400, artifact_rate=0.0, seed=2)
    sim = a.uns["simulation"]
    ate = true_ate_frame(a)
    assert ate.shape == (12 + 16, 300) and "control" not in ate.index
    assert list(ate.columns) == list(a.var_names)
    null = [t for t, n in zip(sim["targets"], sim["target_is_null"], strict=True) if n]
    assert len(null) == 1
    np.testing.assert_array_equal(ate.loc[null[0]].to_numpy(), 0.0)  # common random numbers: exactly 0
    # a combination with the null target has the same effect as its other target
    for combo in sim["combinations"]:
        x, y = parse_perturbation(combo)
        if null[0] in (x, y):
            other = y if x == null[0] else x
            np.testing.assert_allclose(ate.loc[combo], ate.loc[other])
    live = ate.drop(index=null[0])
    assert (live.abs().max(axis=1) > 0.1).all()
    # the truth agrees with the ATE measured on the simulated (artifact-free) cells
    Y = _log2_norm(a.X)
    labels = a.obs["perturbation"].astype(str).to_numpy()
    ctrl = Y[labels == "control"].mean(axis=0)
    emp = np.vstack([Y[labels == p].mean(axis=0) - ctrl for p in ate.index])
    r = np.corrcoef(emp.ravel(), ate.to_numpy().ravel())[0, 1]
    assert r > 0.85
    assert np.sign(emp.ravel()[np.abs(ate.to_numpy().ravel()) > 0.5]).tolist() == np.sign(
        ate.to_numpy().ravel()[np.abs(ate.to_numpy().ravel()) > 0.5]).tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_genes=100),
        dict(n_single=4, n_combinations=7),
        dict(artifact_mix={"bad_type": 1.0}),
        dict(artifact_rate=1.5),
        dict(n_null_targets=13),
    ],
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        simulate_perturbseq(n_cells=100, **kwargs)


def test_no_combinations_and_no_artifacts():
    a = simulate_perturbseq(n_cells=300, n_genes=200, n_combinations=0, artifact_rate=0.0, true_ate_cells=20)
    assert not a.obs["true_artifact"].any()
    assert len(a.uns["simulation"]["combinations"]) == 0
    assert a.obs["perturbation"].nunique() == 13


def test_cell_states_are_opt_in():
    """One state (the default) draws nothing extra; states shift z_b by their centres."""
    one = simulate_perturbseq(n_cells=600, n_genes=150, n_single=4, n_combinations=2, true_ate_cells=20, seed=3)
    also_one = simulate_perturbseq(n_cells=600, n_genes=150, n_single=4, n_combinations=2, true_ate_cells=20,
                                   seed=3, n_cell_states=1)
    assert "true_cell_state" not in one.obs and (one.X != also_one.X).nnz == 0
    three = simulate_perturbseq(n_cells=600, n_genes=150, n_single=4, n_combinations=2, true_ate_cells=20,
                                seed=3, n_cell_states=3, state_separation=3.0)
    z, state = three.obsm["true_basal"], three.obs["true_cell_state"].to_numpy()
    centres = np.stack([z[state == s].mean(0) for s in range(3)])
    # the centres are N(0, 9 I) draws; within a state z_b has unit variance, so the means of ~200
    # cells are within ~0.07 of their centres and far apart from each other
    assert np.linalg.norm(centres[0] - centres[1]) > 2.0 and np.linalg.norm(centres[1] - centres[2]) > 2.0
    assert np.allclose([z[state == s].std(0).mean() for s in range(3)], 1.0, atol=0.15)
    with pytest.raises(ValueError, match="n_cell_states"):
        simulate_perturbseq(n_cells=100, n_genes=150, n_cell_states=0)
