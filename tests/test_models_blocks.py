"""Shared building blocks of cradlekit.module: layers, normalisation, distributions, J2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyro.distributions import Bernoulli, GammaPoisson
from torch.distributions import Normal, kl_divergence

from cradlekit.module.distributions import GumbelSoftmaxBernoulli, NegativeBinomial
from cradlekit.module.divergence import counterfactual_loss, gaussian_kl, published_gaussian_kl
from cradlekit.module.layers import ConcatLinear, PerturbationEmbeddingEncoder, ResidualMLP
from cradlekit.module.likelihood import NegativeBinomialDecoder
from cradlekit.module.standardize import LogStandardize, log_standardize_stats


def test_concat_linear_is_linear_on_concatenation():
    torch.manual_seed(0)
    layer = ConcatLinear([3, 4, 2], 5)
    full = torch.nn.Linear(9, 5)
    with torch.no_grad():
        full.weight.copy_(torch.cat([p.weight for p in layer.parts], dim=1))
        full.bias.copy_(layer.parts[0].bias)
    a, b, c = torch.randn(6, 3), torch.randn(6, 4), torch.randn(6, 2)
    torch.testing.assert_close(layer(a, b, c), full(torch.cat([a, b, c], -1)))
    # broadcasting over a leading particle dimension
    bp = torch.randn(2, 6, 4)
    out = layer(a, bp, c)
    assert out.shape == (2, 6, 5)
    torch.testing.assert_close(out[1], full(torch.cat([a, bp[1], c], -1)))


def test_embedding_encoder_onehot_lookup_matches_concatenation():
    torch.manual_seed(0)
    enc = PerturbationEmbeddingEncoder(n_latent=3, n_perturbations=4, n_hidden=8, n_layers=2)
    m = torch.bernoulli(torch.full((4, 3), 0.5))
    loc_all, scale_all = enc(m)
    idx = torch.tensor([2, 0, 2])
    loc_idx, scale_idx = enc(m[idx], idx)
    torch.testing.assert_close(loc_idx, loc_all[idx])
    torch.testing.assert_close(scale_idx, scale_all[idx])
    # same as a residual MLP on the explicit concatenation [m, onehot(t)]
    first = enc.encoder.first
    x = torch.cat([m, torch.eye(4)], -1)
    pre = x @ torch.cat([first.parts[0].weight, first.parts[1].weight], 1).t() + first.parts[0].bias
    torch.testing.assert_close(enc.encoder.from_preactivation(pre)[0], loc_all)


def test_residual_mlp_skip_connections():
    torch.manual_seed(0)
    mlp = ResidualMLP([3], 4, n_layers=2, residual=True)
    x = torch.randn(5, 3)
    h1 = torch.nn.functional.leaky_relu(mlp.first(x))
    expected = torch.nn.functional.leaky_relu(mlp.hidden[0](h1)) + h1
    torch.testing.assert_close(mlp(x), expected)


def test_log_standardize_stats_match_numpy_and_guard_constant_genes():
    rng = np.random.default_rng(0)
    X = rng.poisson(3.0, size=(50, 6)).astype(np.float32)
    X[:, 2] = 0  # constant gene
    mean, std = log_standardize_stats(torch.from_numpy(X), chunk_size=7)
    logx = np.log1p(X.astype(np.float64))
    np.testing.assert_allclose(mean.numpy(), logx.mean(0), rtol=1e-5, atol=1e-6)
    expected_std = logx.std(0)
    expected_std[2] = 1.0
    np.testing.assert_allclose(std.numpy(), expected_std, rtol=1e-5, atol=1e-6)
    norm = LogStandardize(6, mean, std)
    out = norm(torch.from_numpy(X))
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.numpy().mean(0), 0.0, atol=1e-5)
    # numpy and scipy sparse inputs give the same statistics
    import scipy.sparse as sp

    m2, s2 = log_standardize_stats(sp.csr_matrix(X))
    torch.testing.assert_close(m2, mean)
    torch.testing.assert_close(s2, std)


def test_negative_binomial_matches_pyro_gamma_poisson():
    torch.manual_seed(0)
    mu = torch.rand(3, 4, 7) * 20
    theta = torch.rand(7) + 0.1
    x = torch.poisson(torch.rand(4, 7) * 10)
    ours = NegativeBinomial(mu, theta).log_prob(x)
    ref = GammaPoisson(theta, theta / (mu + 1e-4)).log_prob(x).sum(-1)
    assert ours.shape == (3, 4)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    nb = NegativeBinomial(mu, theta).expand((2, 3, 4))
    assert nb.batch_shape == (2, 3, 4) and nb.event_shape == (7,)
    sample = NegativeBinomial(mu, theta).sample()
    assert sample.shape == mu.shape and (sample >= 0).all() and (sample == sample.round()).all()


def test_decoder_mean_is_library_times_softmax():
    torch.manual_seed(0)
    dec = NegativeBinomialDecoder([4, 4], n_genes=9, n_hidden=8)
    rho = dec.frequencies(torch.randn(5, 4), torch.randn(5, 4))
    torch.testing.assert_close(rho.sum(-1), torch.ones(5))
    lib = torch.full((5,), 1000.0)
    torch.testing.assert_close(dec.distribution(rho, lib).mean, 1000.0 * rho + 1e-4)


def test_gumbel_softmax_bernoulli_hard_forward_soft_backward_bernoulli_score():
    torch.manual_seed(0)
    logits = torch.zeros(200, 5, requires_grad=True)
    d = GumbelSoftmaxBernoulli(torch.tensor(1.0), logits=logits)
    m = d.rsample()
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    (m * torch.arange(5.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    lp = d.log_prob(m.detach())
    torch.testing.assert_close(lp, Bernoulli(logits=logits).log_prob(m.detach()))


def test_gaussian_kl_equals_torch_kl_divergence():
    loc1 = torch.tensor([[0.3, -1.2, 2.0]])
    s1 = torch.tensor([[0.5, 1.5, 0.2]])
    loc2 = torch.tensor([[-0.1, 0.4, 1.0]])
    s2 = torch.tensor([[2.0, 0.7, 0.3]])
    ref = kl_divergence(Normal(loc1, s1), Normal(loc2, s2))
    torch.testing.assert_close(gaussian_kl(loc1, s1, loc2, s2), ref)
    # a hand value: KL(N(0,1) || N(1, 2^2)) = log 2 + (1 + 1) / 8 - 1/2
    hand = np.log(2.0) + 2.0 / 8.0 - 0.5
    value = gaussian_kl(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1.0), torch.tensor(2.0))
    assert float(value) == pytest.approx(hand, rel=1e-6)


def _published_by_hand(m1, s1, m2, s2, mask):
    """The published kldiv_normal, transcribed: sum over cells and dims, mean over particles."""
    P, B, D = m1.shape
    total = 0.0
    for p in range(P):
        for i in range(B):
            if not mask[i]:
                continue
            for d in range(D):
                lv1, lv2 = 2 * np.log(s1[p, i, d]), 2 * np.log(s2[p, i, d])
                total += -0.5 * (1 + lv1 - lv2 - (m1[p, i, d] - m2[p, i, d]) ** 2 - np.exp(lv1 - lv2))
    return total / P


def test_counterfactual_loss_exact_published_and_masking():
    g = torch.Generator().manual_seed(1)
    P, B, D = 2, 5, 3
    m1, m2 = torch.randn(P, B, D, generator=g), torch.randn(P, B, D, generator=g)
    s1, s2 = torch.rand(P, B, D, generator=g) + 0.2, torch.rand(P, B, D, generator=g) + 0.2
    mask = torch.tensor([True, False, True, True, False])
    alpha = 0.7

    exact = counterfactual_loss(m1, s1, m2, s2, mask, alpha)
    kl = kl_divergence(Normal(m1, s1), Normal(m2, s2)).sum(-1)  # (P, B)
    expected = alpha * (kl * mask).sum(-1).mean() / B  # masked cells count as zero, mean over B
    torch.testing.assert_close(exact, expected)

    published = counterfactual_loss(m1, s1, m2, s2, mask, alpha, published=True)
    hand = alpha * _published_by_hand(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy(), mask.numpy())
    assert float(published) == pytest.approx(hand, rel=1e-5)
    # the published formula drops 1/sigma2^2 on the mean term: it differs from the exact KL
    assert not torch.allclose(published_gaussian_kl(m1, s1, m2, s2), gaussian_kl(m1, s1, m2, s2))

    # changing masked cells changes nothing; no reference anywhere gives zero
    m1b = m1.clone()
    m1b[:, ~mask] += 5.0
    torch.testing.assert_close(counterfactual_loss(m1b, s1, m2, s2, mask, alpha), exact)
    none = torch.zeros(B, dtype=torch.bool)
    assert float(counterfactual_loss(m1, s1, m2, s2, none, alpha)) == 0.0
