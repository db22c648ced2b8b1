"""Batched generation of cells (Algorithm 3), shared by every model.

The model supplies ``_generative_frequencies(D, artifact)``: for each row of ``D`` it draws the
latents (``z_b`` from the prior, perturbation latents from the guide, one independent draw per
generated cell) and returns the gene frequencies ``rho``. This module repeats the dosage rows,
runs that in chunks of cells (one forward pass per chunk, no per-cell loop) and either returns
``library_size * rho`` or samples NB counts from it, under an optional seed that leaves the
global RNG state untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import torch

from .._logging import logger

__all__ = ["generate_cells", "seeded", "Generative"]


class Generative(Protocol):
    """What generation needs of a model (every :class:`~cradlekit.module.base.PerturbationVAE` has it).

    A protocol rather than an import of the base class, which itself calls :func:`generate_cells`:
    the dependency runs one way, base -> generation.
    """

    decoder: torch.nn.Module
    has_artifact: bool
    n_genes: int
    n_perturbations: int
    training: bool

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""

    def _generative_frequencies(self, D: torch.Tensor, artifact: bool) -> torch.Tensor: ...

    def generative_theta(self, artifact: bool) -> torch.Tensor | None:
        """The likelihood's dispersion for artifact (``True``) or clean cells; ``None`` for none."""

    def eval(self) -> torch.nn.Module:
        """Switch to evaluation mode (``torch.nn.Module.eval``)."""

    def train(self, mode: bool = True) -> torch.nn.Module:
        """Switch training mode on or off (``torch.nn.Module.train``)."""


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed the RNG of ``device`` (and the CPU's) inside the block; restore both afterwards.

    With ``seed=None`` the block uses the global RNG as it is.
    """
    if seed is None:
        yield
        return
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(int(seed))
        if cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


@torch.no_grad()
def generate_cells(
    module: Generative,
    D_rows: torch.Tensor,
    n_per_row: int,
    library_size: float = 1e4,
    artifact: bool = False,
    seed: int | None = None,
    batch_size: int = 4096,
    sample_counts: bool = True,
) -> torch.Tensor:
    """Generate ``n_per_row`` cells for each dosage row.

    Parameters
    ----------
    module
        A trained model.
    D_rows
        ``(k, T)`` dosage rows (zero row: control).
    n_per_row
        Cells per row; output rows ``i * n_per_row`` to ``(i + 1) * n_per_row - 1`` belong to
        ``D_rows[i]``.
    library_size
        Library size of every generated cell.
    artifact
        Switch the artifact embedding on (CRADLE-VAE only).
    seed
        Optional seed (see :func:`seeded`).
    batch_size
        Generated cells per forward pass.
    sample_counts
        Return NB counts (True) or the expected expression ``library_size * rho`` (False).

    Returns
    -------
    torch.Tensor
        ``(k * n_per_row, G)`` float32 on the module's device.
    """
    if artifact and not module.has_artifact:
        raise ValueError(f"{type(module).__name__} has no artifact latent; use artifact=False")
    device = module.device
    D_rows = torch.as_tensor(D_rows, dtype=torch.float32, device=device)
    if D_rows.dim() != 2 or D_rows.shape[1] != module.n_perturbations:
        raise ValueError(
            f"D_rows must have shape (k, {module.n_perturbations}), got {tuple(D_rows.shape)}"
        )
    if n_per_row < 1 or batch_size < 1:
        raise ValueError("n_per_row and batch_size must be >= 1")
    D_all = D_rows.repeat_interleave(int(n_per_row), dim=0)
    n_total = D_all.shape[0]
    out = torch.empty((n_total, module.n_genes), device=device)
    was_training = module.training
    module.eval()
    try:
        with seeded(seed, device):
            for start in range(0, n_total, batch_size):
                D = D_all[start : start + batch_size]
                rho = module._generative_frequencies(D, artifact)
                lib = torch.full((D.shape[0],), float(library_size), device=device)
                if sample_counts:
                    out[start : start + D.shape[0]] = module.decoder.sample(rho, lib, module.generative_theta(artifact))
                else:
                    out[start : start + D.shape[0]] = lib[:, None] * rho
    finally:
        module.train(was_training)
    logger.debug("generated %d cells for %d dosage rows", n_total, D_rows.shape[0])
    return out
