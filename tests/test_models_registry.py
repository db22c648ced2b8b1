"""Every registered model: loss, gradients, determinism, generation."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from cradlekit.errors import MissingKeyError
from cradlekit.module import MODELS, build_model, condition_onehot, unique_conditions

G, T, DZ, B = 30, 4, 6, 40


def tiny_batch(seed: int = 0, n: int = B) -> dict[str, torch.Tensor]:
    """Random counts; singles, one combination (0+1) and controls; ~30% failed cells."""
    g = torch.Generator().manual_seed(seed)
    X = torch.poisson(torch.rand(n, G, generator=g) * 5)
    D = torch.zeros(n, T)
    D[torch.arange(n), torch.arange(n) % T] = 1.0
    D[:6] = 0.0  # controls
    D[6:9, 0] = D[6:9, 1] = 1.0  # combination
    A = (torch.rand(n, generator=g) < 0.3).float()
    X_cf = torch.poisson(torch.rand(n, G, generator=g) * 5)
    return {"X": X, "D": D, "A": A, "X_cf": X_cf, "cf_mask": A == 0}


def make(name: str, batch: dict[str, torch.Tensor], **kw) -> tuple[torch.nn.Module, dict]:
    """Build a small model for a batch (sVAE+ gets its condition one-hot)."""
    batch = dict(batch)
    n_pert = T
    if name == "svae_plus":
        conds = unique_conditions(batch["D"])
        batch["D"] = condition_onehot(batch["D"], conds)
        n_pert = conds.shape[0]
    n_obs = (batch["D"] != 0).sum(0)
    model = build_model(name, G, n_pert, n_obs, batch["X"].shape[0], latent_dim=DZ, hidden_dim=16, **kw)
    return model, batch


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_finite_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model, batch = make(name, tiny_batch())
    loss, parts = model.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert {"loss", "elbo", "reconstruction"} <= set(parts)
    assert all(v.dim() == 0 and not v.requires_grad for v in parts.values())
    assert float(parts["loss"]) == pytest.approx(float(loss.detach()))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == [], f"{name}: parameters without gradient: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_elbo_equals_pyro_trace_elbo(name):
    """Oracle: Pyro's own Trace_ELBO on the same model and guide, same particles (same seed).

    The loss is the negative ELBO plus CRADLE-VAE's J2 (pinned to its formula in
    test_models_paper.py). Tolerance: both are float32 sums of the same B * G = 1,200 terms per
    particle, so they agree to ~1e-6 relative; a dropped or mis-scaled KL term moves the ELBO by
    more than 1e-2 here.
    """
    torch.manual_seed(0)
    model, batch = make(name, tiny_batch())
    pyro.set_rng_seed(5)
    loss, parts = model.loss(batch, num_particles=3)
    pyro.set_rng_seed(5)
    oracle = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    neg_elbo = float(oracle.differentiable_loss(model.model, model.guide, batch))
    assert float(parts["elbo"]) == pytest.approx(-neg_elbo, rel=1e-5, abs=1e-4)
    assert float(loss) == pytest.approx(neg_elbo + float(parts.get("j2", 0.0)), rel=1e-5, abs=1e-4)
    kl_total = sum(float(v) for k, v in parts.items() if k.startswith("kl_"))
    assert kl_total > 1e-2  # the KL part is large against the tolerance


@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_seed_same_loss(name):
    model, batch = make(name, tiny_batch())
    torch.manual_seed(3)
    first = model.loss(batch)[0].item()
    torch.manual_seed(3)
    second = model.loss(batch)[0].item()
    torch.manual_seed(4)
    third = model.loss(batch)[0].item()
    assert first == second
    assert first != third


@pytest.mark.parametrize("name", sorted(MODELS))
def test_generate_and_predict_mean(name):
    torch.manual_seed(0)
    model, batch = make(name, tiny_batch())
    rows = batch["D"][[0, 6, 10]]  # control, combination (a condition for sVAE+), single
    state = torch.random.get_rng_state()
    counts = model.generate(rows, 5, seed=11)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert counts.shape == (15, G)
    assert (counts >= 0).all() and torch.equal(counts, counts.round())
    assert torch.equal(counts, model.generate(rows, 5, seed=11))
    mean = model.predict_mean(rows, 5, library_size=2000.0, seed=11, batch_size=4)
    assert mean.shape == (15, G)
    torch.testing.assert_close(mean.sum(-1), torch.full((15,), 2000.0))
    assert model.training  # restored after generation


def test_artifact_generation_only_for_cradle():
    torch.manual_seed(0)
    batch = tiny_batch()
    for name in ("cradle", "cradle_wo_causal"):
        model, _ = make(name, batch)
        off = model.predict_mean(batch["D"][:3], 4, seed=0)
        on = model.predict_mean(batch["D"][:3], 4, seed=0, artifact=True)
        assert not torch.allclose(off, on)
    model, _ = make("sams_vae", batch)
    with pytest.raises(ValueError, match="artifact"):
        model.generate(batch["D"][:2], 2, artifact=True)


def test_batch_checks():
    batch = tiny_batch()
    model, _ = make("cradle", batch)
    with pytest.raises(MissingKeyError, match="X_cf"):
        model.loss({k: v for k, v in batch.items() if k != "X_cf"})
    wo_cf, _ = make("cradle_wo_cf", batch)
    wo_cf.loss({k: batch[k] for k in ("X", "D", "A")})  # no reference needed without J2
    with pytest.raises(ValueError, match="shape"):
        model.loss({**batch, "D": batch["D"][:, :2]})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", G, T, torch.ones(T), 10)


def test_svae_plus_conditions():
    D = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float32)
    conds = unique_conditions(D)
    assert conds.shape == (3, 3)  # control excluded; the combination is its own condition
    onehot = condition_onehot(D, conds)
    assert onehot[0].sum() == 0 and torch.equal(onehot.sum(-1)[1:], torch.ones(4))
    assert torch.equal(onehot[1], onehot[4])
    with pytest.raises(ValueError, match="unseen"):
        condition_onehot(torch.tensor([[0.0, 1.0, 1.0]]), conds)
    model, batch = make("svae_plus", tiny_batch())
    with pytest.raises(ValueError, match="one-hot"):
        model.loss({**batch, "D": torch.ones_like(batch["D"])})


def test_validation_overrides_scaling_constants():
    torch.manual_seed(0)
    model, batch = make("sams_vae", tiny_batch())
    torch.manual_seed(1)
    base = model.loss(batch)[1]
    torch.manual_seed(1)
    other = model.loss({**batch, "n_cells": 400, "n_obs_per_perturbation": 10 * (batch["D"] != 0).sum(0)})[1]
    # per-cell terms are unchanged; global KLs are spread over 10x as many cells
    assert float(other["reconstruction"]) == pytest.approx(float(base["reconstruction"]))
    assert float(other["kl_e"]) == pytest.approx(float(base["kl_e"]) / 10, rel=1e-4)
