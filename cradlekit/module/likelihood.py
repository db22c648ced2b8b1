"""The shared observation model: a residual-MLP decoder to gene frequencies and a negative binomial.

``x_ig ~ NB(mean = l_i * softmax(f_dec(z_i))_g, inverse dispersion = theta_g)`` with one
learnable ``theta_g`` per gene shared by all cells (Algorithm 2 of the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .distributions import NegativeBinomial
from .layers import ConcatLinear, ResidualMLP

__all__ = ["NegativeBinomialDecoder"]


class NegativeBinomialDecoder(nn.Module):
    """Residual-MLP decoder with a softmax over genes and per-gene inverse dispersion.

    Parameters
    ----------
    in_dims
        Widths of the decoder inputs, concatenated (e.g. ``[D, D, D]`` for CRADLE-VAE's
        ``[z_b, z_p, z_a]``, ``[D, T]`` for the conditional VAE).
    n_genes
        Number of genes ``G``.
    n_hidden
        Hidden width (400).
    n_layers
        Hidden layers (2: the published ``decoder_n_layers=1`` plus one).
    """

    def __init__(self, in_dims: Sequence[int], n_genes: int, n_hidden: int = 400, n_layers: int = 2):
        super().__init__()
        self.mlp = ResidualMLP(in_dims, n_hidden, n_layers, residual=True)
        self.out = nn.Linear(n_hidden, n_genes)
        self.log_theta = nn.Parameter(torch.zeros(n_genes))

    @property
    def theta(self) -> torch.Tensor:
        """Per-gene inverse dispersion ``exp(log_theta)``."""
        return torch.exp(self.log_theta)

    def frequencies(self, *zs: torch.Tensor) -> torch.Tensor:
        """Expected gene frequencies ``rho = softmax(f_dec(z))`` (rows sum to 1)."""
        return self.frequencies_from_preactivation(self.mlp.first(*zs))

    @property
    def first(self) -> ConcatLinear:
        """The first (concatenation) layer, for callers that assemble its input by parts."""
        return self.mlp.first

    def frequencies_from_preactivation(self, pre: torch.Tensor) -> torch.Tensor:
        """``rho`` from the first layer's pre-activation (see :attr:`first`)."""
        return torch.softmax(self.out(self.mlp.trunk(pre)), dim=-1)

    def distribution(
        self, rho: torch.Tensor, library_size: torch.Tensor, theta: torch.Tensor | None = None
    ) -> NegativeBinomial:
        """NB with mean ``library_size[..., None] * rho`` (genes as the event dimension).

        ``theta``: an inverse dispersion to use instead of :attr:`theta` (broadcast against the
        mean, e.g. one row per cell).
        """
        return NegativeBinomial.from_frequencies(rho, library_size, self.theta if theta is None else theta)

    def sample(self, rho: torch.Tensor, library_size: torch.Tensor, theta: torch.Tensor | None = None) -> torch.Tensor:
        """Draw counts from the NB (uses the global torch RNG of ``rho``'s device)."""
        return self.distribution(rho, library_size, theta).sample()
