"""CPA-VAE: the additive latent model of CPA as a VAE, with no mask (SAMS-VAE's baseline).

Model: ``e_t ~ N(0, I)``, ``z_b ~ N(0, I)``, ``z = z_b + sum_t D_it e_t``,
``x ~ NB(l softmax(f_dec(z)), theta)``.
Guide: mean-field ``q(e_t) = N(mu_t, sigma_t^2)`` (free parameters, initialised at the prior)
and ``q(z_b | x, z_p)`` an MLP of ``[log-standardised x, z_p]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .base import Batch, PerturbationVAE
from .layers import VAR_EPS, GaussianEncoder
from .likelihood import NegativeBinomialDecoder
from .sparse_effects import dosage_effects

__all__ = ["CpaVAE"]


class CpaVAE(PerturbationVAE):
    """CPA-VAE.

    Parameters
    ----------
    n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs
        See :class:`~cradlekit.module.base.PerturbationVAE`.
    """

    name: ClassVar[str] = "cpa_vae"

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        n_obs_per_perturbation: Any,
        n_train: int,
        **kwargs: Any,
    ):
        super().__init__(n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs)
        Dz, H = self.latent_dim, self.hidden_dim
        self.e_loc = nn.Parameter(torch.zeros(n_perturbations, Dz))
        self.e_log_scale = nn.Parameter(torch.zeros(n_perturbations, Dz))
        self.basal_encoder = GaussianEncoder([n_genes, Dz], Dz, H, self.encoder_layers)
        self.decoder = NegativeBinomialDecoder([Dz], n_genes, H, self.decoder_layers)

    @property
    def e_scale(self) -> torch.Tensor:
        """Standard deviation of q(e)."""
        return torch.exp(self.e_log_scale) + VAR_EPS

    def model(self, batch: Batch) -> None:
        """p(x, z_b, e | D)."""
        ctx = self._context(batch)
        with self._per_cell(ctx):
            with self._perturbations(ctx):
                e = pyro.sample("e", self._latent_prior(ctx, self.n_perturbations, self.latent_dim))
            z_p = dosage_effects(ctx.D, e)
            with self._cells(ctx):
                z_b = pyro.sample("z_b", self._latent_prior(ctx, ctx.batch_size, self.latent_dim))
                rho = self.decoder.frequencies(z_b + z_p)
                pyro.sample("x", self.decoder.distribution(rho, ctx.library), obs=ctx.X)

    def guide(self, batch: Batch) -> None:
        """q(e) q(z_b | x, z_p)."""
        ctx = self._context(batch)
        with self._per_cell(ctx):
            with self._perturbations(ctx):
                e = pyro.sample("e", dist.Normal(self.e_loc, self.e_scale).to_event(1))
            z_p = dosage_effects(ctx.D, e)
            with self._cells(ctx):
                loc, scale = self.basal_encoder(self.normalize(ctx.X), z_p)
                pyro.sample("z_b", dist.Normal(loc, scale).to_event(1))

    def _generative_frequencies(self, D: torch.Tensor, artifact: bool) -> torch.Tensor:
        n = D.shape[0]
        z_b = torch.randn((n, self.latent_dim), device=D.device)
        cells, ts = torch.nonzero(D, as_tuple=True)
        e = self.e_loc[ts] + self.e_scale[ts] * torch.randn((ts.numel(), self.latent_dim), device=D.device)
        z_p = torch.zeros_like(z_b).index_add_(0, cells, D[cells, ts].unsqueeze(-1) * e)
        return self.decoder.frequencies(z_b + z_p)
