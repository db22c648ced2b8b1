"""SAMS-VAE (Bereket & Karaletsos, NeurIPS 2023): CRADLE-VAE without the artifact latent.

Model: ``m_t ~ Bernoulli(p)^D``, ``e_t ~ N(0, I)``, ``z_b ~ N(0, I)``,
``z = z_b + sum_t D_it (e_t * m_t)``, ``x ~ NB(l softmax(f_dec(z)), theta)``.
Guide: ``q(m_t)`` Gumbel-softmax logits, ``q(e_t | m_t)`` residual MLP of ``[m_t, onehot(t)]``,
``q(z_b | x, z_p)`` MLP of ``[log-standardised x, z_p]`` (the correlated guide).

``decoder_input="concat"`` decodes ``[z_b, z_p]`` (2 D wide) instead of ``z_b + z_p``: CRADLE-VAE's
decoder input without the artifact block. It is the first rung of the ladder from SAMS-VAE to
CRADLE-VAE (``configs/norman_ladder.yaml``), not a published model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import torch

from .base import Batch, PerturbationVAE
from .layers import GaussianEncoder
from .likelihood import NegativeBinomialDecoder
from .sparse_effects import SparseEffects, dosage_effects

__all__ = ["SamsVAE"]


class SamsVAE(PerturbationVAE):
    """SAMS-VAE with the correlated guide.

    Parameters
    ----------
    n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs
        See :class:`~cradlekit.module.base.PerturbationVAE`.
    mask_prior, embedding_layers, mask_init_logit, temperature
        See :class:`~cradlekit.module.sparse_effects.SparseEffects`.
    decoder_input
        ``"sum"`` (SAMS-VAE: ``f_dec(z_b + z_p)``) or ``"concat"`` (``f_dec([z_b, z_p])``).
    """

    name: ClassVar[str] = "sams_vae"
    takes_mask_prior: ClassVar[bool] = True

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        n_obs_per_perturbation: Any,
        n_train: int,
        *,
        mask_prior: float = 0.01,
        embedding_layers: int = 4,
        mask_init_logit: float = 0.0,
        temperature: float = 1.0,
        decoder_input: str = "sum",
        **kwargs: Any,
    ):
        super().__init__(n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs)
        if decoder_input not in ("sum", "concat"):
            raise ValueError(f"decoder_input must be 'sum' or 'concat', got {decoder_input!r}")
        self.decoder_input = decoder_input
        Dz, H = self.latent_dim, self.hidden_dim
        self.effects = SparseEffects(
            n_perturbations, Dz, H, embedding_layers, mask_prior, mask_init_logit, temperature
        )
        self.basal_encoder = GaussianEncoder([n_genes, Dz], Dz, H, self.encoder_layers)
        blocks = [Dz] if decoder_input == "sum" else [Dz, Dz]
        self.decoder = NegativeBinomialDecoder(blocks, n_genes, H, self.decoder_layers)

    def _frequencies(self, z_b: torch.Tensor, z_p: torch.Tensor) -> torch.Tensor:
        if self.decoder_input == "sum":
            return self.decoder.frequencies(z_b + z_p)
        return self.decoder.frequencies(z_b, z_p)  # the first layer broadcasts its parts

    def model(self, batch: Batch) -> None:
        """p(x, z_b, m, e | D)."""
        ctx = self._context(batch)
        with self._per_cell(ctx):
            with self._perturbations(ctx):
                m, e = self.effects.model_sites(ctx.X)
            z_p = dosage_effects(ctx.D, e * m)
            with self._cells(ctx):
                z_b = pyro.sample("z_b", self._latent_prior(ctx, ctx.batch_size, self.latent_dim))
                rho = self._frequencies(z_b, z_p)
                pyro.sample("x", self.decoder.distribution(rho, ctx.library), obs=ctx.X)

    def guide(self, batch: Batch) -> None:
        """q(m) q(e | m) q(z_b | x, z_p)."""
        ctx = self._context(batch)
        with self._per_cell(ctx):
            with self._perturbations(ctx):
                m, e = self.effects.guide_sites()
            z_p = dosage_effects(ctx.D, e * m)
            with self._cells(ctx):
                loc, scale = self.basal_encoder(self.normalize(ctx.X), z_p)
                pyro.sample("z_b", dist.Normal(loc, scale).to_event(1))

    def _generative_frequencies(self, D: torch.Tensor, artifact: bool) -> torch.Tensor:
        z_b = torch.randn((D.shape[0], self.latent_dim), device=D.device)
        return self._frequencies(z_b, self.effects.sample_effects(D))
