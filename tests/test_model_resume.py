"""PerturbationModel checkpoints and saved models you can trust (issue 12): resume refuses a checkpoint
of another run (genes, cells, model, width), applies a new learning rate, survives Ctrl-C mid-epoch
exactly; crafted and damaged files are refused with the file named; degenerate data fails at setup."""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import pytest
import torch

from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.errors import CheckpointError, CheckpointMismatchError, EmptyPerturbationError, InvalidCountsError
from cradlekit.model import PerturbationModel
from cradlekit.model._degenerate import MIN_CELLS_PER_PERTURBATION
from cradlekit.qc import label_artifacts

SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
FAST = dict(batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")

pytestmark = pytest.mark.usefixtures("single_thread")


class Payload:
    """Unpickling this object creates a marker file: stands for any code a crafted file could run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def prepared():
    adata = simulate_perturbseq(n_cells=800, n_genes=160, true_ate_cells=20, seed=5)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    return adata


@pytest.fixture(scope="module")
def trained_dir(prepared, tmp_path_factory):
    """A checkpoint folder holding a finished 1-epoch run on ``prepared``."""
    path = tmp_path_factory.mktemp("ckpt")
    PerturbationModel(prepared.copy(), **SMALL).train(max_epochs=1, checkpoint_dir=path, **FAST)
    return path


def _state(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


@pytest.mark.parametrize(
    ("variant", "field"),
    [
        ("gene_order", r"genes: 160 items -> 160 items, first difference at position 0"),
        ("fewer_cells", r"data\.cells"),
        ("width", r"model\.options\.latent_dim: 4 -> 6"),
        ("model_class", r"model\.name: 'cradle' -> 'cvae'"),
    ],
)
def test_resume_refuses_another_runs_checkpoint(prepared, trained_dir, variant, field):
    adata, options = prepared.copy(), dict(SMALL)
    if variant == "gene_order":
        adata = adata[:, adata.var_names[::-1]].copy()
    elif variant == "fewer_cells":
        adata = adata[np.arange(adata.n_obs) % 10 != 0].copy()
    elif variant == "width":
        options["latent_dim"] = 6
    else:
        options["model"] = "cvae"
    model = PerturbationModel(adata, **options)
    with pytest.raises(CheckpointMismatchError, match=field) as info:
        model.train(max_epochs=3, checkpoint_dir=trained_dir, **FAST)
    assert "fresh checkpoint_dir" in str(info.value) and "resume=False" in str(info.value)
    assert not model.is_trained


def test_resumed_model_uses_the_new_learning_rate(prepared, tmp_path):
    PerturbationModel(prepared.copy(), **SMALL).train(max_epochs=1, checkpoint_dir=tmp_path, **FAST)
    rates = []

    class Spy:
        def on_train_start(self, trainer):
            rates.append(trainer._optimizer.param_groups[0]["lr"])

        def on_epoch_end(self, trainer, record):
            rates.append(trainer._optimizer.param_groups[0]["lr"])

        def on_train_end(self, trainer):
            pass

    model = PerturbationModel(prepared.copy(), **SMALL)
    model.train(max_epochs=2, checkpoint_dir=tmp_path, callbacks=[Spy()], **{**FAST, "lr": 5e-2})
    assert rates == [5e-2, 5e-2]  # before 1e-3 stayed in the restored optimiser
    assert model.train_info["lr"] == 5e-2
    assert {(c["setting"], c["from"], c["to"]) for c in model.train_info["resume_changes"]} == {
        ("lr", 1e-3, 5e-2), ("max_epochs", 1, 2)}


def test_ctrl_c_mid_epoch_then_resume_is_bit_identical(prepared, tmp_path):
    full = PerturbationModel(prepared.copy(), **SMALL)
    full.train(max_epochs=3, checkpoint_dir=tmp_path / "full", **FAST)
    cut = PerturbationModel(prepared.copy(), **SMALL)
    steps_per_epoch = -(-cut.registry["n_train"] // FAST["batch_size"])
    loss, calls = cut.module.loss, []

    def interrupted_loss(batch):  # Ctrl-C arrives during the 3rd step of epoch 2
        calls.append(1)
        if len(calls) == steps_per_epoch + 3:
            raise KeyboardInterrupt
        return loss(batch)

    cut.module.loss = interrupted_loss
    with pytest.raises(KeyboardInterrupt):
        cut.train(max_epochs=3, checkpoint_dir=tmp_path / "cut", **FAST)
    resumed = PerturbationModel(prepared.copy(), **SMALL)
    resumed.train(max_epochs=3, checkpoint_dir=tmp_path / "cut", **FAST)
    assert resumed.train_info["steps"] == full.train_info["steps"] == 3 * steps_per_epoch
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history]
    a, b = _state(full), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_crafted_files_are_refused_without_running_code(prepared, trained_dir, tmp_path):
    marker = tmp_path / "code_ran"
    model = PerturbationModel(prepared.copy(), **SMALL)
    model.save(tmp_path / "saved")
    torch.save({"decoder.out.bias": Payload(marker)}, tmp_path / "saved" / "model.pt")
    with pytest.raises(CheckpointError, match=r"saved model .*model\.pt holds Python objects"):
        PerturbationModel.load(tmp_path / "saved")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"module": Payload(marker)}, ckpt / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt holds Python objects"):
        model.train(max_epochs=1, checkpoint_dir=ckpt, **FAST)
    assert not marker.exists()


def test_damaged_saved_model_names_the_file(prepared, tmp_path):
    model = PerturbationModel(prepared.copy(), **SMALL)
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob(".*tmp"))  # written through temporary files, none left
    weights = (tmp_path / "m" / "model.pt").read_bytes()
    (tmp_path / "m" / "model.pt").write_bytes(weights[: len(weights) // 3])
    with pytest.raises(CheckpointError, match=r"model\.pt is damaged or truncated.*save the model again"):
        PerturbationModel.load(tmp_path / "m")
    (tmp_path / "m" / "model.pt").write_bytes(weights)
    text = (tmp_path / "m" / "registry.json").read_text()
    (tmp_path / "m" / "registry.json").write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"registry\.json is damaged"):
        PerturbationModel.load(tmp_path / "m")


# ------------------------------------------------------------------ degenerate data
def test_no_genes_is_refused_at_setup(prepared):
    with pytest.raises(InvalidCountsError, match="no genes"):
        PerturbationModel(prepared[:, []].copy(), **SMALL)


def test_only_control_cells_are_refused_at_setup(prepared):
    control = prepared.uns["cradlekit"]["control_label"]
    only = prepared[prepared.obs["perturbation"] == control].copy()
    with pytest.raises(EmptyPerturbationError, match="only the control"):
        PerturbationModel(only, **SMALL)


def test_thinly_covered_perturbation_warns(prepared, caplog):
    adata = prepared.copy()
    train = (adata.obs["split"] == "train").to_numpy()
    has_klf1 = adata.obs["perturbation"].astype(str).str.split("+").apply(lambda t: "KLF1" in t).to_numpy()
    keep = ~has_klf1
    keep[np.flatnonzero(has_klf1 & train)[: MIN_CELLS_PER_PERTURBATION - 3]] = True  # 7 KLF1 training cells
    with caplog.at_level(logging.WARNING, logger="cradlekit"):
        model = PerturbationModel(adata[keep].copy(), **SMALL)
    assert model.registry["n_obs_per_perturbation"][model.registry["targets"].index("KLF1")] == 7
    assert f"fewer than {MIN_CELLS_PER_PERTURBATION} training cells" in caplog.text and "KLF1 (7)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cradlekit"):
        PerturbationModel(prepared.copy(), **SMALL)
    assert "fewer than" not in caplog.text
