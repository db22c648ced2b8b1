"""PerturbationModel: setup checks, reproducible training, resume, NaN, generation, save/load."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import scipy.sparse as sp
import torch
from pyro.infer.util import is_validation_enabled

from cradlekit._validation import check_raw_counts
from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.errors import (
    EmptyPerturbationError,
    GeneMismatchError,
    InvalidCountsError,
    MissingKeyError,
    NonFiniteLossError,
    UnknownPerturbationError,
)
from cradlekit.model import PerturbationModel
from cradlekit.qc import label_artifacts

SMALL = dict(latent_dim=10, hidden_dim=64, num_particles=1)
FAST = dict(batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def prepared():
    """A small simulated Perturb-seq with QC labels, a combination split and CF references."""
    adata = simulate_perturbseq(n_cells=1200, n_genes=160, true_ate_cells=50, seed=3)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    return adata


@pytest.fixture
def adata(prepared):
    return prepared.copy()


def _all(data):
    """Every cell of a batch source as one dense batch (small test data only)."""
    return data.take(np.arange(len(data)))


def _state(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ setup
def test_setup_registry_and_tensors(adata):
    model = PerturbationModel(adata, **SMALL)
    reg = model.registry
    assert reg["genes"] == list(adata.var_names)
    assert reg["targets"] == sorted(reg["targets"]) and "KLF1" in reg["targets"]
    assert reg["control_label"] == "control" and reg["cf_layer"] == "cf_reference"
    is_train = (adata.obs["split"] == "train").to_numpy()
    assert reg["n_train"] == int(is_train.sum())
    train = _all(model._datasets()["train"])
    assert set(train) == {"X", "D", "A", "X_cf", "cf_mask"}
    assert train["X"].dtype == torch.float32 and train["X"].shape == (reg["n_train"], adata.n_vars)
    np.testing.assert_array_equal(train["X"].numpy(), adata.X[is_train].toarray())
    assert reg["n_obs_per_perturbation"] == train["D"].sum(0).int().tolist()
    assert not bool((train["cf_mask"] & (train["A"] == 1)).any())  # failed cells never carry J2
    mean = np.log1p(adata.X[is_train].toarray()).mean(0)
    np.testing.assert_allclose(model.module.normalize.mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    assert "not trained" in repr(model)


def test_minibatch_is_a_seeded_sample_of_the_training_tensors(adata):
    model = PerturbationModel(adata, **SMALL)
    train = _all(model._datasets()["train"])
    batch = model.minibatch(32, seed=1)
    assert set(batch) == set(train) and batch["X"].shape == (32, adata.n_vars)
    rows = [int(torch.nonzero((train["X"] == x).all(1))[0]) for x in batch["X"][:5]]
    assert all(torch.equal(train["D"][r], d) for r, d in zip(rows, batch["D"][:5], strict=True))  # rows stay aligned
    assert torch.equal(model.minibatch(32, seed=1)["X"], batch["X"])
    assert not torch.equal(model.minibatch(32, seed=2)["X"], batch["X"])
    assert model.minibatch(10_000, split="val")["X"].shape[0] == model.registry["n_val"]
    loss, parts = model.module.loss(batch)  # what a training step computes on it
    assert torch.isfinite(loss) and "j2" in {k.lower() for k in parts}
    with pytest.raises(ValueError, match="no 'test' cells"):
        model.minibatch(8, split="test")


def test_setup_rejects_missing_keys_and_bad_counts(adata):
    bad = adata.copy()
    del bad.obs["artifact_k3"]
    with pytest.raises(MissingKeyError, match=r"artifact_k3.*cradlekit\.qc\.label_artifacts"):
        PerturbationModel(bad, **SMALL)
    bad = adata.copy()
    del bad.obs["split"]
    with pytest.raises(MissingKeyError, match=r"'split'.*split_combinations"):
        PerturbationModel(bad, **SMALL)
    bad = adata.copy()
    del bad.uns["cf_reference_table"]
    with pytest.raises(MissingKeyError, match="counterfactual_references"):
        PerturbationModel(bad, **SMALL)
    PerturbationModel(bad, model="cradle_wo_cf", **SMALL)  # no J2, no references needed
    bad = adata.copy()
    bad.X = bad.X.astype(np.float32) * 1.5
    with pytest.raises(InvalidCountsError, match="non-integer"):
        PerturbationModel(bad, **SMALL)
    bad = adata.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data[0] = np.nan
    with pytest.raises(InvalidCountsError, match="NaN"):
        PerturbationModel(bad, **SMALL)
    bad = adata.copy()
    bad.obs["artifact_k3"] = bad.obs["artifact_k3"].astype(float)
    bad.obs.iloc[0, bad.obs.columns.get_loc("artifact_k3")] = np.nan
    with pytest.raises(MissingKeyError, match="missing values"):
        PerturbationModel(bad, **SMALL)
    with pytest.raises(ValueError, match="CRADLE-VAE models only"):
        PerturbationModel(adata, model="cvae", alpha=0.5, **SMALL)
    with pytest.raises(ValueError, match="unknown model"):
        PerturbationModel(adata, model="scgen", **SMALL)


def test_setup_rejects_perturbations_without_training_cells(adata):
    bad = adata.copy()
    klf1 = (bad.obs["perturbation"] == "KLF1").to_numpy()
    bad.obs["split"] = bad.obs["split"].astype(str)
    bad.obs.loc[klf1, "split"] = "val"  # KLF1 cells exist, but none in train
    with pytest.raises(EmptyPerturbationError, match=r"validation cells but no training cells: \['KLF1'\]"):
        PerturbationModel(bad, **SMALL)
    bad = adata.copy()
    bad.obs["split"] = bad.obs["split"].astype(str)
    bad.obs.loc[(bad.obs["perturbation"] == "control").to_numpy(), "split"] = "test"
    with pytest.raises(EmptyPerturbationError, match="no control cells"):
        PerturbationModel(bad, **SMALL)


def test_baselines_need_no_qc_labels(adata):
    bare = adata.copy()
    del bare.obs["artifact_k3"], bare.uns["cf_reference_table"]
    model = PerturbationModel(bare, model="sams_vae", **SMALL)
    assert set(model.minibatch(4)) == {"X", "D"}


# ------------------------------------------------------------------ training
def test_same_seed_same_weights_and_different_seed_differs(adata):
    runs = []
    for seed in (0, 0, 1):
        model = PerturbationModel(adata, **SMALL)
        history = model.train(max_epochs=2, seed=seed, **FAST)
        runs.append((_state(model), [r["val_loss"] for r in history]))
    assert _same_state(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not _same_state(runs[0][0], runs[2][0])
    # the seed also fixes the initial weights, independently of the global RNG
    torch.manual_seed(999)
    a = PerturbationModel(adata, **SMALL)._build_module(5).state_dict()
    b = PerturbationModel(adata, **SMALL)._build_module(5).state_dict()
    assert _same_state(a, b)


def test_kill_and_resume_matches_uninterrupted_run(adata, tmp_path):
    full = PerturbationModel(adata, **SMALL)
    full.train(max_epochs=4, checkpoint_dir=tmp_path / "full", **FAST)

    def kill(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        PerturbationModel(adata, **SMALL).train(max_epochs=4, checkpoint_dir=tmp_path / "cut", callbacks=[kill], **FAST)
    assert is_validation_enabled()  # pyro validation restored after the interruption
    resumed = PerturbationModel(adata, **SMALL)  # a fresh process would start from here
    history = resumed.train(max_epochs=4, checkpoint_dir=tmp_path / "cut", resume=True, **FAST)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["val_loss"] == full.history[-1]["val_loss"]
    assert _same_state(_state(full), _state(resumed))


def test_nan_loss_names_the_step(adata):
    model = PerturbationModel(adata, **SMALL)
    steps_per_epoch = -(-model.registry["n_train"] // FAST["batch_size"])

    def corrupt(record):
        if record["epoch"] == 1:
            with torch.no_grad():
                model.module.decoder.out.bias.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=rf"epoch 2, step {steps_per_epoch + 1}\b"):
        model.train(max_epochs=3, callbacks=[corrupt], **FAST)
    assert is_validation_enabled()


def test_callbacks_request_stop_and_train_info(adata):
    model = PerturbationModel(adata, **SMALL)
    seen = []

    class Widget:
        def on_train_start(self, trainer):
            seen.append("start")

        def on_epoch_end(self, trainer, record):
            seen.append((record["epoch"], record["train_loss"], record["val_loss"]))
            if record["epoch"] == 2:
                model.request_stop()

        def on_train_end(self, trainer):
            seen.append("end")

    history = model.train(max_epochs=50, callbacks=[Widget()], **FAST)
    assert len(history) == 2 and seen[0] == "start" and seen[-1] == "end"
    assert all(np.isfinite(v) for _, *vals in seen[1:-1] for v in vals)
    assert model.train_info["device"] == "cpu" and model.train_info["epochs"] == 2
    data_before = model._device_data[1]
    model.train(max_epochs=1, **FAST)  # continues; the device data is reused, not rebuilt
    assert model._device_data[1] is data_before
    model.request_stop()  # nothing running: a no-op


# ------------------------------------------------------------------ generation
@pytest.fixture(scope="module")
def trained(prepared):
    model = PerturbationModel(prepared.copy(), **SMALL)
    model.train(max_epochs=3, **FAST)
    return model


def test_generate_labels_outputs_and_seeds(trained, prepared, tmp_path):
    held = list(prepared.uns["split"]["heldout"])
    known = [h for h in held if set(h.split("+")) <= set(trained.registry["targets"])]
    assert known, "the split should hold out combinations of trained targets"
    unseen = known[0]
    a, b = unseen.split("+")
    out = trained.generate(["control", "KLF1", f"{b}+{a}"], n=7, seed=0)
    assert out.shape == (21, prepared.n_vars) and sp.issparse(out.X)
    assert list(out.var_names) == list(prepared.var_names)
    assert list(out.obs["perturbation"].cat.categories) == ["control", "KLF1", unseen]  # canonical order
    assert not out.obs["generated_artifact"].any()
    check_raw_counts(out.X)
    assert out.uns["generation"]["model"] == "cradle" and out.uns["generation"]["seed"] == 0
    assert out.uns["cradlekit"]["control_label"] == "control"
    out.write_h5ad(tmp_path / "generated.h5ad")  # plain types only
    again = trained.generate(["control", "KLF1", unseen], n=7, seed=0)
    np.testing.assert_array_equal(out.X.toarray(), again.X.toarray())
    assert trained.generate("KLF1", n=3, artifact=True, seed=1).obs["generated_artifact"].all()
    mean = trained.predict_mean(["control", "KLF1"], n=50, seed=0)
    assert isinstance(mean.X, np.ndarray) and np.allclose(mean.X.sum(1), 1e4, rtol=1e-4)
    assert trained.predict_mean(None, n=2).obs["perturbation"].nunique() == len(
        trained.registry["trained_perturbations"]
    )
    with pytest.raises(UnknownPerturbationError, match=r"NOTAGENE"):
        trained.generate(["KLF1+NOTAGENE"], n=2)


def test_baseline_generation_limits(adata):
    cvae = PerturbationModel(adata, model="cvae", **SMALL)
    with pytest.raises(ValueError, match="no artifact latent"):
        cvae.generate("KLF1", n=2, artifact=True)
    svae = PerturbationModel(adata, model="svae_plus", **SMALL)
    held = str(adata.uns["split"]["heldout"][0])
    with pytest.raises(UnknownPerturbationError, match="sVAE\\+ .* cannot generate"):
        svae.generate([held], n=2)
    assert svae.generate(["control", "KLF1"], n=2, seed=0).n_obs == 4


def test_get_latent(trained, prepared):
    z = trained.get_latent(prepared)
    assert z.shape == (prepared.n_obs, trained.module.latent_dim) and np.isfinite(z).all()
    np.testing.assert_array_equal(z, trained.get_latent(prepared))  # seeded


# ------------------------------------------------------------------ save / load
def test_save_load_round_trip_and_gene_check(trained, prepared, tmp_path):
    trained.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.save(tmp_path / "m")
    trained.save(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["history.json", "model.pt", "registry.json"]
    loaded = PerturbationModel.load(tmp_path / "m", accelerator="cpu")
    assert _same_state(_state(trained), _state(loaded))
    assert loaded.registry == trained.registry and loaded.history == trained.history and loaded.is_trained
    labels = ["control", "KLF1", str(prepared.uns["split"]["heldout"][0])]
    np.testing.assert_array_equal(
        trained.generate(labels, n=20, seed=3).X.toarray(), loaded.generate(labels, n=20, seed=3).X.toarray()
    )
    np.testing.assert_array_equal(
        trained.predict_mean(labels, n=20, seed=3).X, loaded.predict_mean(labels, n=20, seed=3).X
    )

    with_data = PerturbationModel.load(tmp_path / "m", prepared.copy(), accelerator="cpu")
    np.testing.assert_array_equal(with_data.get_latent(), trained.get_latent(prepared))
    with_data.train(max_epochs=1, **FAST)  # can continue training on the AnnData it was given

    reordered = prepared[:, list(prepared.var_names[::-1])].copy()
    with pytest.raises(GeneMismatchError, match="different order"):
        PerturbationModel.load(tmp_path / "m", reordered, accelerator="cpu")
    subset = prepared[:, prepared.var_names[:-3]].copy()
    with pytest.raises(MissingKeyError, match="3 model genes absent"):
        PerturbationModel.load(tmp_path / "m", subset, accelerator="cpu")
    with pytest.raises(FileNotFoundError):
        PerturbationModel.load(tmp_path / "nothing")


def test_pyro_validation_is_restored(adata):
    pyro.enable_validation(True)
    PerturbationModel(adata, **SMALL).train(max_epochs=1, **FAST)
    assert is_validation_enabled()
