"""End-to-end checks of PerturbationModel: effect recovery on simulated data, every model on real data.

* On :func:`cradlekit.data.simulate_perturbseq` data (known ground truth), CRADLE-VAE trained with a
  fixed seed recovers the treatment effects of **held-out** combinations (ATE Pearson r > 0.8) and
  its artifact-free generated cells pass the data's QC thresholds more often than the data cells.
* Every model of :data:`cradlekit.module.MODELS` trains and generates on the real Norman 2019 subset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cradlekit.data import (
    counterfactual_references,
    load_dataset,
    simulate_perturbseq,
    split_combinations,
    true_ate_frame,
)
from cradlekit.model import PerturbationModel
from cradlekit.module import MODELS
from cradlekit.qc import apply_thresholds, label_artifacts, pass_fraction

NORMAN_SUBSET_FILE = "perturbench_devel_norman19_mcfaline23_counts500.h5ad"


pytestmark = pytest.mark.usefixtures("single_thread")


def prepare(adata, **qc):
    """QC labels (k = 3, 4, 5), a combination split (25% held out) and CF references, in place."""
    label_artifacts(adata, **qc)
    split_combinations(adata, seed=0)
    counterfactual_references(adata, artifact_key="artifact_k3")
    return adata


def model_ate(mean_adata, perturbations) -> pd.DataFrame:
    """Mean of ``log2(x + 1)`` per perturbation minus the control's (the paper's metric space)."""
    logx = np.log2(mean_adata.X + 1.0)
    labels = mean_adata.obs["perturbation"].to_numpy()
    control = logx[labels == "control"].mean(0)
    return pd.DataFrame(
        np.stack([logx[labels == p].mean(0) - control for p in perturbations]),
        index=perturbations, columns=mean_adata.var_names,
    )


@pytest.mark.slow
def test_cradle_recovers_heldout_effects_and_generates_clean_cells():
    # 8,000 cells x 300 genes, 12 targets, 16 additive combinations (4 held out); full QC with scrublet
    adata = prepare(simulate_perturbseq(n_cells=8000, n_genes=300, true_ate_cells=1000, seed=0))
    truth = true_ate_frame(adata)
    heldout = [str(p) for p in adata.uns["split"]["heldout"]]
    assert len(heldout) == 4 and set(heldout) <= set(truth.index)

    # objective=None (per-cell exact J2, no class balancing): this checks the machinery's recovery of known
    # effects; under the published objective at this budget held-out r was 0.44 (measured when the default
    # changed), in line with results/norman_paper (class balancing and the summed J2 collapse z_b)
    model = PerturbationModel(adata, latent_dim=16, hidden_dim=128, num_particles=1, objective=None)
    # a small budget for CI: lr 1e-3 (the paper: 3e-4 over up to 2,000 epochs), batch 256, early stopping
    history = model.train(max_epochs=200, lr=1e-3, batch_size=256, patience=30, seed=0,
                          accelerator="cpu", progress_bar=False)
    assert history[-1]["train_loss"] < 0.95 * history[0]["train_loss"]

    perturbations = list(truth.index)
    ate = model_ate(model.predict_mean(["control", *perturbations], n=1000, seed=1), perturbations)
    r_heldout = np.corrcoef(ate.loc[heldout].to_numpy().ravel(), truth.loc[heldout].to_numpy().ravel())[0, 1]
    seen = [p for p in perturbations if p not in heldout]
    r_seen = np.corrcoef(ate.loc[seen].to_numpy().ravel(), truth.loc[seen].to_numpy().ravel())[0, 1]
    print(f"ATE Pearson r: held-out {r_heldout:.3f}, seen {r_seen:.3f}; best epoch {model.train_info['best_epoch']}")
    assert r_heldout > 0.8, r_heldout
    assert r_seen > 0.8, r_seen

    # QCPR: 100 generated cells per perturbation, judged by the data's stored k=3 thresholds
    generated = model.generate(["control", *perturbations], n=100, seed=2)
    apply_thresholds(generated, adata, ks=[3])
    with_artifact = model.generate(["control", *perturbations], n=100, seed=2, artifact=True)
    apply_thresholds(with_artifact, adata, ks=[3])
    qcpr, qcpr_data, qcpr_artifact = (
        pass_fraction(generated, 3),
        pass_fraction(adata, 3),
        pass_fraction(with_artifact, 3),
    )
    print(
        f"QC pass rate at k=3: generated {qcpr:.3f}, data {qcpr_data:.3f}, generated with artifact {qcpr_artifact:.3f}"
    )
    assert qcpr > qcpr_data
    assert qcpr_artifact < qcpr  # the artifact latent carries the QC failures


@pytest.fixture(scope="module")
def norman(shared_data_file):
    """The real Norman 2019 subset with precomputed full-transcriptome QC metrics, split and CF references."""
    adata = load_dataset("norman_subset", path=shared_data_file(NORMAN_SUBSET_FILE), download=False)
    return prepare(adata, precomputed=adata.uns["cradlekit"]["precomputed_qc"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_and_generates_on_norman(norman, name):
    model = PerturbationModel(norman, model=name, latent_dim=16, hidden_dim=64, num_particles=2)
    history = model.train(max_steps=40, lr=1e-3, batch_size=256, accelerator="cpu", progress_bar=False)
    assert np.isfinite([r["val_loss"] for r in history]).all()
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    reg = model.registry
    generatable = [p for p in map(str, norman.uns["split"]["heldout"]) if set(p.split("+")) <= set(reg["targets"])]
    labels = ["control", "KLF1", *([] if name == "svae_plus" else generatable)]
    cells = model.generate(labels, n=20, seed=0)
    assert cells.shape == (20 * len(labels), norman.n_vars) and list(cells.var_names) == list(norman.var_names)
    assert np.isfinite(cells.X.data).all() and cells.X.sum() > 0
    if model.module.has_artifact:
        assert model.generate("KLF1", n=5, artifact=True, seed=0).obs["generated_artifact"].all()
    mean = model.predict_mean(labels, n=10, seed=0)
    np.testing.assert_allclose(mean.X.sum(1), 1e4, rtol=1e-3)
