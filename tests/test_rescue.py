"""Artifact rescue (cradlekit.evaluate.rescue_artifacts) on a small CRADLE-VAE trained on simulated data.

The statistical checks use fixed seeds (data, training, rescue, scrublet). Measured at the time of
writing (3,000 cells x 200 genes, k = 3, 643 failed cells): pass rate of the failed cells 0 (stored
labels) / 0.05 (thresholds re-applied to them, scrublet rerun on the set); after rescue 0.39 at their
observed library sizes and 0.67 at the median library size of the QC-passed cells; the high-mito
cells' MT fraction drops from a median 0.17 to 0.07 (every cell lower).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.evaluate import rescue_artifacts
from cradlekit.evaluate.rescue import counterfactual_frequencies
from cradlekit.model import PerturbationModel
from cradlekit.module.generation import seeded
from cradlekit.qc import apply_thresholds, label_artifacts, pass_fraction

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(single_thread):
    """Simulated data (QC labels, split, CF references) and a small CRADLE-VAE trained on it (~30 s).

    ``objective=None`` (the per-cell exact J2, no class balancing): these tests check the rescue
    mechanism, and their thresholds were measured with it. Under the published objective at this small
    budget the rescued pass rate is 0.09 against 0.05 before (measured when the default changed):
    class balancing and the summed J2 collapse z_b (results/norman_paper/README.md)."""
    adata = simulate_perturbseq(n_cells=3000, n_genes=200, true_ate_cells=50, seed=0)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata, artifact_key="artifact_k3")
    model = PerturbationModel(adata, latent_dim=16, hidden_dim=128, num_particles=1, objective=None)
    model.train(max_epochs=300, lr=1e-3, batch_size=256, patience=30, seed=0, accelerator="cpu", progress_bar=False)
    return adata, model


@pytest.fixture(scope="module")
def rescued(trained):
    """All k = 3 failed cells rescued at their observed library sizes, judged by the data's thresholds."""
    adata, model = trained
    return rescue_artifacts(model, adata, qc_reference=adata, seed=0)


def _median_passed_library(adata) -> float:
    passed = adata.obs["artifact_k3"].to_numpy() == 0
    return float(np.median(np.asarray(adata.X[passed].sum(1)).ravel()))


def _mt_fraction(X, var_names) -> np.ndarray:
    mt = np.asarray([g.startswith("MT-") for g in var_names])
    X = sp.csr_matrix(X)
    return np.asarray(X[:, mt].sum(1)).ravel() / np.maximum(np.asarray(X.sum(1)).ravel(), 1)


@pytest.mark.slow
def test_output_layout(trained, rescued, tmp_path):
    adata, model = trained
    failed = adata.obs_names[adata.obs["artifact_k3"].to_numpy() == 1]
    assert rescued.shape == (len(failed), adata.n_vars)
    assert list(rescued.var_names) == model.registry["genes"]
    assert list(rescued.obs["rescued_from"]) == list(failed)
    assert list(rescued.obs_names) == [f"{c}-rescued" for c in failed]
    assert rescued.obs["rescue_encoded_artifact"].eq(1).all() and rescued.obs["rescue_sample"].eq(0).all()
    # the input's obs is carried over; the observed cells' QC labels are renamed, new ones written
    np.testing.assert_array_equal(
        rescued.obs["perturbation"].astype(str), adata.obs.loc[failed, "perturbation"].astype(str)
    )
    assert rescued.obs["observed_artifact_k3"].eq(1).all()
    np.testing.assert_allclose(rescued.obs["observed_total_counts"], adata.obs.loc[failed, "total_counts"])
    assert "artifact_k3" in rescued.obs and rescued.uns["qc"]["origin"] == "apply_thresholds"
    # counts are NB samples around the expected expression, whose rows sum to the observed library sizes
    X = rescued.X.toarray()
    assert sp.issparse(rescued.X) and np.all(X >= 0) and np.array_equal(X, np.round(X))
    expected = rescued.layers["expected"]
    library = np.asarray(adata[failed].X.sum(1)).ravel()
    np.testing.assert_allclose(expected.sum(1), library, rtol=1e-4)
    np.testing.assert_allclose(rescued.obs["rescue_library_size"], library)
    assert np.corrcoef(X.sum(1), library)[0, 1] > 0.95
    info = rescued.uns["rescue"]
    assert info["model"] == "cradle" and info["n_cells"] == len(failed) and info["library_size"] == "observed"
    assert info["qc"]["pass_rate_before"]["k3"] == 0.0 and info["qc"]["model_k"] == 3.0
    rescued.write_h5ad(tmp_path / "rescued.h5ad")  # everything it stores is writable


