"""The benchmark's naive CRADLE-VAE (benchmarks/naive_cradle.py) computes the optimised model's loss.

The training benchmark compares the optimised ``CradleVAE`` step with this reference, so the
comparison is only meaningful if both compute the same objective with the same parameters.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyro
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from cradlekit.module import CradleVAE, log_standardize_stats  # noqa: E402
from naive_cradle import NaiveCradleVAE  # noqa: E402

G, T, DZ, H = 20, 4, 5, 16


def batch_of(n: int = 48, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.poisson(torch.rand(n, G, generator=g) * 6, generator=g)
    D = torch.zeros(n, T)
    D[torch.arange(n), torch.arange(n) % T] = 1.0
    D[::8] = 0.0  # controls
    D[1::8, 0] = 1.0  # combinations
    A = (torch.rand(n, generator=g) < 0.3).float()
    X_cf = torch.poisson(torch.rand(n, G, generator=g) * 6, generator=g)
    batch = {"X": X, "D": D, "A": A, "X_cf": X_cf, "cf_mask": A == 0}
    # float64, so that the two implementations agree to ~1e-12 and small differences show
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


def pair(batch, **kw):
    """An optimised model with non-trivial parameters and its naive copy."""
    torch.manual_seed(0)
    n_obs = (batch["D"] != 0).sum(0) * 3  # the batch is a third of the training cells
    mean, std = log_standardize_stats(batch["X"])
    model = CradleVAE(
        G, T, n_obs, 3 * batch["X"].shape[0], latent_dim=DZ, hidden_dim=H,
        log_mean=mean, log_std=std, alpha=0.5, **{"objective": None, **kw},
    )
    with torch.no_grad():  # move away from the symmetric initial values
        model.effects.mask_logits.normal_(0.0, 1.0)
        model.u_loc.normal_(0.0, 0.5)
        model.u_log_scale.normal_(-0.5, 0.3)
        model.decoder.log_theta.normal_(0.0, 0.5)
    model.double()
    return model, NaiveCradleVAE.from_model(model)


def test_one_particle_same_seed_same_loss_and_gradients():
    batch = batch_of()
    model, naive = pair(batch)
    pyro.set_rng_seed(3)
    ours = model.loss(batch, num_particles=1)[0]
    pyro.set_rng_seed(3)
    ref = naive.loss(batch, num_particles=1)
    torch.testing.assert_close(ref, ours, rtol=1e-10, atol=1e-10)
    ours.backward()
    ref.backward()
    grads = {
        "decoder out": (model.decoder.out.weight.grad, naive.out.weight.grad),
        "theta": (model.decoder.log_theta.grad, naive.log_theta.grad),
        "mask logits": (model.effects.mask_logits.grad, naive.mask_logits.grad),
        "u": (model.u_loc.grad, naive.u_loc.grad),
        "encoder x weights": (
            model.basal_encoder.first.parts[0].weight.grad, naive.encoder.layers[0].weight.grad[:, :G]
        ),
        "decoder z_a weights": (
            model.decoder.mlp.first.parts[2].weight.grad, naive.decoder.layers[0].weight.grad[:, 2 * DZ:]
        ),
    }
    for name, (a, b) in grads.items():
        assert float(a.abs().max()) > 0, name
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10, msg=name)


def test_particle_loop_is_the_mean_of_single_particles():
    """k naive particles = mean of k successive one-particle optimised losses (same RNG stream)."""
    batch = batch_of(seed=1)
    model, naive = pair(batch)
    pyro.set_rng_seed(11)
    singles = torch.stack([model.loss(batch, num_particles=1)[0].detach() for _ in range(5)])
    assert float(singles.std()) > 1e-3  # the particles differ
    pyro.set_rng_seed(11)
    ref = naive.loss(batch, num_particles=5).detach()
    torch.testing.assert_close(ref, singles.mean(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mutate", ["artifact", "reference"])
def test_reference_is_sensitive_to_what_the_model_reads(mutate):
    """The agreement is not vacuous: changing an input the model uses changes both losses alike."""
    batch = batch_of(seed=2)
    model, naive = pair(batch)
    changed = dict(batch)
    if mutate == "artifact":
        changed["A"] = 1.0 - batch["A"]
        changed["cf_mask"] = changed["A"] == 0
    else:
        changed["X_cf"] = batch["X_cf"] + 5.0
    losses = []
    for b in (batch, changed):
        pyro.set_rng_seed(5)
        ours = model.loss(b, num_particles=1)[0].detach()
        pyro.set_rng_seed(5)
        ref = naive.loss(b, num_particles=1).detach()
        torch.testing.assert_close(ref, ours, rtol=1e-10, atol=1e-10)
        losses.append(ours)
    assert abs(float(losses[0] - losses[1])) > 1e-2


@pytest.mark.parametrize(
    "rho_shape, x_shape", [((3, 4, 6), (4, 6)), ((4, 6), (4, 6)), ((4, 6), (2, 4, 6)), ((3, 1, 6), (4, 6))]
)
def test_fused_nb_likelihood_matches_gamma_poisson_value_and_gradients(rho_shape, x_shape):
    """The optimised model's fused NB log-likelihood (hand-written backward) is pyro's GammaPoisson."""
    from pyro.distributions import GammaPoisson

    from cradlekit.module.distributions import NegativeBinomial, nb_log_likelihood

    g = torch.Generator().manual_seed(0)
    rho = torch.softmax(torch.randn(rho_shape, generator=g, dtype=torch.double), -1).requires_grad_()
    lib = (torch.rand(4, generator=g, dtype=torch.double) * 100 + 1).requires_grad_()
    theta = (torch.rand(6, generator=g, dtype=torch.double) + 0.2).requires_grad_()
    x = torch.poisson(torch.rand(x_shape, generator=g, dtype=torch.double) * 10, generator=g)
    assert torch.autograd.gradcheck(lambda r, lb, t: nb_log_likelihood(r, lb, t, x), (rho, lib, theta))
    ours = NegativeBinomial.from_frequencies(rho, lib, theta).log_prob(x)
    ref = GammaPoisson(theta, theta / (lib.unsqueeze(-1) * rho + 1e-4)).log_prob(x).sum(-1)
    torch.testing.assert_close(ours, ref)
    inputs = (rho, lib, theta)
    for a, b in zip(torch.autograd.grad(ours.sum(), inputs), torch.autograd.grad(ref.sum(), inputs), strict=True):
        torch.testing.assert_close(a, b)
