"""Neural-network building blocks shared by every model.

All blocks use LeakyReLU and no batch normalisation, as in the published CRADLE-VAE and
SAMS-VAE code. Hidden layers have a constant width; in a *residual* MLP every hidden layer
after the first adds its input back (``h <- act(W h + b) + h``).

The first layer of every network is a :class:`ConcatLinear`: a linear map of a
concatenation of inputs, computed as a sum of per-input linear maps so that the
concatenation is never materialised and inputs with different leading (particle) dimensions
broadcast against each other. This is exactly ``nn.Linear`` applied to ``torch.cat(xs, -1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "ConcatLinear",
    "ResidualMLP",
    "GaussianEncoder",
    "PerturbationEmbeddingEncoder",
    "VAR_EPS",
]

#: Added to the variance of every Gaussian encoder (published value).
VAR_EPS = 1e-4


class ConcatLinear(nn.Module):
    """``nn.Linear`` on ``torch.cat(xs, dim=-1)`` without building the concatenation.

    Parameters
    ----------
    in_dims
        Width of each input, in order.
    out_dim
        Output width.

    Notes
    -----
    Weights are initialised like a single ``nn.Linear(sum(in_dims), out_dim)`` (uniform with
    bound ``1/sqrt(sum(in_dims))``), so the network is the same function family and the same
    initial distribution as the concatenated version. Inputs broadcast over their leading
    dimensions: ``x`` of shape ``(B, G)`` combines with ``z`` of shape ``(P, B, D)``.
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int):
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        self.out_dim = int(out_dim)
        bound = 1.0 / math.sqrt(sum(self.in_dims))
        self.parts = nn.ModuleList(
            nn.Linear(d, out_dim, bias=(k == 0)) for k, d in enumerate(self.in_dims)
        )
        with torch.no_grad():
            for lin in self.parts:
                lin.weight.uniform_(-bound, bound)
            self.parts[0].bias.uniform_(-bound, bound)

    def part(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Contribution ``W_k x`` of input ``k`` (the bias belongs to input 0)."""
        return self.parts[k](x)

    def onehot_rows(self, k: int, index: torch.Tensor | None = None) -> torch.Tensor:
        """``onehot(index) @ W_k.T``: rows of ``W_k.T`` (all rows when ``index`` is None).

        Equivalent to feeding a one-hot input to part ``k`` without the matrix product.
        """
        w = self.parts[k].weight.t()
        out = w if index is None else w[index]
        if k == 0:
            out = out + self.parts[0].bias
        return out

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Apply the layer to the inputs (one per entry of ``in_dims``)."""
        if len(xs) != len(self.parts):
            raise ValueError(f"expected {len(self.parts)} inputs, got {len(xs)}")
        out = self.parts[0](xs[0])
        for lin, x in zip(self.parts[1:], xs[1:], strict=True):
            out = out + lin(x)
        return out


class ResidualMLP(nn.Module):
    """MLP with constant hidden width, LeakyReLU, optional residual connections.

    ``h_1 = act(first(*xs))`` then, for each further layer, ``h <- act(W h + b) (+ h)``.

    Parameters
    ----------
    in_dims
        Widths of the inputs (see :class:`ConcatLinear`).
    n_hidden
        Hidden width; also the output width.
    n_layers
        Number of hidden layers (at least 1).
    residual
        Add the skip connection on layers 2..n (the published ``ResidualMLP``).
    """

    def __init__(self, in_dims: Sequence[int], n_hidden: int, n_layers: int, residual: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ValueError("n_layers must be >= 1")
        self.first = ConcatLinear(in_dims, n_hidden)
        self.hidden = nn.ModuleList(nn.Linear(n_hidden, n_hidden) for _ in range(n_layers - 1))
        self.act = nn.LeakyReLU()
        self.residual = residual
        self.n_hidden = n_hidden

    def trunk(self, pre: torch.Tensor) -> torch.Tensor:
        """Run the network from the first layer's pre-activation ``pre``."""
        h = self.act(pre)
        for lin in self.hidden:
            h = self.act(lin(h)) + h if self.residual else self.act(lin(h))
        return h

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """Hidden representation of the (concatenated) inputs."""
        return self.trunk(self.first(*xs))


class GaussianEncoder(nn.Module):
    """Diagonal-Gaussian head on a :class:`ResidualMLP`.

    Returns ``(loc, scale)`` with ``scale = sqrt(exp(log_var) + 1e-4)`` (published variance floor).

    Parameters
    ----------
    in_dims
        Widths of the inputs.
    out_dim
        Latent width.
    n_hidden, n_layers, residual
        See :class:`ResidualMLP`.
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        out_dim: int,
        n_hidden: int,
        n_layers: int,
        residual: bool = True,
    ):
        super().__init__()
        self.mlp = ResidualMLP(in_dims, n_hidden, n_layers, residual=residual)
        self.loc = nn.Linear(n_hidden, out_dim)
        self.log_var = nn.Linear(n_hidden, out_dim)

    @property
    def first(self) -> ConcatLinear:
        """The first (concatenation) layer, for callers that assemble its input by parts."""
        return self.mlp.first

    def head(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian parameters from a hidden representation."""
        scale = torch.sqrt(torch.exp(self.log_var(h)) + VAR_EPS)
        return self.loc(h), scale

    def from_preactivation(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian parameters from the first layer's pre-activation."""
        return self.head(self.mlp.trunk(pre))

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of q(z | inputs)."""
        return self.head(self.mlp(*xs))


class PerturbationEmbeddingEncoder(nn.Module):
    """q(e_t | m_t): residual-MLP Gaussian encoder of ``[m_t, onehot(t)]``.

    The one-hot part of the first layer is a row lookup, so no ``T x T`` identity is built.

    Parameters
    ----------
    n_latent
        Latent width ``D``.
    n_perturbations
        Number of perturbations ``T``.
    n_hidden
        Hidden width (400).
    n_layers
        Hidden layers (4 in the paper).
    """

    def __init__(self, n_latent: int, n_perturbations: int, n_hidden: int = 400, n_layers: int = 4):
        super().__init__()
        self.encoder = GaussianEncoder([n_latent, n_perturbations], n_latent, n_hidden, n_layers)

    def forward(
        self, m: torch.Tensor, t_index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of q(e | m).

        Parameters
        ----------
        m
            Masks: ``(..., T, D)`` for all perturbations (``t_index`` None), or ``(n, D)`` rows
            whose perturbation is ``t_index`` ``(n,)``.
        t_index
            Perturbation index of each row of ``m``; None when ``m`` covers all ``T`` in order.
        """
        first = self.encoder.first
        pre = first.part(0, m) + first.onehot_rows(1, t_index)
        return self.encoder.from_preactivation(pre)