@pytest.mark.slow
def test_rescued_cells_pass_qc_much_more_often(trained, rescued):
    adata, model = trained
    qc = rescued.uns["rescue"]["qc"]
    before, before_again, after = (
        qc[k]["k3"] for k in ("pass_rate_before", "pass_rate_before_reapplied", "pass_rate_after")
    )
    assert after == pass_fraction(rescued, 3)

    # control: the same cells encoded and decoded with the artifact ON (plain reconstruction)
    failed = adata[adata.obs["artifact_k3"].to_numpy() == 1]
    X = torch.from_numpy(failed.X.toarray().astype(np.float32))
    D = torch.from_numpy(np.asarray(_dosage(model, failed)))
    with seeded(0, X.device):
        rho = counterfactual_frequencies(model.module, X, D, torch.ones(len(X)), 1.0)
        recon = model.module.decoder.sample(rho, X.sum(1)).numpy()
    recon_adata = rescued.copy()
    recon_adata.X = sp.csr_matrix(recon)
    apply_thresholds(recon_adata, adata, ks=[3])
    reconstruction = pass_fraction(recon_adata, 3)

    # at the median library size of QC-passed cells the low-depth failures are placed at a typical depth too
    fixed = rescue_artifacts(model, adata, qc_reference=adata, seed=0, library_size=_median_passed_library(adata))
    after_fixed = fixed.uns["rescue"]["qc"]["pass_rate_after"]["k3"]
    print(
        f"k=3 pass rate of {len(failed)} failed cells: before {before:.3f} (re-applied {before_again:.3f}), "
        f"artifact-on reconstruction {reconstruction:.3f}, rescued at observed library {after:.3f}, "
        f"rescued at median library {after_fixed:.3f}"
    )
    assert before == 0.0 and before_again < 0.1
    assert after > before_again + 0.2  # measured 0.39 vs 0.05
    assert after > reconstruction + 0.1  # switching z_a off, not re-sampling, makes the difference (0.39 vs 0.19)
    assert after_fixed >= 0.5 and after_fixed > before_again + 0.3  # measured 0.67

    # per criterion: composition failures are rescued; depth failures are not at the observed depth
    by = qc["by_criterion"]["k3"]
    print({c: round(v["fail_after"], 2) for c, v in by.items()})
    assert max(by[c]["fail_after"] for c in ("mito", "ribo", "hb")) < 0.6  # 0.38, 0.35, 0.36
    assert by["total_counts"]["fail_after"] > 0.9  # the library size is an input, not part of the artifact
    assert fixed.uns["rescue"]["qc"]["by_criterion"]["k3"]["total_counts"]["fail_after"] < 0.5


def _dosage(model, adata):
    from cradlekit.model._setup import cell_batches

    return torch.cat([b["D"] for b in cell_batches(adata, model.registry, 4096)]).numpy()


@pytest.mark.slow
def test_high_mito_cells_lose_mitochondrial_reads(rescued):
    high_mito = rescued.obs["true_artifact_type"].astype(str).to_numpy() == "high_mito"
    assert high_mito.sum() >= 50
    before = rescued.obs["observed_pct_counts_mt"].to_numpy()[high_mito] / 100
    after = _mt_fraction(rescued.X, rescued.var_names)[high_mito]
    expected = _mt_fraction(rescued.layers["expected"], rescued.var_names)[high_mito]
    print(f"high-mito cells: median MT fraction {np.median(before):.3f} observed -> {np.median(after):.3f} rescued")
    assert np.mean(after < before) > 0.9
    assert np.median(after) < 0.6 * np.median(before)
    assert np.mean(expected < before) > 0.9
    np.testing.assert_allclose(rescued.obs["pct_counts_mt"].to_numpy()[high_mito] / 100, after, rtol=1e-6)


