"""The objective arms of CRADLE-VAE (issue 10): the counterfactual term must matter.

Oracles: the counterfactual KL is measured with :meth:`CradleVAE.counterfactual_kl` (the exact
Gaussian KL of the guide's encodings, the same measurement for every variant, trained with J2 or
not) on validation cells of one simulated screen; seed noise is measured, not assumed, from two
training seeds per arm. Values measured on this machine (1 torch thread, 300 steps): J2 share of
the trained published objective 0.6-0.8 %, of the per-cell exact objective 0.2-0.3 %; validation
counterfactual KL 0.008-0.009 nats (published) vs 1.2-1.4 (w/o CF) vs 2.3-2.5 (per-cell exact); the
published J2 evaluated on the per-cell model: 17 % of its loss (the issue measured about half on a
longer-trained model).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import cradlekit as ck
from cradlekit.experiments.run_one import objective_diagnostics
from cradlekit.module import CradleVAE
from cradlekit.module.cradle import OBJECTIVES, resolve_objective

STEPS = 300


@pytest.fixture(scope="module")
def screen():
    adata = ck.data.simulate_perturbseq(
        n_cells=1500, n_genes=150, n_single=8, n_combinations=8, true_ate_cells=50, seed=0
    )
    with pytest.warns(UserWarning, match="doublet"):
        ck.qc.label_artifacts(adata, ks=(3,), run_scrublet=False)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata, artifact_key="artifact_k3")
    return adata


@pytest.fixture(scope="module")
def trained(screen, single_thread):
    out = {}
    for name, kw, seeds in (
        ("published", {"model": "cradle", "objective": "published"}, (0, 1)),  # the paper's objective
        ("wo_cf", {"model": "cradle_wo_cf", "objective": "published"}, (0, 1)),  # the published arm's ablation
        ("per_cell", {"model": "cradle", "objective": None}, (0,)),
    ):
        for seed in seeds:
            pm = ck.PerturbationModel(screen, latent_dim=8, hidden_dim=32, num_particles=1, **kw)
            pm.train(max_epochs=200, max_steps=STEPS, batch_size=512, lr=3e-3, seed=seed, patience=None,
                     accelerator="cpu", progress_bar=False)
            out[name, seed] = pm
    return out


def _val_kl(trained, key) -> np.ndarray:
    batch = trained["published", 0].minibatch(n=10_000, split="val")  # every validation cell, with references
    kl = trained[key].module.counterfactual_kl(batch).numpy()
    return kl[~np.isnan(kl)]


def test_objective_names_resolve_to_their_ingredients():
    assert resolve_objective("published") == ("published", True, True, 1.0)
    assert resolve_objective("exact") == ("exact", False, True, 512.0)
    assert resolve_objective("unweighted") == ("unweighted", False, False, 1.0)
    assert resolve_objective(None) == ("unweighted", False, False, 1.0)  # no ingredient on: the unweighted arm
    assert resolve_objective("exact", class_balanced=False)[0] == "custom"  # an explicit ingredient wins
    assert resolve_objective(None, published=True, class_balanced=True)[0] == "published"
    with pytest.raises(ValueError, match="objective must be one of"):
        resolve_objective("paper")
    assert set(OBJECTIVES) == {"published", "exact", "unweighted", "balanced"}
    assert resolve_objective("balanced") == ("balanced", False, True, 1.0)


def test_published_arm_is_the_papers_objective_and_the_default_is_unweighted(trained, screen):
    module = trained["published", 0].module
    assert isinstance(module, CradleVAE)
    assert (module.objective, module.published, module.class_balanced) == ("published", True, True)
    # the package default (chosen from converged evidence, results/default_objective.md)
    default = ck.PerturbationModel(screen, latent_dim=8, hidden_dim=32).module
    assert (default.objective, default.published, default.class_balanced, default.j2_cells_per_batch) == (
        "unweighted", False, False, 1.0)
    assert trained["wo_cf", 0].module.alpha == 0 and trained["wo_cf", 0].module.class_balanced  # follows its arm
    ablation = ck.PerturbationModel(screen, model="cradle_wo_cf", latent_dim=8, hidden_dim=32).module
    assert ablation.alpha == 0 and ablation.objective == "unweighted"  # by default, the default's ablation


def test_j2_carries_a_share_of_the_trained_objective(trained):
    """Published arm: J2 > 0.3 % of the trained loss (measured 0.6-0.8 %), and more than the per-cell
    exact weight leaves it (measured 0.2-0.3 %): J2 is on, and its weight shaped the encoder."""
    pub = [objective_diagnostics(trained["published", s])["j2_share"] for s in (0, 1)]
    per_cell = objective_diagnostics(trained["per_cell", 0])["j2_share"]
    assert min(pub) > 0.003, pub
    assert min(pub) > 1.5 * per_cell, (pub, per_cell)
    # Evaluated on the per-cell model, the published J2 would be a large part of its objective:
    # the weight the authors tuned alpha for is ~500x the per-cell one.
    pm = trained["per_cell", 0]
    batch = pm.minibatch(n=512, split="train", seed=0)
    loss_pc, parts_pc = pm.module.loss(batch)
    pm.module.published = True
    try:
        torch.manual_seed(0)
        loss_pub, parts_pub = pm.module.loss(batch)
    finally:
        pm.module.published = False
    assert float(parts_pub["j2"]) / float(loss_pub) > 0.1  # measured 0.17
    assert float(parts_pc["j2"]) / float(loss_pc) < 0.01


def test_without_cf_the_trained_model_differs_beyond_seed_noise(trained):
    """Counterfactual KL on validation cells: w/o CF vs the full model, against the spread between seeds."""
    means = {key: float(_val_kl(trained, key).mean()) for key in trained}
    gap = abs(np.mean([means["wo_cf", s] for s in (0, 1)]) - np.mean([means["published", s] for s in (0, 1)]))
    noise = max(abs(means["wo_cf", 0] - means["wo_cf", 1]), abs(means["published", 0] - means["published", 1]))
    assert gap > 3 * noise, (means, gap, noise)
    for seed in (0, 1):  # cell by cell, the same validation cells: a paired test per seed
        a, b = _val_kl(trained, ("published", seed)), _val_kl(trained, ("wo_cf", seed))
        assert a.shape == b.shape and a.size > 50
        assert stats.wilcoxon(a, b).pvalue < 1e-6 and np.median(b - a) > 0


def test_exact_arm_weighs_the_per_cell_kl_on_the_published_scale(screen):
    """exact = alpha x 512 x mean per-cell KL, so for a 512-cell batch it matches a sum over the batch."""
    pm = ck.PerturbationModel(screen, model="cradle", objective="exact", latent_dim=8, hidden_dim=32, num_particles=1)
    batch = pm.minibatch(n=512, split="train", seed=0)
    torch.manual_seed(3)
    _, guide_tr = pm.module.traces(batch, num_particles=1)
    out = guide_tr.nodes["_RETURN"]["value"]
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(out["ref_loc"], out["ref_scale"]),
        torch.distributions.Normal(out["cf_loc"], out["cf_scale"]),
    ).sum(-1)
    expected = 0.5 * float(torch.where(batch["cf_mask"].bool(), kl, 0.0).sum())  # alpha x sum over 512 cells
    torch.manual_seed(3)
    assert float(pm.module.loss(batch, num_particles=1)[1]["j2"]) == pytest.approx(expected, rel=1e-4)
    assert math.isclose(pm.module.j2_cells_per_batch, 512.0)
