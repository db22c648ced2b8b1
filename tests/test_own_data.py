"""Own data: canonical labels everywhere, data.setup, load_dataset(path), backed files."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import cradlekit as ck
from cradlekit.data import canonicalize_labels, dosage_matrix, setup, split_combinations
from cradlekit.errors import InvalidCountsError, MissingKeyError, UnknownControlError

TARGETS = ["A", "B", "C", "D", "E", "F"]


def _screen(labels, *, n_genes=20, seed=0, key="guide") -> ad.AnnData:
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix(rng.poisson(2.0, size=(len(labels), n_genes)).astype(np.float32))
    obs = pd.DataFrame({key: labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"G{j}" for j in range(n_genes)]))


def _combination_screen(n_per=10) -> tuple[ad.AnnData, set[str]]:
    """Singles, and combinations written in both orders (half the cells 'A+B', half 'B+A')."""
    combos = [("A", "B"), ("C", "D"), ("E", "F"), ("A", "C"), ("B", "D"), ("A", "E"), ("C", "F"), ("B", "F")]
    labels = ["NT"] * n_per + [t for t in TARGETS for _ in range(n_per)]
    for a, b in combos:
        labels += [f"{a}+{b}"] * (n_per // 2) + [f"{b}+{a}"] * (n_per // 2)
    return _screen(labels), {f"{a}+{b}" for a, b in combos}


def test_canonicalize_each_case_with_the_cells_counted():
    labels = pd.Series([" A ", "B+A", "A+B", "A+A", "control+C", "control"])
    with pytest.warns(UserWarning) as record:
        out = canonicalize_labels(labels, control_label="control")
    assert out.tolist() == ["A", "A+B", "A+B", "A", "C", "control"]
    messages = " | ".join(str(w.message) for w in record)
    assert "repeated" in messages and "1 cells" in messages  # A+A
    assert "control inside a combination" in messages  # control+C
    with pytest.raises(ValueError, match="empty perturbation label"):  # "" is not the control
        ck.data.parse_perturbation("")
    for bad in (["A", "", "control"], ["A", None, "control", np.nan], ["A", "   ", "control"]):
        n_bad = sum(1 for x in bad if x is None or (isinstance(x, float)) or not str(x).strip())
        with pytest.raises(MissingKeyError, match=f"^{n_bad} of {len(bad)} cells have an empty or missing"):
            canonicalize_labels(pd.Series(bad, dtype=object))


def test_split_holds_out_combinations_whatever_their_member_order():
    adata, combos = _combination_screen()
    setup(adata, perturbation_key="guide", control_label="NT")
    split_combinations(adata, holdout_fraction=0.25, seed=0)
    heldout = set(adata.uns["split"]["heldout"])
    assert heldout <= combos and len(heldout) == 2
    guide = adata.obs["guide"].astype(str)
    for combo in heldout:  # both spellings of a held-out combination are test cells only
        a, b = combo.split("+")
        cells = guide.isin([f"{a}+{b}", f"{b}+{a}"])
        assert cells.sum() == 10 and (adata.obs.loc[cells, "split"] == "test").all()
    assert not (adata.obs.loc[adata.obs["split"] != "test", "perturbation"].isin(heldout)).any()


def test_dosage_ate_and_generation_requests_use_the_same_rule():
    adata, _ = _combination_screen()
    adata.obs["perturbation"] = adata.obs["guide"].replace({"NT": "control"})  # not canonical on purpose
    adata.uns["cradlekit"] = {"perturbation_key": "perturbation", "control_label": "control"}
    D, targets = dosage_matrix(adata)
    rows = pd.DataFrame(D, columns=targets, index=adata.obs["perturbation"].astype(str))
    pd.testing.assert_series_equal(rows.loc["A+B"].iloc[0], rows.loc["B+A"].iloc[0], check_names=False)
    # the data ATE pools 'A+B' and 'B+A' cells: its A+B row is the mean over all 10 of them
    ate = ck.evaluate.data_ate(adata, qc_passed_only=False, perturbations=["B+A", "C+D"])
    assert list(ate.obs_names) == ["A+B", "C+D"] and ate.obs.loc["A+B", "n_cells"] == 10
    X = np.asarray(adata.X.todense(), dtype=float)
    norm = np.log2(1e4 * X / X.sum(1, keepdims=True) + 1)
    labels = adata.obs["guide"].astype(str).to_numpy()
    expected = norm[np.isin(labels, ["A+B", "B+A"])].mean(0) - norm[labels == "NT"].mean(0)
    np.testing.assert_allclose(np.asarray(ate.X)[0], expected, rtol=1e-5, atol=1e-6)
    from cradlekit.model._output import requested_labels

    assert requested_labels({"control_label": "control"}, ["B + A", "control", "C"]) == ["A+B", "control", "C"]


def test_setup_records_keys_keeps_originals_and_checks_its_input():
    adata, _ = _combination_screen()
    adata.obs["perturbation"] = adata.obs["guide"]  # a user column called 'perturbation' is kept
    adata.obs["total_full"] = np.asarray(adata.X.sum(1)).ravel() * 10
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    setup(adata, perturbation_key="perturbation", control_label="NT", counts_layer="counts",
          qc_metrics={"total_counts": "total_full"}, batch_key=None)
    meta = adata.uns["cradlekit"]
    assert meta["perturbation_key"] == "perturbation" and meta["control_label"] == "control"
    assert meta["precomputed_qc"] == {"total_counts": "total_full"} and meta["source"]["control_label"] == "NT"
    assert (adata.obs["perturbation_original"] == adata.obs["guide"]).all()
    assert "X_before_setup" in adata.layers and (adata.X != adata.layers["counts"]).nnz == 0
    with pytest.raises(UnknownControlError, match="'non-targeting'"):
        setup(adata.copy(), perturbation_key="guide", control_label="non-targeting")
    with pytest.raises(MissingKeyError, match="'sgRNA' not found"):
        setup(adata.copy(), perturbation_key="sgRNA", control_label="NT")
    with pytest.raises(ValueError, match="unknown precomputed metric"):
        setup(adata.copy(), perturbation_key="guide", control_label="NT", qc_metrics={"total": "total_full"})
    bad = adata.copy()
    bad.X = bad.layers["X_before_setup"]
    with pytest.raises(InvalidCountsError, match="non-integer"):
        setup(bad, perturbation_key="guide", control_label="NT")


def test_load_dataset_reads_an_h5ad_path_and_backed_data_works_or_says_how(tmp_path):
    adata, _ = _combination_screen()
    path = tmp_path / "screen.h5ad"
    adata.write_h5ad(path)
    loaded = ck.data.load_dataset(str(path), perturbation_key="guide", control_label="NT")
    assert loaded.uns["cradlekit"]["perturbation_key"] == "perturbation" and loaded.n_obs == adata.n_obs
    assert loaded.uns["cradlekit"]["dataset"]["filename"] == "screen.h5ad"
    with pytest.raises(FileNotFoundError, match="no such .h5ad file"):
        ck.data.load_dataset(tmp_path / "missing.h5ad")
    with pytest.raises(MissingKeyError, match="path of an .h5ad file"):
        ck.data.load_dataset("not_a_dataset")
    backed = ad.read_h5ad(path, backed="r")
    try:  # QC and set-up read a backed matrix in chunks (issue 13); what needs it in memory says how
        setup(backed, perturbation_key="guide", control_label="NT")
        assert backed.uns["cradlekit"]["perturbation_key"] == "perturbation"
        with pytest.raises(InvalidCountsError, match=r"to_memory\(\)"):
            setup(backed, perturbation_key="guide", control_label="NT", copy=True)
    finally:
        backed.file.close()
