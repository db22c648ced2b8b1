"""Per-criterion artifact latents through PerturbationModel (issue 19): the registry's criteria (skipped
ones get no latent), the batch columns against an independent computation, generation and rescue per
criterion, save/load and a resumed checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.evaluate import rescue_artifacts
from cradlekit.model import PerturbationModel
from cradlekit.model._setup import build_tensors
from cradlekit.qc import label_artifacts

SMALL = dict(latent_dim=6, hidden_dim=24, num_particles=1, artifact_latent="per_criterion")
FAST = dict(batch_size=128, lr=2e-3, progress_bar=False, accelerator="cpu", seed=0)
FIVE = ["total_counts", "n_genes", "mito", "ribo", "hb"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def prepared():
    """800 simulated cells, QC without scrublet (the doublet criterion is skipped), split, references."""
    adata = simulate_perturbseq(n_cells=800, n_genes=160, true_ate_cells=20, seed=5)
    with pytest.warns(UserWarning, match="doublet"):
        label_artifacts(adata, run_scrublet=False)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    return adata


@pytest.fixture(scope="module")
def trained(prepared):
    model = PerturbationModel(prepared.copy(), **SMALL)
    model.train(max_epochs=3, **FAST)
    return model


def test_registry_has_a_latent_for_each_criterion_qc_did_not_skip(prepared, trained):
    reg = trained.registry
    assert reg["artifact_criteria"] == FIVE  # doublet skipped: no latent
    assert reg["artifact_flag_keys"] == [f"qc_fail_{c}_k3" for c in FIVE]
    assert trained.module.artifact_criteria == tuple(FIVE) and trained.module.u_loc.shape == (5, 6)
    train = prepared.obs["split"].astype(str).eq("train").to_numpy()
    failed = train & prepared.obs["artifact_k3"].eq(1).to_numpy()
    assert sum(reg["artifact_patterns"].values()) == int(failed.sum())
    mito_only = failed & prepared.obs["qc_fail_mito_k3"].to_numpy()
    for c in FIVE:
        if c != "mito":
            mito_only &= ~prepared.obs[f"qc_fail_{c}_k3"].to_numpy()
    assert reg["artifact_patterns"].get("mito", 0) == int(mito_only.sum())


def test_batches_carry_the_flags_and_the_references_criteria_mix(prepared, trained):
    dense = build_tensors(prepared, trained.registry)["train"]
    rows = np.flatnonzero(prepared.obs["split"].astype(str).eq("train").to_numpy())
    flags = prepared.obs[[f"qc_fail_{c}_k3" for c in FIVE]].to_numpy().astype(np.float32)
    np.testing.assert_array_equal(dense["A_criteria"].numpy(), flags[rows])
    idx = prepared.obsm["cf_reference_idx"]
    expected = np.zeros((rows.size, 5), dtype=np.float32)
    for j, i in enumerate(rows):  # independent: cell by cell over its reference's failed cells
        if prepared.obs["cf_has_reference"].iloc[i] and prepared.obs["artifact_k3"].iloc[i] == 0:
            drawn = idx[i][idx[i] >= 0]
            expected[j] = flags[drawn].mean(axis=0)
    np.testing.assert_allclose(dense["A_cf"].numpy(), expected, rtol=1e-6)
    assert (expected.sum(1) >= 1.0 - 1e-6)[dense["cf_mask"].numpy()].all()  # every drawn cell failed something
    sparse = trained._datasets()["train"].take(np.arange(rows.size))
    for key in ("A_criteria", "A_cf"):
        torch.testing.assert_close(sparse[key], dense[key])


def test_flags_that_disagree_with_the_artifact_label_are_refused(prepared):
    bad = prepared.copy()
    cell = np.flatnonzero(bad.obs["artifact_k3"].eq(1).to_numpy())[0]
    for c in FIVE:
        bad.obs.iloc[cell, bad.obs.columns.get_loc(f"qc_fail_{c}_k3")] = False
    with pytest.raises(ValueError, match="disagrees with their criterion flags"):
        PerturbationModel(bad, **SMALL)


def test_generate_with_chosen_artifacts(trained):
    off = trained.predict_mean(["control"], n=30, seed=0)
    mito = trained.predict_mean(["control"], n=30, seed=0, artifacts=["mito"])
    none = trained.predict_mean(["control"], n=30, seed=0, artifacts=[])
    np.testing.assert_array_equal(none.X, off.X)
    assert not np.allclose(mito.X, off.X)
    assert mito.uns["generation"]["artifacts"] == ["mito"] and mito.obs["generated_artifact"].all()
    mixed = trained.generate(["control"], n=10, seed=0, artifact=True)  # failure patterns of the training mix
    assert mixed.n_obs == 10 and mixed.obs["generated_artifact"].all()
    with pytest.raises(ValueError, match="not both"):
        trained.generate(["control"], n=2, artifact=True, artifacts=["mito"])
    with pytest.raises(ValueError, match="no artifact latent for"):
        trained.generate(["control"], n=2, artifacts=["doublet"])


def test_single_u_model_refuses_criteria(prepared):
    single = PerturbationModel(prepared.copy(), latent_dim=6, hidden_dim=24, num_particles=1)
    assert "artifact_criteria" not in single.registry
    with pytest.raises(ValueError, match="one artifact latent"):
        single.generate(["control"], n=2, artifacts=["mito"])
    with pytest.raises(ValueError, match="one artifact latent"):
        rescue_artifacts(single, criteria=["mito"])


def test_rescue_switches_off_only_the_named_criteria(prepared, trained):
    obs = prepared.obs
    cells = list(obs.index[obs["qc_fail_mito_k3"].to_numpy()])
    out = rescue_artifacts(trained, prepared, criteria=["mito"], seed=0)
    assert list(out.obs["rescued_from"]) == cells  # by default, the cells that failed a named criterion
    assert out.uns["rescue"]["criteria_off"] == ["mito"]
    only = rescue_artifacts(trained, prepared, cells=cells, criteria=["mito"], seed=0).layers["expected"]
    every = rescue_artifacts(trained, prepared, cells=cells, seed=0).layers["expected"]
    others = obs.loc[cells, [f"qc_fail_{c}_k3" for c in FIVE if c != "mito"]].any(axis=1).to_numpy()
    np.testing.assert_allclose(only[~others], every[~others], rtol=1e-5)  # mito was their only artifact
    if others.any():
        assert not np.allclose(only[others], every[others])  # their other artifacts stay on
    with pytest.raises(ValueError, match="no artifact latent for"):
        rescue_artifacts(trained, prepared, criteria=["doublet"])
    assert trained.get_latent(prepared).shape == (prepared.n_obs, 6)


def test_save_load_round_trip(trained, tmp_path):
    trained.save(tmp_path / "m")
    loaded = PerturbationModel.load(tmp_path / "m")
    assert loaded.registry["artifact_patterns"] == trained.registry["artifact_patterns"]
    assert loaded.module.artifact_criteria == trained.module.artifact_criteria
    a = trained.predict_mean(["control"], n=8, seed=3, artifacts=["hb", "mito"]).X
    np.testing.assert_array_equal(loaded.predict_mean(["control"], n=8, seed=3, artifacts=["hb", "mito"]).X, a)
    np.testing.assert_array_equal(loaded.predict_mean(["control"], n=8, seed=3, artifact=True).X,
                                  trained.predict_mean(["control"], n=8, seed=3, artifact=True).X)


def test_a_resumed_checkpoint_continues_the_same_run(prepared, tmp_path):
    full = PerturbationModel(prepared.copy(), **SMALL)
    full.train(max_epochs=2, checkpoint_dir=tmp_path / "full", **FAST)
    first = PerturbationModel(prepared.copy(), **SMALL)
    first.train(max_epochs=1, checkpoint_dir=tmp_path / "cut", **FAST)
    resumed = PerturbationModel(prepared.copy(), **SMALL)
    resumed.train(max_epochs=2, checkpoint_dir=tmp_path / "cut", **FAST)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history]
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rescue_truth_row_of_a_run(prepared, trained):
    from cradlekit.evaluate import rescue_truth_row, rescue_truth_scores
    from cradlekit.experiments.grid import RunSpec
    from cradlekit.experiments.scoring_truth import score_rescue_truth

    row = score_rescue_truth(trained, prepared, RunSpec("cradle", 3, 0))
    failed = int(prepared.obs["artifact_k3"].eq(1).sum())
    assert row["rescue_truth_n"] == failed and -1 <= row["rescue_truth_corr"] <= 1
    again = rescue_truth_row(rescue_truth_scores(rescue_artifacts(trained, prepared, seed=0), prepared))
    assert row == again
    assert score_rescue_truth(trained, prepared.copy().__class__(prepared.X, obs=prepared.obs, var=prepared.var),
                              RunSpec("cradle", 3, 0)) == {}  # not a simulated screen: nothing


def test_perturbation_explorer_generates_the_chosen_artifacts(prepared, trained):
    from cradlekit.widgets import PerturbationExplorer

    pe = PerturbationExplorer(trained, prepared, n=20, run_scrublet=False, auto_update=False)
    assert list(pe.view.criteria_picker.options) == FIVE
    pe.view.criteria_picker.value = ("mito",)
    assert pe.artifacts == ["mito"]
    pe.perturbation = "control"
    assert pe.generate() and pe.generated.uns["generation"]["artifacts"] == ["mito"]


def test_artifact_gene_effects_has_a_row_per_criterion(prepared, trained):
    from cradlekit.evaluate import artifact_gene_effects

    effects = artifact_gene_effects(trained, n=20, seed=0)
    assert list(effects.index) == FIVE and list(effects.columns) == trained.registry["genes"]
    off = np.log2(1e4 * trained.predict_mean(["control"], n=20, seed=0).X / 1e4 + 1)
    on = np.log2(1e4 * trained.predict_mean(["control"], n=20, seed=0, artifacts=["hb"]).X / 1e4 + 1)
    np.testing.assert_allclose(effects.loc["hb"].to_numpy(), (on - off).mean(0), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="no artifact latent for"):
        artifact_gene_effects(trained, criteria=["doublet"])
