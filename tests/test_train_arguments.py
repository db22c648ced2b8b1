"""Bad arguments to ``PerturbationModel.train`` (issue 20, item 5): a ``TypeError`` or ``ValueError``
naming the argument, raised before anything runs (no weights changed, no checkpoint folder made)."""

from __future__ import annotations

import math

import pytest
import torch

from cradlekit.data import simulate_perturbseq, split_combinations
from cradlekit.model import PerturbationModel

SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
GOOD = dict(max_epochs=1, batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model():
    adata = simulate_perturbseq(n_cells=500, n_genes=150, true_ate_cells=20, seed=2)
    split_combinations(adata, seed=0)
    return PerturbationModel(adata, model="cvae", **SMALL)


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        ({"lr": "1e-3"}, TypeError, "lr must be a number, got the string '1e-3'"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1, got 0"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be at least 1, got 0"),
        ({"lr": 0}, ValueError, "lr must be greater than 0, got 0"),
        ({"lr": -1e-3}, ValueError, "lr must be greater than 0"),
        ({"lr": math.nan}, ValueError, "lr must be finite"),
        ({"lr": True}, TypeError, "lr must be a number"),
        ({"max_epochs": 0}, ValueError, "max_epochs must be at least 1"),
        ({"max_epochs": 2.5}, TypeError, "max_epochs must be an integer, got float 2.5"),
        ({"max_steps": 0}, ValueError, "max_steps must be at least 1"),
        ({"batch_size": 64.0}, TypeError, "batch_size must be an integer"),
        ({"batch_size": True}, TypeError, "batch_size must be an integer"),
        ({"patience": 0}, ValueError, "patience must be at least 1"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay must be 0 or more"),
        ({"grad_clip": 0}, ValueError, "grad_clip must be greater than 0"),
        ({"seed": "0"}, TypeError, "seed must be an integer"),
        ({"resume": "yes"}, TypeError, "resume must be True or False"),
        ({"accelerator": 0}, TypeError, "accelerator must be a string"),
        ({"checkpoint_dir": 3}, TypeError, "checkpoint_dir must be a folder path"),
        ({"callbacks": print}, TypeError, "callbacks must be a list"),
        ({"callbacks": [3]}, TypeError, "callbacks[0] is neither a function"),
    ],
)
def test_a_bad_argument_is_named_before_anything_runs(model, tmp_path, bad, error, words):
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    kwargs = {**GOOD, "checkpoint_dir": tmp_path / "ckpt", **bad}
    with pytest.raises(error) as err:
        model.train(**kwargs)
    assert str(err.value).startswith("train(): ") and words in str(err.value)
    assert not (tmp_path / "ckpt").exists() and not model.is_trained
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


def test_good_arguments_of_other_numeric_types_are_accepted(model):
    import numpy as np

    model.train(**{**GOOD, "max_epochs": np.int64(1), "batch_size": np.int32(128), "lr": np.float32(1e-3),
                   "seed": np.int64(3), "patience": None, "max_steps": None})
    assert model.is_trained and model.train_info["epochs"] == 1
