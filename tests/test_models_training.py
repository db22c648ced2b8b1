"""Short trainings on a synthetic Perturb-seq with known effects: the loss falls, effects are learned."""

from __future__ import annotations

import pytest
import torch

from cradlekit.module import build_model, log_standardize_stats

G, T = 30, 3
UP = list(range(0, 5))  # perturbation 0 multiplies these genes by 4
DOWN = list(range(5, 10))  # perturbation 1 multiplies these by 1/4
BOTH = list(range(10, 15))  # perturbation 2 multiplies these by 3
ARTIFACT = list(range(25, 30))  # failed cells: these x5 ("mitochondrial") and half the library


pytestmark = pytest.mark.usefixtures("single_thread")


def synthetic(n_per_group: int = 120, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Controls and three perturbations; 25% of cells are QC-failed with a known artifact.

    Returns the batch and the true ``(T, G)`` log2 fold changes of normalised expression in
    QC-passed cells.
    """
    g = torch.Generator().manual_seed(seed)
    base = torch.distributions.Gamma(2.0, 1.0).sample((G,)) + 0.2
    base = base / base.sum()
    groups = torch.arange(T + 1).repeat_interleave(n_per_group)  # 0 = control, t + 1 = perturbation t
    n = groups.numel()
    D = torch.zeros(n, T)
    D[groups > 0, (groups[groups > 0] - 1)] = 1.0
    effect = torch.ones(T, G)
    effect[0, UP], effect[1, DOWN], effect[2, BOTH] = 4.0, 0.25, 3.0
    true_freq = base * effect / (base * effect).sum(-1, keepdim=True)
    true_lfc = torch.log2(true_freq / base)
    freq = base * torch.exp(D @ torch.log(effect))
    A = (torch.rand(n, generator=g) < 0.25).float()
    freq = freq * torch.where(A[:, None].bool() & torch.isin(torch.arange(G), torch.tensor(ARTIFACT)), 5.0, 1.0)
    freq = freq / freq.sum(-1, keepdim=True)
    lib = torch.randint(800, 1600, (n,), generator=g).float() * (1.0 - 0.5 * A)
    rate = torch.distributions.Gamma(5.0, 5.0 / (lib[:, None] * freq)).sample()
    X = torch.poisson(rate, generator=g)
    # counterfactual reference: per-gene median of failed cells of the same group
    X_cf = torch.zeros_like(X)
    cf_mask = torch.zeros(n, dtype=torch.bool)
    for k in range(T + 1):
        failed = (groups == k) & (A == 1)
        passed = (groups == k) & (A == 0)
        if failed.any():
            X_cf[passed] = X[failed].median(0).values
            cf_mask[passed] = True
    return {"X": X, "D": D, "A": A, "X_cf": X_cf, "cf_mask": cf_mask}, true_lfc


def train(name: str, data: dict[str, torch.Tensor], steps: int = 300, **kw):
    torch.manual_seed(0)
    mean, std = log_standardize_stats(data["X"])
    model = build_model(
        name, G, T, (data["D"] != 0).sum(0), data["X"].shape[0],
        latent_dim=6, hidden_dim=32, log_mean=mean, log_std=std, mask_prior=0.1, **kw,
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = model.loss(data, num_particles=2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


_CACHE: dict[str, tuple] = {}


def trained(name: str):
    """Train each model once per test session (shared by the tests below)."""
    if name not in _CACHE:
        data, truth = synthetic()
        model, losses = train(name, data)
        _CACHE[name] = (model, losses, truth)
    return _CACHE[name]


def model_lfc(model, **kw) -> torch.Tensor:
    """``(T, G)`` log2 fold change of mean generated expression, perturbation vs control."""
    rows = torch.cat([torch.zeros(1, T), torch.eye(T)])
    mean = model.predict_mean(rows, 400, seed=1, **kw).view(T + 1, 400, G).mean(1)
    return torch.log2(mean[1:] / mean[:1])


@pytest.mark.parametrize("name", ["cradle", "sams_vae"])
def test_training_decreases_loss_and_learns_effect_directions(name):
    model, losses, truth = trained(name)
    start, end = sum(losses[:10]) / 10, sum(losses[-20:]) / 20
    assert end < 0.92 * start, (start, end)
    assert end < sum(losses[100:120]) / 20  # still decreasing after the first third
    lfc = model_lfc(model)
    # each affected gene set moves in the direction of its true effect, by at least 60% of it
    for t, genes in ((0, UP), (1, DOWN), (2, BOTH)):
        got, want = lfc[t, genes].mean(), truth[t, genes].mean()
        assert torch.sign(got) == torch.sign(want) and abs(got) > 0.6 * abs(want), (t, got, want)
        # and the whole profile, renormalisation of the other genes included, correlates
        r = torch.corrcoef(torch.stack([lfc[t], truth[t]]))[0, 1]
        assert r > 0.9, (t, r)


def test_cradle_artifact_branch_carries_the_artifact():
    model, _, _ = trained("cradle")
    rows = torch.zeros(1, T)
    off = model.predict_mean(rows, 400, seed=2)
    on = model.predict_mean(rows, 400, seed=2, artifact=True)
    shift = torch.log2(on.mean(0) / off.mean(0))
    # the "mitochondrial" genes rise when the artifact embedding is switched on (true: x5)
    assert float(shift[ARTIFACT].mean()) > 0.8
    assert float(shift[ARTIFACT].mean()) > float(shift[:25].mean()) + 0.8
