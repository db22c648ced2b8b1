"""Sparse additive perturbation effects, shared by SAMS-VAE and CRADLE-VAE.

Model: ``m_t ~ Bernoulli(p)^D``, ``e_t ~ N(0, I)``, ``z_p,i = sum_t D_it (e_t * m_t)``.
Guide: ``q(m_t)`` free logits with the straight-through Gumbel-softmax (temperature 1) and
``q(e_t | m_t)`` a residual MLP (4 x 400) of ``[m_t, onehot(t)]``.

Sites ``"m"`` and ``"e"`` have shape ``(T, D)`` with the perturbation plate on dim ``-1`` of
the batch shape; call :meth:`SparseEffects.model_sites` / :meth:`SparseEffects.guide_sites`
inside that plate.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .distributions import GumbelSoftmaxBernoulli
from .layers import PerturbationEmbeddingEncoder

__all__ = ["SparseEffects", "dosage_effects"]


def dosage_effects(D: torch.Tensor, effects: torch.Tensor) -> torch.Tensor:
    """``D @ effects``: ``(B, T) @ (..., T, D) -> (..., B, D)``."""
    return torch.matmul(D, effects)


class SparseEffects(nn.Module):
    """Masked perturbation embeddings: prior sites, guide sites and per-cell posterior draws.

    Parameters
    ----------
    n_perturbations
        ``T``.
    latent_dim
        ``D``.
    hidden_dim
        Hidden width of the embedding encoder (400).
    embedding_layers
        Hidden layers of the embedding encoder (4).
    mask_prior
        Prior mask probability ``p`` (0.01 for combination data, 0.001 for Replogle/Adamson).
    mask_init_logit
        Initial logit of ``q(m)`` (0, as published).
    temperature
        Gumbel-softmax temperature (1).
    """

    def __init__(
        self,
        n_perturbations: int,
        latent_dim: int,
        hidden_dim: int = 400,
        embedding_layers: int = 4,
        mask_prior: float = 0.01,
        mask_init_logit: float = 0.0,
        temperature: float = 1.0,
    ):
        super().__init__()
        if not 0.0 < mask_prior < 1.0:
            raise ValueError("mask_prior must be in (0, 1)")
        self.n_perturbations = n_perturbations
        self.latent_dim = latent_dim
        self.prior_logit = math.log(mask_prior) - math.log1p(-mask_prior)
        self.mask_logits = nn.Parameter(torch.full((n_perturbations, latent_dim), float(mask_init_logit)))
        self.embedding_encoder = PerturbationEmbeddingEncoder(
            latent_dim, n_perturbations, hidden_dim, embedding_layers
        )
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def model_sites(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``m`` and ``e`` from the prior (inside the perturbation plate).

        ``like`` supplies device and dtype.
        """
        shape = [self.n_perturbations, self.latent_dim]
        logit = torch.full((), self.prior_logit, device=like.device, dtype=like.dtype)
        m = pyro.sample("m", dist.Bernoulli(logits=logit).expand(shape).to_event(1))
        zero = torch.zeros((), device=like.device, dtype=like.dtype)
        e = pyro.sample("e", dist.Normal(zero, 1.0).expand(shape).to_event(1))
        return m, e

    def guide_sites(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``m ~ q(m)`` and ``e ~ q(e | m)`` (inside the perturbation plate)."""
        m = pyro.sample("m", GumbelSoftmaxBernoulli(self.temperature, logits=self.mask_logits).to_event(1))
        loc, scale = self.embedding_encoder(m)
        e = pyro.sample("e", dist.Normal(loc, scale).to_event(1))
        return m, e

    @torch.no_grad()
    def sample_effects(self, D: torch.Tensor) -> torch.Tensor:
        """Per-cell draws of ``z_p = D @ (e * m)`` from the guide, one independent draw per cell.

        Only the perturbations a cell receives are drawn: the ``(cell, t)`` pairs with nonzero
        dosage are gathered, ``m ~ q(m_t)`` (hard Bernoulli) and ``e ~ q(e_t | m)`` are drawn
        for each pair in one batched pass and summed back per cell.

        Parameters
        ----------
        D
            ``(n, T)`` dosages.

        Returns
        -------
        torch.Tensor
            ``(n, D)``.
        """
        cells, ts = torch.nonzero(D, as_tuple=True)
        z_p = torch.zeros((D.shape[0], self.latent_dim), device=D.device, dtype=D.dtype)
        if cells.numel() == 0:
            return z_p
        m = torch.bernoulli(torch.sigmoid(self.mask_logits[ts]))
        loc, scale = self.embedding_encoder(m, ts)
        e = loc + scale * torch.randn_like(loc)
        return z_p.index_add_(0, cells, D[cells, ts].unsqueeze(-1) * e * m)