@pytest.mark.slow
def test_seeded_and_deterministic(trained):
    adata, model = trained
    cells = adata.obs_names[adata.obs["artifact_k3"].to_numpy() == 1][:40]
    state = torch.random.get_rng_state()
    a = rescue_artifacts(model, adata, cells=cells, seed=3, n_samples=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    b = rescue_artifacts(model, adata, cells=cells, seed=3, n_samples=2)
    c = rescue_artifacts(model, adata, cells=cells, seed=4, n_samples=2)
    assert (a.X != b.X).nnz == 0 and np.array_equal(a.layers["expected"], b.layers["expected"])
    assert not np.array_equal(a.layers["expected"], c.layers["expected"])
    # the two samples of a cell are different posterior draws at the same library size
    assert a.n_obs == 80 and list(a.obs["rescue_sample"][:4]) == [0, 1, 0, 1]
    assert list(a.obs_names[:2]) == [f"{cells[0]}-rescued0", f"{cells[0]}-rescued1"]
    assert not np.array_equal(a.layers["expected"][0], a.layers["expected"][1])
    np.testing.assert_allclose(a.layers["expected"][0].sum(), a.layers["expected"][1].sum(), rtol=1e-4)
    # batching only changes the order of the draws, not their distribution; same batch size, same result
    d = rescue_artifacts(model, adata, cells=cells, seed=3, n_samples=2, batch_size=16)
    e = rescue_artifacts(model, adata, cells=cells, seed=3, n_samples=2, batch_size=16)
    assert np.array_equal(d.layers["expected"], e.layers["expected"])


@pytest.mark.slow
def test_cell_subsets(trained, cradlekit_log):
    adata, model = trained
    failed = np.flatnonzero(adata.obs["artifact_k3"].to_numpy() == 1)[:5]
    passed = np.flatnonzero(adata.obs["artifact_k3"].to_numpy() == 0)[:3]
    names = adata.obs_names[failed]
    by_name = rescue_artifacts(model, adata, cells=list(names), seed=1)
    by_position = rescue_artifacts(model, adata, cells=failed, seed=1)
    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[failed] = True
    by_mask = rescue_artifacts(model, adata, cells=mask, seed=1)
    assert list(by_name.obs["rescued_from"]) == list(names)
    for other in (by_position, by_mask):
        assert np.array_equal(other.layers["expected"], by_name.layers["expected"])
    # a QC-passed cell is encoded with its own label (a_i = 0) and only reconstructed, with a warning
    mixed = rescue_artifacts(model, adata, cells=np.r_[failed, passed], seed=1)
    assert list(mixed.obs["rescue_encoded_artifact"]) == [1] * 5 + [0] * 3
    assert "only reconstructed" in cradlekit_log.text
    with pytest.raises(KeyError, match="not in adata.obs_names"):
        rescue_artifacts(model, adata, cells=["no-such-cell"])
    with pytest.raises(ValueError, match="no cells to rescue"):
        rescue_artifacts(model, adata, cells=np.zeros(adata.n_obs, dtype=bool))
    with pytest.raises(ValueError, match="library_size"):
        rescue_artifacts(model, adata, cells=failed, library_size="median")
    with pytest.raises(ValueError, match="qc_options"):
        rescue_artifacts(model, adata, cells=failed, qc_reference=adata, qc_options={"layer": "counts"})


@pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped")
def test_models_without_artifact_latent_are_rejected():
    adata = simulate_perturbseq(n_cells=600, n_genes=160, true_ate_cells=20, seed=1)
    label_artifacts(adata, run_scrublet=False)
    split_combinations(adata, seed=0)
    model = PerturbationModel(adata, model="sams_vae", latent_dim=4, hidden_dim=16, num_particles=1)
    with pytest.raises(ValueError, match="artifact latent"):
        rescue_artifacts(model, adata)


@pytest.mark.slow
def test_qc_leaves_torch_threads_alone(trained):
    adata, model = trained
    cells = adata.obs_names[adata.obs["artifact_k3"].to_numpy() == 1][:60]
    assert torch.get_num_threads() == 1
    rescue_artifacts(model, adata, cells=cells, qc_reference=adata, seed=0)
    assert torch.get_num_threads() == 1


def test_default_selection_skips_cells_the_model_cannot_encode(trained, cradlekit_log):
    from cradlekit.errors import UnknownPerturbationError

    adata, model = trained
    other = adata.copy()
    failed = np.flatnonzero(other.obs["artifact_k3"].to_numpy() == 1)
    labels = other.obs["perturbation"].astype(str).to_numpy()
    labels[failed[:4]] = "NOTTRAINED"  # e.g. a held-out combination with a gene never seen alone
    other.obs["perturbation"] = labels
    out = rescue_artifacts(model, other, seed=0)
    assert out.n_obs == failed.size - 4
    assert not set(other.obs_names[failed[:4]]) & set(out.obs["rescued_from"])
    assert "skipping 4 QC-failed cells of ['NOTTRAINED']" in cradlekit_log.text
    with pytest.raises(UnknownPerturbationError, match="NOTTRAINED"):  # cells asked for by name still raise
        rescue_artifacts(model, other, cells=failed[:4], seed=0)
