"""The training loop on a small stochastic model: determinism, resume, NaN, early stopping."""

from __future__ import annotations

import pytest
import torch

from cradlekit.errors import NonFiniteLossError
from cradlekit.train import DeviceData, TrainConfig, Trainer


class NoisyRegression(torch.nn.Module):
    """A stochastic loss (Monte-Carlo noise), so RNG handling matters for reproducibility."""

    def __init__(self, n_features: int = 5, nan_at_step: int | None = None):
        super().__init__()
        self.lin = torch.nn.Linear(n_features, 1)
        self.nan_at_step = nan_at_step
        self.calls = 0

    def loss(self, batch):
        self.calls += int(self.training)
        noise = 0.1 * torch.randn_like(batch["y"])
        pred = self.lin(batch["x"]).squeeze(-1) + noise
        mse = ((pred - batch["y"]) ** 2).mean()
        if self.training and self.nan_at_step is not None and self.calls >= self.nan_at_step:
            mse = mse * float("nan")
        return mse, {"mse": mse.detach()}


def _data(seed: int = 0, n: int = 300):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = x @ torch.arange(1.0, 6.0) + 0.05 * torch.randn(n, generator=g)
    return DeviceData({"x": x[:240], "y": y[:240]}), DeviceData({"x": x[240:], "y": y[240:]})


def _fit(tmp_path=None, *, epochs=8, callbacks=(), resume=True, seed=0, **kw):
    torch.manual_seed(123)  # same initial weights in every run
    module = NoisyRegression()
    train, val = _data()
    kw = {"lr": 0.05, **kw}
    cfg = TrainConfig(batch_size=32, max_epochs=epochs, seed=seed, progress_bar=False,
                      checkpoint_dir=str(tmp_path) if tmp_path else None, **kw)
    trainer = Trainer(module, train, val, config=cfg, callbacks=callbacks)
    trainer.fit(resume=resume)
    return trainer


def test_training_reduces_loss():
    trainer = _fit(epochs=10)
    losses = [r["train_loss"] for r in trainer.history]
    assert losses[-1] < 0.2 * losses[0]
    assert {"epoch", "step", "train_loss", "val_loss", "train_mse", "val_mse"} <= set(trainer.history[-1])


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = _fit(), _fit(), _fit(seed=1)
    for pa, pb in zip(a.module.parameters(), b.module.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert [r["val_loss"] for r in a.history] == [r["val_loss"] for r in b.history]
    assert [r["train_loss"] for r in a.history] != [r["train_loss"] for r in c.history]


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    full = _fit(tmp_path / "full", epochs=8)

    def interrupt(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "cut", epochs=8, callbacks=[interrupt])
    assert (tmp_path / "cut" / "last.pt").exists()
    resumed = _fit(tmp_path / "cut", epochs=8)
    assert resumed.history[0]["epoch"] == 1 and len(resumed.history) == 8
    assert resumed.history[-1]["val_loss"] == full.history[-1]["val_loss"]
    for pa, pb in zip(full.module.parameters(), resumed.module.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_nan_loss_raises_naming_the_step():
    torch.manual_seed(0)
    train, val = _data()
    trainer = Trainer(NoisyRegression(nan_at_step=12), train, val,
                      config=TrainConfig(batch_size=32, max_epochs=5, progress_bar=False))
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 12"):
        trainer.fit()


def test_early_stopping_and_best_state_restored():
    trainer = _fit(epochs=200, patience=3, lr=0.5)
    assert trainer.stopped_early
    assert len(trainer.history) < 200
    best = min(r["val_loss"] for r in trainer.history)
    assert trainer.best_loss == best
    assert trainer.evaluate(trainer.val_data)["val_loss"] == pytest.approx(best)


def test_max_steps_and_stop_request():
    assert _fit(epochs=50, max_steps=16).step == 16  # 8 steps per epoch
    holder = {}

    class Stopper:
        def on_train_start(self, trainer):
            holder["t"] = trainer

        def on_epoch_end(self, trainer, record):
            if record["epoch"] == 2:
                trainer.request_stop()

        def on_train_end(self, trainer):
            holder["ended"] = True

    trainer = _fit(epochs=50, callbacks=[Stopper()])
    assert len(trainer.history) == 2 and holder["ended"]
