"""A training that ends with a non-finite loss (issue 20, item 4): the error says what the checkpoint
folder really holds, and ``save()`` refuses the diverged weights unless asked to keep them."""

from __future__ import annotations

import logging

import pytest
import torch

from _toy_training import toy_trainer
from cradlekit.data import simulate_perturbseq, split_combinations
from cradlekit.errors import NonFiniteLossError
from cradlekit.model import PerturbationModel
from cradlekit.train import load_checkpoint

SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
FAST = dict(batch_size=128, progress_bar=False, accelerator="cpu")

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def adata():
    data = simulate_perturbseq(n_cells=500, n_genes=150, true_ate_cells=20, seed=2)
    split_combinations(data, seed=0)
    return data


def test_nan_in_the_first_epoch_says_no_checkpoint_was_written(adata, tmp_path):
    ckpt = tmp_path / "ckpt"
    model = PerturbationModel(adata.copy(), model="cvae", **SMALL)
    with pytest.raises(NonFiniteLossError) as err:
        model.train(max_epochs=5, lr=100.0, checkpoint_dir=ckpt, **FAST)
    message = str(err.value)
    assert "at epoch 1," in message
    assert not (ckpt / "last.pt").exists() and not (ckpt / "best.pt").exists()
    assert "last good state" not in message and f"No checkpoint was written to {ckpt}" in message


def test_nan_later_names_the_last_checkpoint_and_its_epoch(tmp_path):
    trainer = toy_trainer(tmp_path, epochs=6, lr=0.3, blowup=5.5)  # the loss turns NaN in epoch 4
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    saved = load_checkpoint(tmp_path / "last.pt")["epoch"]
    assert saved == 3 and f"The last completed epoch ({saved}) is in {tmp_path / 'last.pt'}" in str(err.value)
    assert "resume=True" in str(err.value)


def test_save_refuses_the_weights_of_a_diverged_training(adata, tmp_path, cradlekit_log):
    model = PerturbationModel(adata.copy(), model="cvae", **SMALL)
    with pytest.raises(NonFiniteLossError):
        model.train(max_epochs=5, lr=100.0, **FAST)
    with pytest.raises(NonFiniteLossError, match="allow_nonfinite=True") as err:
        model.save(tmp_path / "diverged")
    assert str(tmp_path / "diverged") in str(err.value) and not (tmp_path / "diverged").exists()
    model.save(tmp_path / "kept", allow_nonfinite=True)  # asked for: written, with a warning
    assert (tmp_path / "kept" / "model.pt").is_file()
    assert any(r.levelno == logging.WARNING and "non-finite" in r.getMessage() for r in cradlekit_log.records)
    model.train(max_epochs=1, lr=1e-3, **FAST)  # a good training afterwards: saving is fine again
    assert all(torch.isfinite(v).all() for v in model.module.state_dict().values())
    model.save(tmp_path / "good")
    assert (tmp_path / "good" / "model.pt").is_file()
