"""PerturbationExplorer: generation for seen, held-out and unmeasured perturbations; Figure 3; bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cradlekit as ck
from cradlekit.widgets import PerturbationExplorer, TrainingController
from cradlekit.widgets._messages import NO_MODEL, NOT_TRAINED


@pytest.fixture(scope="module")
def setup(single_thread):
    adata = ck.data.simulate_perturbseq(n_cells=500, n_genes=200, n_single=4, n_combinations=4,
                                        true_ate_cells=20, seed=0)  # fmt: skip
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    model = ck.PerturbationModel(adata, latent_dim=4, hidden_dim=8, num_particles=1)
    model.train(max_epochs=3, batch_size=128, progress_bar=False)
    return adata, model


def test_missing_or_untrained_model_and_empty_choice(setup):
    adata, model = setup
    pe = PerturbationExplorer(None, adata, perturbation="KLF1")
    assert pe.message == NO_MODEL and pe.generated is None
    untrained = ck.PerturbationModel(adata, latent_dim=4, hidden_dim=8, num_particles=1)
    pe = PerturbationExplorer(untrained, adata, perturbation="KLF1")
    assert pe.message == NOT_TRAINED and pe.generated is None
    pe = PerturbationExplorer(model, adata)
    assert pe.generate() is False and pe.message.startswith("Nothing selected")
    assert "Nothing selected" in pe.view.message.value and pe.view.image.widget.value  # placeholder figure


def test_seen_perturbation_against_the_data(setup):
    adata, model = setup
    pe = PerturbationExplorer(model, adata, perturbation="KLF1", n=40, top_n=8)
    assert pe.label == "KLF1" and pe.seen
    gen = pe.generated
    assert gen.n_obs == 80 and set(gen.obs["perturbation"].astype(str)) == {"control", "KLF1"}
    assert "artifact_k3" in gen.obs and not gen.obs["generated_artifact"].any()
    data_rate = ck.qc.pass_fraction(adata[adata.obs["perturbation"] == "KLF1"], 3)
    assert pe.qc_pass["data"] == pytest.approx(data_rate)
    assert 0.0 <= pe.qc_pass["generated"] <= 1.0
    top = pe.top_genes
    assert len(top) == 8 and list(top.columns) == ["model_ate", "data_ate"]
    assert np.all(np.diff(np.abs(top["model_ate"].to_numpy())) <= 0)  # sorted by |ATE|
    assert np.isfinite(top["data_ate"]).all()
    fig = pe.static_figure()
    assert "KLF1" in fig._suptitle.get_text()
    view = pe.view
    assert "KLF1" in view.summary.value and "seen in training" in view.summary.value
    top_html, baselines_html = view.genes.value.split("this perturbation beside the baselines")
    assert top_html.count("<tr>") == 9 and view.image.widget.value[:4] == b"\x89PNG"
    # the prediction beside the baselines: the model's row is its generated ATE scored against the data
    from cradlekit.widgets._baseline_comparison import baseline_comparison

    ate = ck.evaluate.model_ate(gen, perturbations=["KLF1"])
    expected = baseline_comparison(pd.Series(ate.X[0], index=ate.var_names), adata, "KLF1", artifact_key="artifact_k3")
    assert list(pe.baselines.index) == ["this model", *list(expected.index[1:])]
    np.testing.assert_allclose(pe.baselines.iloc[:, :3].to_numpy(float), expected.iloc[:, :3].to_numpy(float))
    assert "Baseline: additive" in baselines_html and "baselines" in pe.tables()

    pe.artifact = True  # regenerates with the artifact latent on
    assert pe.generated.obs["generated_artifact"].all() and "artifact on" in view.summary.value
    view.n.value = 20  # from the widget: runs in a background thread, busy meanwhile
    assert pe.wait_task(60) and not pe.busy
    assert pe.generated.n_obs == 40


def test_held_out_and_unmeasured_combinations(setup):
    adata, model = setup
    heldout = str(adata.uns["split"]["heldout"][0])
    a, b = heldout.split("+")
    pe = PerturbationExplorer(model, adata, perturbation=f"{b}+{a}", n=30)  # any order
    assert pe.label == heldout and not pe.seen
    assert np.isfinite(pe.qc_pass["data"]) and "not seen in training" in pe.message

    in_data = set(adata.obs["perturbation"].astype(str))
    targets = [str(t) for t in model.registry["targets"]]
    combos = [f"{x}+{y}" for i, x in enumerate(targets) for y in targets[i + 1 :]]
    unmeasured = next(c for c in combos if c not in in_data)
    pe.targets = list(reversed(unmeasured.split("+")))  # composed from the trained targets
    assert pe.perturbation == unmeasured and pe.label == unmeasured
    assert np.isnan(pe.qc_pass["data"]) and "no observed cells" in pe.message
    assert pe.top_genes["data_ate"].isna().all() and len(pe.top_genes) == pe.top_n
    fig = pe.static_figure()
    assert "no observed cells" in fig._suptitle.get_text()


def test_bad_input_keeps_the_last_result(setup):
    adata, model = setup
    pe = PerturbationExplorer(model, adata, perturbation="CEBPA", n=20)
    last = pe.generated
    pe.perturbation = "NOTAGENE"
    assert pe.message.startswith("Could not generate 'NOTAGENE': Unknown perturbation")
    assert pe.generated is last and pe.label == "CEBPA"
    pe.perturbation = "CEBPA"
    pe.k = 3.5  # not stored in adata.uns['qc']
    assert "not stored" in pe.message and pe.message_level == "error"
    assert pe.view.k.value is None  # the dropdown offers the stored k only
    pe.view.k.value = 4.0
    assert pe.wait_task(60)
    assert pe.k == 4.0 and "not stored" not in pe.message and "artifact_k4" in pe.generated.obs
    pe.perturbation = ""
    assert pe.message.startswith("Nothing selected")


def test_training_controller_as_model_source(setup, tmp_path):
    adata, _ = setup
    tc = TrainingController(adata, checkpoint_dir=tmp_path, latent_dim=4, hidden_dim=8, batch_size=128,
                            max_epochs=2, model_options={"num_particles": 1})  # fmt: skip
    pe = PerturbationExplorer(tc, adata, auto_update=False, perturbation="KLF1", n=10)
    assert pe.generate() is False and pe.message == NO_MODEL
    assert tc.start() and tc.wait(60) and tc.status == "finished"
    assert pe.generate() and pe.label == "KLF1" and pe.model is tc.model
