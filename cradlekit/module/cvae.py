"""Conditional VAE: the perturbation enters the encoder and the decoder as an input.

Model: ``z ~ N(0, I)``, ``x ~ NB(l softmax(f_dec([z, p_i])), theta)`` with ``p_i`` the dosage row.
Guide: ``q(z | x, p_i)`` an MLP of ``[log-standardised x, p_i]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch

from .base import Batch, PerturbationVAE
from .layers import GaussianEncoder
from .likelihood import NegativeBinomialDecoder

__all__ = ["ConditionalVAE"]


class ConditionalVAE(PerturbationVAE):
    """Conditional VAE.

    Parameters
    ----------
    n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs
        See :class:`~cradlekit.module.base.PerturbationVAE`. ``n_obs_per_perturbation`` is only
        validated (the model has no perturbation-plated latent).
    """

    name: ClassVar[str] = "cvae"

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        n_obs_per_perturbation: Any,
        n_train: int,
        **kwargs: Any,
    ):
        super().__init__(n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs)
        Dz, H, T = self.latent_dim, self.hidden_dim, n_perturbations
        self.encoder = GaussianEncoder([n_genes, T], Dz, H, self.encoder_layers)
        self.decoder = NegativeBinomialDecoder([Dz, T], n_genes, H, self.decoder_layers)

    def model(self, batch: Batch) -> None:
        """p(x, z | D)."""
        ctx = self._context(batch)
        with self._per_cell(ctx), self._cells(ctx):
            z = pyro.sample("z", self._latent_prior(ctx, ctx.batch_size, self.latent_dim))
            rho = self.decoder.frequencies(z, ctx.D)
            pyro.sample("x", self.decoder.distribution(rho, ctx.library), obs=ctx.X)

    def guide(self, batch: Batch) -> None:
        """q(z | x, D)."""
        ctx = self._context(batch)
        with self._per_cell(ctx), self._cells(ctx):
            loc, scale = self.encoder(self.normalize(ctx.X), ctx.D)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def _generative_frequencies(self, D: torch.Tensor, artifact: bool) -> torch.Tensor:
        z = torch.randn((D.shape[0], self.latent_dim), device=D.device)
        return self.decoder.frequencies(z, D)
