"""Log-standardisation of encoder inputs: ``(log1p(x) - mean_g) / std_g``.

The per-gene statistics come from the training split (:func:`log_standardize_stats`) and are
stored as buffers, so they move with the module between devices and are saved in checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["LogStandardize", "log_standardize_stats"]

#: Genes whose training standard deviation is below this are divided by 1 instead.
STD_FLOOR = 1e-6


def log_standardize_stats(
    X: Any, *, chunk_size: int = 8192, std_floor: float = STD_FLOOR
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-gene mean and standard deviation of ``log1p(X)``.

    Parameters
    ----------
    X
        ``(n_cells, n_genes)`` counts of the training split: a torch tensor, a numpy array or a
        scipy sparse matrix. Processed in row chunks, accumulated in float64.
    chunk_size
        Rows per chunk.
    std_floor
        Standard deviations below this (genes constant in training, e.g. all zero) are replaced
        by 1, so such genes are only centred. (The published code divides by zero there and
        clips the resulting infinities to 1e6.)

    Returns
    -------
    mean, std
        float32 tensors of shape ``(n_genes,)`` (population standard deviation, ``ddof=0``),
        on the device of ``X`` when ``X`` is a tensor, else on the CPU.
    """
    n = X.shape[0]
    if n == 0:
        raise ValueError("cannot compute log-standardisation statistics from zero cells")
    device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    total = torch.zeros(X.shape[1], dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    for start in range(0, n, chunk_size):
        block = X[start : start + chunk_size]
        if hasattr(block, "toarray"):
            block = block.toarray()
        block = torch.as_tensor(np.asarray(block) if not isinstance(block, torch.Tensor) else block)
        logx = torch.log1p(block.to(device=device, dtype=torch.float64))
        total += logx.sum(0)
        total_sq += (logx * logx).sum(0)
    mean = total / n
    var = (total_sq / n - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std < std_floor, torch.ones_like(std), std)
    return mean.float(), std.float()


class LogStandardize(nn.Module):
    """``(log1p(x) - mean) / std`` with per-gene buffers.

    Parameters
    ----------
    n_genes
        Number of genes.
    mean, std
        Statistics from :func:`log_standardize_stats`; when omitted, the module only applies
        ``log1p`` (mean 0, std 1).
    """

    def __init__(
        self, n_genes: int, mean: torch.Tensor | None = None, std: torch.Tensor | None = None
    ):
        super().__init__()
        mean = torch.zeros(n_genes) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        std = torch.ones(n_genes) if std is None else torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (n_genes,) or std.shape != (n_genes,):
            raise ValueError(
                f"log-standardisation statistics must have shape ({n_genes},), "
                f"got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not bool((std > 0).all()):
            raise ValueError("log-standardisation std must be positive")
        # created on the CPU like the parameters; ``module.to(device)`` moves them together
        self.register_buffer("mean", mean.detach().float().cpu().clone())
        self.register_buffer("std", std.detach().float().cpu().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised ``log1p(x)``."""
        return (torch.log1p(x) - self.mean) / self.std
