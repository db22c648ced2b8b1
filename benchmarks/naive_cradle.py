"""A straightforward implementation of the CRADLE-VAE objective, as the benchmark's reference.

Benchmark-only code (not part of the package). It computes exactly the loss of
:class:`cradlekit.module.CradleVAE` (default options: exact J2, no class balancing, causal ``u``)
the way one would write it first, in plain torch, without the optimised model's tricks:

* **particles in a Python loop** (``num_particles`` iterations), each a full guide + model pass,
  the loss averaged over particles (what ``Trace_ELBO(num_particles=5)`` without
  ``vectorize_particles`` does);
* every network is an ``nn.Linear`` stack on a **concatenated** input (``torch.cat``), including
  the one-hot ``[m_t, onehot(t)]`` input of ``q(e_t | m_t)`` (a ``T x T`` identity);
* **two guide passes** of ``q(z_b | ...)`` per particle, as separate encoder calls, each with its
  own ``G x H`` matrix product: the factual ``[x, z_p, a u]`` (giving ``z_b``) and the
  counterfactual ``[x, z_p, (1 - a) u]``, plus a third call on the reference ``[x_cf, z_p,
  (1 - a) u]`` for J2;
* **two decoder likelihoods**: every cell is decoded through both branches, artifact on
  ``[z_b, z_p, u]`` and off ``[z_b, z_p, 0]``, each scored with pyro's ``GammaPoisson`` (all
  ``lgamma`` terms recomputed per particle and branch), and the per-cell log-likelihood is then
  selected by ``a_i``;
* every KL term is ``log q - log p`` at the sampled value with ``torch.distributions``, scaled as in
  the optimised model (per-cell terms: batch mean; perturbation terms: ``c_t / (n_t B)``; ``u``:
  ``1 / N``).

:meth:`NaiveCradleVAE.from_model` copies the parameters of a ``CradleVAE`` (the first layers'
per-input weights are concatenated back into one matrix), so both compute the same function.
Random numbers are drawn in the same order as the optimised guide (``m``, ``e``, ``u``, ``z_b`` of
one particle after the other), so with one particle and the same seed both losses agree to float
error, and the ``k``-particle naive loss equals the mean of ``k`` successive one-particle losses of
the optimised model (``tests/test_naive_reference.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pyro.distributions import GammaPoisson
from torch import nn
from torch.distributions import Bernoulli, Normal

from cradlekit.module import CradleVAE
from cradlekit.module.distributions import MU_EPS, GumbelSoftmaxBernoulli
from cradlekit.module.layers import VAR_EPS

__all__ = ["NaiveCradleVAE", "naive_train_step"]


class _MLP(nn.Module):
    """``nn.Linear`` stack with LeakyReLU; layers 2..n residual; optional Gaussian head."""

    def __init__(self, in_dim: int, hidden: int, n_layers: int, out_dim: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(in_dim, hidden)] + [nn.Linear(hidden, hidden) for _ in range(n_layers - 1)]
        )
        self.act = nn.LeakyReLU()
        if out_dim is not None:
            self.loc = nn.Linear(hidden, out_dim)
            self.log_var = nn.Linear(hidden, out_dim)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.layers[0](x))
        for lin in self.layers[1:]:
            h = self.act(lin(h)) + h
        return h

    def gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)
        return self.loc(h), torch.sqrt(torch.exp(self.log_var(h)) + VAR_EPS)


class NaiveCradleVAE(nn.Module):
    """CRADLE-VAE written plainly (see the module docstring). Build with :meth:`from_model`."""

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        n_obs_per_perturbation: Any,
        n_train: int,
        *,
        latent_dim: int = 200,
        hidden_dim: int = 400,
        decoder_layers: int = 2,
        encoder_layers: int = 1,
        embedding_layers: int = 4,
        mask_prior: float = 0.01,
        alpha: float = 0.5,
        temperature: float = 1.0,
        num_particles: int = 5,
    ):
        super().__init__()
        G, T, Dz, H = n_genes, n_perturbations, latent_dim, hidden_dim
        self.n_genes, self.n_perturbations, self.latent_dim = G, T, Dz
        self.n_train = int(n_train)
        self.alpha = float(alpha)
        self.num_particles = int(num_particles)
        self.prior_logit = math.log(mask_prior) - math.log1p(-mask_prior)
        self.register_buffer("n_obs", torch.as_tensor(n_obs_per_perturbation, dtype=torch.float32).clone())
        self.register_buffer("log_mean", torch.zeros(G))
        self.register_buffer("log_std", torch.ones(G))
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("eye", torch.eye(T))
        self.mask_logits = nn.Parameter(torch.zeros(T, Dz))
        self.embedding = _MLP(Dz + T, H, embedding_layers, Dz)
        self.u_loc = nn.Parameter(torch.zeros(Dz))
        self.u_log_scale = nn.Parameter(torch.zeros(Dz))
        self.encoder = _MLP(G + 2 * Dz, H, encoder_layers, Dz)
        self.decoder = _MLP(3 * Dz, H, decoder_layers)
        self.out = nn.Linear(H, G)
        self.log_theta = nn.Parameter(torch.zeros(G))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: CradleVAE) -> NaiveCradleVAE:
        """A naive module computing the same function as ``model`` (parameters copied)."""
        if not (model.causal and not model.published and not model.class_balanced):
            raise ValueError("the naive reference implements the default CradleVAE options only")
        enc_layers = len(model.basal_encoder.mlp.hidden) + 1
        emb_layers = len(model.effects.embedding_encoder.encoder.mlp.hidden) + 1
        mask_prior = 1.0 / (1.0 + math.exp(-model.effects.prior_logit))
        naive = cls(
            model.n_genes, model.n_perturbations, model.n_obs_per_perturbation.cpu(), model.n_train,
            latent_dim=model.latent_dim, hidden_dim=model.hidden_dim,
            decoder_layers=model.decoder_layers, encoder_layers=enc_layers,
            embedding_layers=emb_layers, mask_prior=mask_prior, alpha=model.alpha,
            temperature=float(model.effects.temperature), num_particles=model.num_particles,
        )
        naive.to(model.decoder.out.weight)  # the model's device and dtype
        naive.load_from(model)
        return naive

    @torch.no_grad()
    def load_from(self, model: CradleVAE) -> None:
        """Copy ``model``'s parameters (concatenating the per-input first-layer weights)."""

        def copy_mlp(dst: _MLP, src_mlp, head=None) -> None:
            first = src_mlp.first
            dst.layers[0].weight.copy_(torch.cat([p.weight for p in first.parts], dim=1))
            dst.layers[0].bias.copy_(first.parts[0].bias)
            for d, s in zip(dst.layers[1:], src_mlp.hidden, strict=False):
                d.weight.copy_(s.weight)
                d.bias.copy_(s.bias)
            if head is not None:
                for name in ("loc", "log_var"):
                    getattr(dst, name).weight.copy_(getattr(head, name).weight)
                    getattr(dst, name).bias.copy_(getattr(head, name).bias)

        emb = model.effects.embedding_encoder.encoder
        copy_mlp(self.embedding, emb.mlp, emb)
        copy_mlp(self.encoder, model.basal_encoder.mlp, model.basal_encoder)
        copy_mlp(self.decoder, model.decoder.mlp)
        self.out.weight.copy_(model.decoder.out.weight)
        self.out.bias.copy_(model.decoder.out.bias)
        self.log_theta.copy_(model.decoder.log_theta)
        self.mask_logits.copy_(model.effects.mask_logits)
        self.u_loc.copy_(model.u_loc)
        self.u_log_scale.copy_(model.u_log_scale)
        self.log_mean.copy_(model.normalize.mean)
        self.log_std.copy_(model.normalize.std)
        self.n_obs.copy_(model.n_obs_per_perturbation)

    # ------------------------------------------------------------------ loss
    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.log1p(x) - self.log_mean) / self.log_std

    def particle_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Negative ELBO per cell plus ``alpha * J2`` for one Monte-Carlo particle."""
        X, D, A = batch["X"], batch["D"].to(batch["X"].dtype), batch["A"].to(batch["X"].dtype)
        B, N = X.shape[0], self.n_train
        a = A.unsqueeze(-1)
        library = X.sum(-1, keepdim=True)
        count = (D != 0).to(X.dtype).sum(0)
        has = (count > 0) & (self.n_obs > 0)
        w_pert = torch.where(has, count / (self.n_obs.clamp_min(1.0) * B), torch.zeros_like(count))
        x_std = self._normalize(X)
        x_cf_std = self._normalize(batch["X_cf"].to(X.dtype))

        # ---- guide: q(m) q(e | m) q(u) q(z_b | x, z_p, z_a), drawn in the optimised guide's order
        q_m = GumbelSoftmaxBernoulli(self.temperature, logits=self.mask_logits)
        m = q_m.rsample()  # (T, D) hard, straight-through gradients
        e_loc, e_scale = self.embedding.gaussian(torch.cat([m, self.eye], dim=-1))
        q_e = Normal(e_loc, e_scale)
        e = q_e.rsample()
        q_u = Normal(self.u_loc, torch.exp(self.u_log_scale))
        u = q_u.rsample()  # (D,)
        z_p = D @ (e * m)  # (B, D)
        z_a = a * u
        z_a_cf = (1.0 - a) * u
        # guide pass 1: factual encoder call, gives z_b
        zb_loc, zb_scale = self.encoder.gaussian(torch.cat([x_std, z_p, z_a], dim=-1))
        q_z = Normal(zb_loc, zb_scale)
        z_b = q_z.rsample()
        # guide pass 2: counterfactual artifact, and the reference counts (for J2)
        cf_loc, cf_scale = self.encoder.gaussian(torch.cat([x_std, z_p, z_a_cf], dim=-1))
        ref_loc, ref_scale = self.encoder.gaussian(torch.cat([x_cf_std, z_p, z_a_cf], dim=-1))

        # ---- KL terms: log q - log p at the samples, scaled to a per-cell full-data ELBO
        std_normal = Normal(torch.zeros((), device=X.device), 1.0)
        prior_m = Bernoulli(logits=torch.full_like(self.mask_logits, self.prior_logit))
        kl_m = (Bernoulli(logits=self.mask_logits).log_prob(m) - prior_m.log_prob(m)).sum(-1)
        kl_e = (q_e.log_prob(e) - std_normal.log_prob(e)).sum(-1)
        kl_u = (q_u.log_prob(u) - std_normal.log_prob(u)).sum()
        kl_z = (q_z.log_prob(z_b) - std_normal.log_prob(z_b)).sum(-1)
        kl = kl_z.mean() + (w_pert * kl_m).sum() + (w_pert * kl_e).sum() + kl_u / N

        # ---- model: both decoder branches for every cell, selected by a
        theta = torch.exp(self.log_theta)
        u_all = u.expand(B, -1)
        rho_on = torch.softmax(self.out(self.decoder.hidden(torch.cat([z_b, z_p, u_all], -1))), -1)
        rho_off = torch.softmax(
            self.out(self.decoder.hidden(torch.cat([z_b, z_p, torch.zeros_like(u_all)], -1))), -1
        )
        ll_on = GammaPoisson(theta, theta / (library * rho_on + MU_EPS)).log_prob(X).sum(-1)
        ll_off = GammaPoisson(theta, theta / (library * rho_off + MU_EPS)).log_prob(X).sum(-1)
        recon = torch.where(A > 0.5, ll_on, ll_off).mean()

        # ---- J2: exact Gaussian KL(q(z_b | x_cf, .) || q(z_b | x, .)), per-cell mean
        loss = -(recon - kl)
        if self.alpha > 0:
            j2 = torch.distributions.kl_divergence(Normal(ref_loc, ref_scale), Normal(cf_loc, cf_scale))
            j2 = torch.where(batch["cf_mask"].bool(), j2.sum(-1), torch.zeros((), device=X.device))
            loss = loss + self.alpha * j2.mean()
        return loss

    def loss(self, batch: dict[str, torch.Tensor], num_particles: int | None = None) -> torch.Tensor:
        """Mean of :meth:`particle_loss` over ``num_particles`` particles (a Python loop)."""
        P = self.num_particles if num_particles is None else int(num_particles)
        total = self.particle_loss(batch)
        for _ in range(P - 1):
            total = total + self.particle_loss(batch)
        return total / P


def naive_train_step(
    module: NaiveCradleVAE,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    params: list[torch.Tensor],
    grad_clip: float = 100.0,
) -> torch.Tensor:
    """One optimiser step as the trainer does it (finite check, clip, Adam)."""
    loss = module.loss(batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"naive loss is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.detach()
