"""A tiny stochastic training run for the checkpoint tests; also a script (``python _toy_training.py DIR
EPOCHS``) that trains it with checkpoints in DIR, so tests can kill it from outside."""

from __future__ import annotations

import sys

import torch

from cradlekit.train import DeviceData, TrainConfig, Trainer


class NoisyRegression(torch.nn.Module):
    """A linear model with Monte-Carlo noise in its loss (so RNG handling matters); the loss turns NaN
    once a weight exceeds ``blowup`` (a learning rate that is too high)."""

    def __init__(self, n_features: int = 5, blowup: float | None = None):
        super().__init__()
        self.lin = torch.nn.Linear(n_features, 1)
        self.blowup = blowup

    def loss(self, batch):
        noise = 0.1 * torch.randn_like(batch["y"])
        pred = self.lin(batch["x"]).squeeze(-1) + noise
        mse = ((pred - batch["y"]) ** 2).mean()
        if self.training and self.blowup is not None and self.lin.weight.abs().max() > self.blowup:
            mse = mse * float("nan")
        return mse, {"mse": mse.detach()}


def toy_data(seed: int = 0, n: int = 300, n_features: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_features, generator=g)
    y = x @ torch.arange(1.0, n_features + 1.0) + 0.05 * torch.randn(n, generator=g)
    cut = int(0.8 * n)
    return DeviceData({"x": x[:cut], "y": y[:cut]}), DeviceData({"x": x[cut:], "y": y[cut:]})


def toy_trainer(checkpoint_dir=None, *, epochs=8, callbacks=(), data_seed=0, n=300, width=5, blowup=None, **kw):
    torch.manual_seed(123)  # same initial weights in every run
    module = NoisyRegression(width, blowup=blowup)
    train, val = toy_data(data_seed, n, width)
    kw = {"lr": 0.05, "batch_size": 32, **kw}
    cfg = TrainConfig(max_epochs=epochs, progress_bar=False,
                      checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir), **kw)
    return Trainer(module, train, val, config=cfg, callbacks=callbacks)


if __name__ == "__main__":
    torch.set_num_threads(1)
    toy_trainer(sys.argv[1], epochs=int(sys.argv[2]), n=int(sys.argv[3]) if len(sys.argv) > 3 else 300).fit()
