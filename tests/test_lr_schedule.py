"""The plateau learning-rate schedule: when it lowers the rate, its floor, and exact resume."""

from __future__ import annotations

import pytest
import torch

from _toy_training import toy_data, toy_trainer
from cradlekit.errors import CheckpointMismatchError
from cradlekit.train import TrainConfig, Trainer


class FlatValidation(torch.nn.Module):
    """A model whose validation loss never improves after the first epoch (a constant), training loss aside."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, batch):
        if self.training:
            return ((self.w - 1.0) ** 2).sum(), {}
        return torch.ones(()) + 0.0 * self.w.sum(), {}


def test_plateau_halves_the_rate_after_lr_patience_bad_epochs_down_to_its_floor():
    train, val = toy_data()
    cfg = TrainConfig(lr=0.08, max_epochs=30, patience=None, progress_bar=False, lr_schedule="plateau",
                      lr_patience=2, lr_factor=0.5, min_lr_ratio=1 / 8)
    trainer = Trainer(FlatValidation(), train, val, config=cfg)
    trainer.fit()
    rates = [r["lr"] for r in trainer.history]
    # epoch 1 sets the best; epochs 2, 3 are bad (patience 2), so the rate halves from epoch 5 on, and every
    # 3 epochs after that (the bad-epoch count restarts), until lr / 8
    assert rates[:4] == [0.08] * 4
    assert rates[4:7] == [0.04] * 3 and rates[7:10] == [0.02] * 3
    assert min(rates) == pytest.approx(0.01) and rates[-1] == pytest.approx(0.01)


def test_constant_rate_without_a_schedule():
    trainer = toy_trainer(epochs=12)
    trainer.fit()
    assert {r["lr"] for r in trainer.history} == {0.05}


def test_unknown_schedule_is_refused():
    train, val = toy_data()
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        Trainer(FlatValidation(), train, val, config=TrainConfig(lr_schedule="cosine", progress_bar=False))


def test_interrupted_run_with_a_schedule_resumes_to_the_same_result(tmp_path):
    kw = {"lr": 0.2, "lr_schedule": "plateau", "lr_patience": 0, "patience": None}
    full = toy_trainer(tmp_path / "full", epochs=14, **kw)
    full.fit()
    assert len({r["lr"] for r in full.history}) > 1  # the schedule did act in this run

    def interrupt(record):
        if record["epoch"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        toy_trainer(tmp_path / "cut", epochs=14, callbacks=[interrupt], **kw).fit()
    resumed = toy_trainer(tmp_path / "cut", epochs=14, **kw)
    resumed.fit()
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in full.history]
    assert resumed.history[-1]["val_loss"] == full.history[-1]["val_loss"]
    for a, b in zip(full.module.parameters(), resumed.module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_with_another_schedule_is_refused(tmp_path):
    toy_trainer(tmp_path, epochs=3, lr_schedule="plateau").fit()
    with pytest.raises(CheckpointMismatchError, match="lr_patience|lr_schedule"):
        toy_trainer(tmp_path, epochs=6, lr_schedule="plateau", lr_patience=3).fit()
