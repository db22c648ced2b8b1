"""data_ate / model_ate against hand-computed examples; QC filtering, splits, empty groups."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradlekit.errors import EmptyPerturbationError, InvalidCountsError, MissingKeyError, UnknownControlError
from cradlekit.evaluate import data_ate, model_ate

# Genes g0, g1, g2 and a filler gene F that brings every cell to 1e4 counts (one cell to 2e4 with
# all counts doubled), so the normalised value of a count c in g0..g2 is log2(c + 1):
# 0 → 0, 1 → 1, 3 → 2, 7 → 3, 15 → 4.
#                   g0  g1  g2  perturbation  a_i  split
CELLS = [
    ([1, 3, 0], "control", 0, "train"),
    ([3, 1, 0], "control", 0, "test"),
    ([9000, 0, 0], "control", 1, "train"),  # QC-failed: must be ignored
    ([7, 3, 1], "A", 0, "train"),
    ([15, 3, 3], "A", 0, "test"),  # stored doubled below (library 2e4)
    ([0, 9000, 0], "A", 1, "train"),  # QC-failed
    ([0, 15, 0], "B", 0, "train"),
    ([1, 1, 7], "A+B", 0, "train"),
    ([3, 3, 15], "A+B", 0, "train"),
    ([0, 0, 0], "A+B", 0, "test"),
    ([5, 5, 5], "D", 1, "train"),  # D has no QC-passed cell
]
GENES = ["g0", "g1", "g2", "F"]


def _counts() -> np.ndarray:
    g = np.array([c[0] for c in CELLS], dtype=np.int64)
    X = np.column_stack([g, 10_000 - g.sum(axis=1)])
    X[4] *= 2
    return X


def _filler(*rows: int) -> float:
    """Mean normalised value of the filler gene over the given cells (log2(F + 1), F per 1e4)."""
    return float(np.mean([np.log2(10_000 - sum(CELLS[r][0]) + 1) for r in rows]))


def make_adata(sparse: bool = True) -> ad.AnnData:
    X = _counts()
    adata = ad.AnnData(X=sp.csr_matrix(X) if sparse else X.astype(np.float32))
    adata.var_names = GENES
    adata.obs_names = [f"cell{i}" for i in range(len(CELLS))]
    adata.obs["perturbation"] = pd.Categorical([c[1] for c in CELLS])
    adata.obs["artifact_k3"] = np.array([c[2] for c in CELLS], dtype=np.uint8)
    adata.obs["split"] = [c[3] for c in CELLS]
    adata.uns["cradlekit"] = {"perturbation_key": "perturbation", "control_label": "control"}
    return adata


# QC-passed means: control g0 (1+2)/2 = 1.5, g1 1.5, g2 0.
# A: g0 (3+4)/2 = 3.5, g1 (2+2)/2 = 2, g2 (1+2)/2 = 1.5 → ATE 2, 0.5, 1.5
# B: g0 0, g1 4, g2 0 → ATE -1.5, 2.5, 0
# A+B: g0 (1+2+0)/3 = 1, g1 1, g2 (3+4+0)/3 = 7/3 → ATE -0.5, -0.5, 7/3
EXPECTED = {
    "A": [2.0, 0.5, 1.5, _filler(3, 4) - _filler(0, 1)],
    "A+B": [-0.5, -0.5, 7 / 3, _filler(7, 8, 9) - _filler(0, 1)],
    "B": [-1.5, 2.5, 0.0, _filler(6) - _filler(0, 1)],
}


@pytest.mark.parametrize("sparse", [True, False])
def test_data_ate_hand_computed_ignores_qc_failed(sparse):
    adata = make_adata(sparse)
    ate = data_ate(adata, perturbations=["A", "B", "A+B"])
    assert list(ate.obs_names) == ["A", "B", "A+B"]  # requested order
    assert list(ate.var_names) == GENES
    np.testing.assert_allclose(ate.X, [EXPECTED[p] for p in ate.obs_names], rtol=1e-12, atol=1e-12)
    assert ate.obs["n_cells"].tolist() == [2, 1, 3]
    assert ate.obs["n_cells_failed"].tolist() == [1, 0, 0]
    assert ate.uns["control"] == "control" and ate.uns["ate"]["n_control_cells"] == 2
    assert ate.uns["ate"]["source"] == "data" and ate.uns["ate"]["artifact_key"] == "artifact_k3"


def test_data_ate_all_cells_includes_failed():
    ate = data_ate(make_adata(), qc_passed_only=False, perturbations=["A"])
    # control g0 over all three cells: (1 + 2 + log2(9001)) / 3; A g0: (3 + 4 + 0) / 3
    # A g1: (2 + 2 + log2(9001)) / 3 minus control g1 (2 + 1 + 0) / 3
    expected_g0 = 7 / 3 - (3 + np.log2(9001)) / 3
    expected_g1 = (4 + np.log2(9001)) / 3 - 1.0
    np.testing.assert_allclose(ate.X[0, :2], [expected_g0, expected_g1], rtol=1e-12)


def test_data_ate_default_perturbations_empty_group_raises_or_skips():
    adata = make_adata()
    with pytest.raises(EmptyPerturbationError, match=r"\['D'\]"):
        data_ate(adata)  # default: every perturbation with a cell, D only has a failed one
    with pytest.warns(UserWarning, match=r"no cells passing QC: \['D'\]"):
        ate = data_ate(adata, on_empty="skip")
    assert list(ate.obs_names) == ["A", "A+B", "B"]  # sorted
    np.testing.assert_allclose(ate.X, [EXPECTED[p] for p in ate.obs_names], atol=1e-12)
    with pytest.raises(EmptyPerturbationError, match="'nope'"):
        data_ate(adata, perturbations=["A", "nope"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = data_ate(adata, qc_passed_only=False)  # D has a cell when QC is ignored
    assert "D" in full.obs_names


def test_data_ate_split_filter():
    adata = make_adata()
    ate = data_ate(adata, split="train", perturbations=["A", "A+B"])
    # train: control cell0 only (g0 1, g1 2, g2 0); A cell3 (3, 2, 1); A+B cells 7, 8 (1.5, 1.5, 3.5)
    np.testing.assert_allclose(ate.X[:, :3], [[2.0, 0.0, 1.0], [0.5, -0.5, 3.5]], atol=1e-12)
    assert ate.uns["ate"]["split"] == "train" and ate.uns["ate"]["n_control_cells"] == 1
    with pytest.raises(EmptyPerturbationError, match=r"split 'test' passing QC: \['B'\]"):
        data_ate(adata, split="test", perturbations=["A", "B"])
    both = data_ate(adata, split=["train", "test"], perturbations=["A"])
    np.testing.assert_allclose(both.X[0], EXPECTED["A"], atol=1e-12)


def test_data_ate_control_without_passed_cells_and_bad_inputs():
    adata = make_adata()
    adata.obs.loc[adata.obs["perturbation"] == "control", "artifact_k3"] = 1
    with pytest.raises(EmptyPerturbationError, match="control 'control' has no cells"):
        data_ate(adata, perturbations=["A"])
    adata = make_adata()
    with pytest.raises(MissingKeyError, match="artifact_k4.*label_artifacts"):
        data_ate(adata, artifact_key="artifact_k4")
    with pytest.raises(UnknownControlError):
        data_ate(adata, control_label="non-targeting")
    bad = make_adata(sparse=False)
    bad.X[3, 0] = 6.5
    with pytest.raises(InvalidCountsError, match="non-integer"):
        data_ate(bad, perturbations=["A"])


def test_data_ate_zero_total_cell():
    adata = make_adata()
    X = adata.X.toarray()
    X[8] = 0  # an A+B cell with no counts
    adata.X = sp.csr_matrix(X)
    with pytest.raises(InvalidCountsError, match=r"zero total.*cell8"):
        data_ate(adata, perturbations=["A+B"])
    ate = data_ate(adata, perturbations=["A+B"], zero_total="zero")  # kept as an all-zero cell
    np.testing.assert_allclose(ate.X[0, :3], [1 / 3 - 1.5, 1 / 3 - 1.5, 3 / 3], atol=1e-12)
    adata.obs.loc["cell8", "artifact_k3"] = 1  # a failed empty cell is never normalised
    assert data_ate(adata, perturbations=["A+B"]).obs["n_cells"].tolist() == [2]


def _generated(values: np.ndarray, labels: list[str]) -> ad.AnnData:
    gen = ad.AnnData(X=values, obs=pd.DataFrame({"perturbation": labels}, index=[f"g{i}" for i in range(len(labels))]))
    gen.var_names = ["x", "y"]
    return gen


def test_model_ate_expected_expression_normalized():
    # log2(x + 1): control [1, 2], [2, 1] → mean [1.5, 1.5]; A [3, 0], [4, 0] → [3.5, 0]; B [0, 4]
    values = np.array([[1, 3], [3, 1], [7, 0], [15, 0], [0, 15]], dtype=np.float32)
    gen = _generated(values, ["control", "control", "A", "A", "B"])
    ate = model_ate(gen, normalized=True)
    assert list(ate.obs_names) == ["A", "B"]
    np.testing.assert_allclose(ate.X, [[2.0, -1.5], [-1.5, 2.5]], atol=1e-6)
    assert ate.uns["ate"]["source"] == "model" and ate.uns["ate"]["normalization"] == "log2(x + 1)"
    assert ate.obs["n_cells"].tolist() == [2, 1] and ate.uns["ate"]["n_control_cells"] == 2
    # the same values as counts are rescaled to 1e4 per cell first: not the same numbers
    counts_ate = model_ate(gen, normalized=False)
    assert not np.allclose(counts_ate.X, ate.X)
    with pytest.raises(UnknownControlError):
        model_ate(gen, control_label="non-targeting")


def test_model_ate_on_counts_equals_data_ate_on_same_cells():
    adata = make_adata()
    keep = adata.obs["artifact_k3"].to_numpy() == 0
    gen = ad.AnnData(X=adata.X[keep], obs=adata.obs.loc[keep, ["perturbation"]].copy(), var=adata.var.copy())
    ate = model_ate(gen, perturbations=["A", "B", "A+B"])  # control label/key: defaults
    np.testing.assert_allclose(ate.X, [EXPECTED[p] for p in ["A", "B", "A+B"]], atol=1e-12)
    # expected expressions that already sum to 1e4: both options agree
    mean_values = gen.X.toarray().astype(np.float64)
    mean_values[3] /= 2  # the doubled cell, back to library 1e4
    expected = ad.AnnData(X=mean_values, obs=gen.obs.copy(), var=gen.var.copy())
    a = model_ate(expected, normalized=True, perturbations=["A"])
    b = model_ate(expected, normalized=False, perturbations=["A"])
    np.testing.assert_allclose(a.X, b.X, atol=1e-9)
    np.testing.assert_allclose(a.X[0], EXPECTED["A"], atol=1e-9)


def test_model_ate_reads_recorded_keys_and_empty_perturbation():
    values = np.array([[1, 3], [3, 1], [7, 0]], dtype=np.float32)
    gen = ad.AnnData(X=values, obs=pd.DataFrame({"cond": ["ctrl", "ctrl", "A"]}, index=["a", "b", "c"]))
    gen.uns["cradlekit"] = {"perturbation_key": "cond", "control_label": "ctrl"}
    assert model_ate(gen, normalized=True).obs_names.tolist() == ["A"]
    with pytest.raises(EmptyPerturbationError, match=r"among generated cells: \['B'\]"):
        model_ate(gen, normalized=True, perturbations=["A", "B"])
    with pytest.raises(EmptyPerturbationError, match="no perturbation other than the control"):
        model_ate(gen[:2].copy(), normalized=True)


def test_chunked_means_equal_single_pass(monkeypatch):
    import cradlekit.evaluate.ate as ate_module

    whole = data_ate(make_adata(), perturbations=["A", "B", "A+B"])
    monkeypatch.setattr(ate_module, "_CHUNK_ENTRIES", 8)  # 2 cells of 4 genes per chunk
    for sparse in (True, False):
        chunked = data_ate(make_adata(sparse), perturbations=["A", "B", "A+B"])
        np.testing.assert_allclose(chunked.X, whole.X, atol=1e-12)


def test_model_ate_warns_on_contradicting_generation_record(cradlekit_log):
    gen = _generated(np.array([[1, 3], [7, 0]], dtype=np.float32), ["control", "A"])
    gen.uns["generation"] = {"values": "counts", "artifact": True, "library_size": 1e4}
    with pytest.warns(UserWarning) as caught:
        model_ate(gen, normalized=True)
    texts = [str(w.message) for w in caught]
    assert sum("sampled counts: use normalized=False" in t for t in texts) == 1
    assert sum("artifact switched on" in t for t in texts) == 1
    assert all(w.filename == __file__ for w in caught)  # they point at the caller
    assert not [r for r in cradlekit_log.records if r.levelname == "WARNING"]  # and are not logged too


def test_ate_anndata_survives_h5ad(tmp_path):
    ate = data_ate(make_adata(), perturbations=["A", "B"], split=["train", "test"])
    ate.write_h5ad(tmp_path / "ate.h5ad")
    back = ad.read_h5ad(tmp_path / "ate.h5ad")
    np.testing.assert_array_equal(back.X, ate.X)
    assert back.uns["control"] == "control" and list(back.uns["ate"]["split"]) == ["train", "test"]
