"""The counterfactual auxiliary loss J2 of CRADLE-VAE and the Gaussian KL it is built on.

``J2 = alpha * KL( q(z_b | x_cf_ref, z_p, z_a_cf) || q(z_b | x, z_p, z_a_cf) )`` for cells with a
counterfactual reference (the paper's Eq. (3)), where ``x_cf_ref`` is the median of up to 50 QC-failed cells
with the same perturbation and ``z_a_cf = (1 - a) u``.

Two versions:

exact
    The closed-form KL between diagonal Gaussians, summed over latent dimensions, averaged over
    particles, and **averaged over the cells of the batch** (cells without a reference count as
    zero, the denominator is the batch size), then multiplied by ``cells_per_batch``: with
    ``cells_per_batch = 512`` (the authors' batch size, the ``exact`` objective of
    :class:`~cradlekit.module.CradleVAE`) the term is on the published scale -- ``alpha x 512``
    per cell -- whatever the batch size; with ``cells_per_batch = 1`` it is a per-cell average like
    the ELBO (the weight the authors' ``alpha`` was *not* tuned for: J2 then carries ~0.1 % of the
    objective).
published
    The formula of the authors' ``kldiv_normal``: ``-0.5 * (1 + log s1^2 - log s2^2 - (m1 - m2)^2
    - s1^2 / s2^2)``, which drops the ``1 / s2^2`` factor of the squared mean difference, **summed**
    over cells and latent dimensions and averaged over particles, so its weight grows with the
    batch size.
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_kl", "published_gaussian_kl", "counterfactual_loss"]


def gaussian_kl(
    loc1: torch.Tensor, scale1: torch.Tensor, loc2: torch.Tensor, scale2: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL( N(loc1, scale1^2) || N(loc2, scale2^2) )``.

    Equals ``torch.distributions.kl_divergence(Normal(loc1, scale1), Normal(loc2, scale2))``.
    """
    var_ratio = (scale1 / scale2) ** 2
    mean_term = ((loc1 - loc2) / scale2) ** 2
    return 0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio))


def published_gaussian_kl(
    loc1: torch.Tensor, scale1: torch.Tensor, loc2: torch.Tensor, scale2: torch.Tensor
) -> torch.Tensor:
    """Elementwise published "KL": the squared mean difference is not divided by ``scale2^2``."""
    logvar1 = 2.0 * torch.log(scale1)
    logvar2 = 2.0 * torch.log(scale2)
    return -0.5 * (1.0 + logvar1 - logvar2 - (loc1 - loc2) ** 2 - torch.exp(logvar1 - logvar2))


def counterfactual_loss(
    ref_loc: torch.Tensor,
    ref_scale: torch.Tensor,
    cf_loc: torch.Tensor,
    cf_scale: torch.Tensor,
    cf_mask: torch.Tensor,
    alpha: float,
    *,
    published: bool = False,
    cells_per_batch: float = 1.0,
) -> torch.Tensor:
    """J2 from the encoder's distribution parameters.

    Parameters
    ----------
    ref_loc, ref_scale
        Parameters of ``q(z_b | x_cf_ref, z_p, z_a_cf)``, shape ``(..., B, D)`` (leading particle
        dimensions allowed).
    cf_loc, cf_scale
        Parameters of ``q(z_b | x, z_p, z_a_cf)``, same shape.
    cf_mask
        ``(B,)`` bool, True for cells that have a reference.
    alpha
        Weight of the loss.
    published
        Use the published formula and reduction (see the module docstring).
    cells_per_batch
        Exact version only: the per-cell average is multiplied by this (512 puts it on the
        published scale of a sum over a 512-cell batch).

    Returns
    -------
    torch.Tensor
        Scalar ``alpha * J2`` (to be added to the negative ELBO).
    """
    kl_fn = published_gaussian_kl if published else gaussian_kl
    per_cell = kl_fn(ref_loc, ref_scale, cf_loc, cf_scale).sum(-1)  # (..., B)
    per_cell = torch.where(cf_mask, per_cell, per_cell.new_zeros(()))
    n_lead = per_cell.dim() - 1
    per_particle = per_cell.sum(-1) if published else per_cell.mean(-1)
    value = per_particle.mean() if n_lead else per_particle
    return alpha * value if published else alpha * float(cells_per_batch) * value
