"""apply_thresholds uses a reference's stored thresholds; pass_fraction; h5ad round trip."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest

from cradlekit._keys import artifact_key, flag_key
from cradlekit.errors import MissingKeyError
from cradlekit.qc import apply_thresholds, label_artifacts, pass_fraction, qc_summary


@pytest.fixture
def reference(make_qc_adata):
    ref = make_qc_adata(n_cells=300, seed=0)
    ref.obs["doublet_call"] = False  # stands in for scrublet (tested elsewhere)
    label_artifacts(ref, precomputed={"predicted_doublet": "doublet_call"}, ks=(3, 4, 5))
    return ref


pytestmark = pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped:UserWarning")


def test_stored_thresholds_not_recomputed(reference, make_qc_adata):
    gen = make_qc_adata(n_cells=200, seed=1, lib_scale=0.25, mito_scale=3.0)
    recomputed = label_artifacts(gen, run_scrublet=False, copy=True)
    apply_thresholds(gen, reference, run_scrublet=False)
    thr = reference.uns["qc"]["thresholds"]
    for k in (3, 4, 5):
        low = thr[f"k{k}"]["total_counts"]["lower"]
        high = thr[f"k{k}"]["mito"]["upper"]
        obs = gen.obs
        np.testing.assert_array_equal(obs[flag_key("total_counts", k)], obs["total_counts"] < low)
        np.testing.assert_array_equal(obs[flag_key("mito", k)], obs["pct_counts_mt"] > high)
        # recomputing on the generated cells would pass most of them
        assert gen.obs[artifact_key(k)].sum() > recomputed.obs[artifact_key(k)].sum() + 100
    assert pass_fraction(gen, 3) < 0.2 < pass_fraction(recomputed, 3)
    assert gen.uns["qc"]["origin"] == "apply_thresholds"
    assert gen.uns["qc"]["thresholds"]["k3"]["mito"] == thr["k3"]["mito"]


def test_same_cells_give_same_labels(reference):
    again = reference.copy()
    for column in list(again.obs.columns):
        if column.startswith(("qc_fail_", "artifact_")):
            del again.obs[column]
    apply_thresholds(again, reference.uns["qc"], run_scrublet=False)
    for k in (3, 4, 5):
        np.testing.assert_array_equal(again.obs[artifact_key(k)], reference.obs[artifact_key(k)])
    np.testing.assert_array_equal(
        qc_summary(again).to_numpy(), qc_summary(reference).to_numpy()
    )


def test_round_trip_then_apply_subset_of_ks(reference, make_qc_adata, tmp_path):
    path = tmp_path / "reference.h5ad"
    reference.write_h5ad(path)
    stored = ad.read_h5ad(path).uns["qc"]
    gen = make_qc_adata(n_cells=150, seed=2, lib_scale=0.5)
    direct = apply_thresholds(gen, reference, run_scrublet=False, ks=(4,), copy=True)
    from_file = apply_thresholds(gen, stored, run_scrublet=False, ks=(4,), copy=True)
    np.testing.assert_array_equal(from_file.obs["artifact_k4"], direct.obs["artifact_k4"])
    assert "artifact_k3" not in from_file.obs and "artifact_k3" not in gen.obs  # copy=True
    assert 0.0 < pass_fraction(from_file, 4) < 1.0
    assert pass_fraction(from_file, 4) == pytest.approx(1 - from_file.obs["artifact_k4"].mean())
    with pytest.raises(MissingKeyError, match=r"k=\['3.5'\] not stored"):
        apply_thresholds(gen, stored, ks=(3.5,), run_scrublet=False)
    with pytest.raises(MissingKeyError, match="artifact_k3"):
        pass_fraction(from_file, 3)


def test_scrublet_runs_on_generated_cells(reference, make_qc_adata):
    gen = make_qc_adata(n_cells=80, seed=3)
    apply_thresholds(gen, reference, seed=0)
    assert "doublet" not in list(gen.uns["qc"]["skipped"])
    assert gen.uns["qc"]["scrublet"]["ran"] and gen.uns["qc"]["scrublet"]["random_state"] == 0
    np.testing.assert_array_equal(gen.obs["qc_fail_doublet_k3"], gen.obs["predicted_doublet"])


def test_reference_skips_stay_skipped(make_qc_adata):
    ref = make_qc_adata(n_cells=100, seed=0)
    ref = ref[:, ~ref.var_names.str.startswith("MT-")].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        label_artifacts(ref, run_scrublet=False)
    gen = make_qc_adata(n_cells=50, seed=4, mito_scale=50.0)  # has MT genes, very high %
    apply_thresholds(gen, ref, run_scrublet=False)
    assert not gen.obs["qc_fail_mito_k3"].any()
    assert {"mito", "doublet"} <= set(gen.uns["qc"]["skipped"])


def test_generated_without_reference_genes_warns(reference, make_qc_adata):
    gen = make_qc_adata(n_cells=50, seed=5)
    gen = gen[:, ~gen.var_names.str.startswith(("HB", "RP"))].copy()
    with pytest.warns(UserWarning, match=r"\['ribo', 'hb'\] were applied in the reference"):
        apply_thresholds(gen, reference, run_scrublet=False)
    assert not gen.obs["qc_fail_hb_k3"].any() and {"ribo", "hb"} <= set(gen.uns["qc"]["skipped"])


def test_missing_or_broken_record(make_qc_adata):
    gen = make_qc_adata(n_cells=40)
    with pytest.raises(MissingKeyError, match="run cradlekit.qc.label_artifacts first"):
        apply_thresholds(gen, make_qc_adata(n_cells=40))
    with pytest.raises(MissingKeyError, match=r"lacks \['thresholds'"):
        apply_thresholds(gen, {"ks": np.array([3.0]), "skipped": []})


def test_panel_basis_compares_generated_cells_like_with_like(shared_data_file):
    """Thresholds from full-transcriptome obs metrics would fail every panel-only cell."""
    import anndata as ad

    from cradlekit.data import load_dataset

    shared_data_file("perturbench_devel_norman19_mcfaline23_counts500.h5ad")
    reference = load_dataset("norman_subset")
    label_artifacts(reference, seed=0)  # uses obs ncounts/ngenes (full transcriptome)
    assert "panel" in reference.uns["qc"]
    # "generated" cells: the same counts, but only the 500 modelled genes and no obs metrics
    generated = ad.AnnData(X=reference.X.copy(), var=reference.var[[]].copy())
    apply_thresholds(generated, reference, run_scrublet=False)
    assert generated.uns["qc"]["basis"] == "panel"
    own = ad.AnnData(X=reference.X.copy(), var=reference.var[[]].copy())
    label_artifacts(own, precomputed=None, run_scrublet=False)
    for criterion in ("total_counts", "n_genes", "hb"):
        key = f"qc_fail_{criterion}_k3"
        np.testing.assert_array_equal(generated.obs[key], own.obs[key])

    naive = ad.AnnData(X=reference.X.copy(), var=reference.var[[]].copy())
    apply_thresholds(naive, reference, run_scrublet=False, basis="reference")
    assert naive.uns["qc"]["basis"] == "reference"
    assert naive.obs["qc_fail_total_counts_k3"].mean() > 0.9  # panel totals << transcriptome totals


def test_panel_basis_does_not_warn_about_criteria_the_panel_lacks(tmp_path):
    """%mito from obs, no MT gene in the panel: on the panel basis mito is skipped on both sides, silently."""
    import cradlekit as ck

    path = ck.data.write_example_screen(tmp_path / "screen.h5ad", n_cells=400, n_genes=150, seed=2)
    ref = ck.data.load_dataset(path, perturbation_key="guide", control_label="non-targeting",
                               qc_metrics=ck.data.EXAMPLE_QC_METRICS)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        label_artifacts(ref, run_scrublet=False)
    gen = ref[:60].copy()
    gen.obs = gen.obs[[]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_thresholds(gen, ref, run_scrublet=False)
    assert gen.uns["qc"]["basis"] == "panel" and "mito" in set(gen.uns["qc"]["skipped"])
    assert not any("were applied in the reference" in str(w.message) for w in caught)
