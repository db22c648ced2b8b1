"""Data a model cannot learn from, caught at setup with a clear message instead of failing inside Pyro
(or, worse, training a model of nothing)."""

from __future__ import annotations

from collections.abc import Sequence

from .._logging import logger
from ..errors import EmptyPerturbationError, InvalidCountsError

__all__ = ["check_trainable", "MIN_CELLS_PER_PERTURBATION"]

#: Fewest training cells per perturbation (per condition for sVAE+) before setup warns: with fewer,
#: a perturbation's latent effect is fitted to a handful of cells and its generated cells (and the
#: metrics computed from them) mostly reflect the prior.
MIN_CELLS_PER_PERTURBATION = 10


def check_trainable(n_genes: int, names: Sequence[str], n_cells: Sequence[int], *, control: str) -> None:
    """Refuse data with no genes or no non-control perturbation; warn about thinly covered perturbations.

    Parameters
    ----------
    n_genes
        Genes (columns) of the AnnData.
    names, n_cells
        The model's perturbation inputs (targets, or sVAE+ conditions) and their training cells.
    control
        The control label (for the message).

    Raises
    ------
    cradlekit.errors.InvalidCountsError
        No genes.
    cradlekit.errors.EmptyPerturbationError
        No perturbation other than the control among the training cells.
    """
    if n_genes == 0:
        raise InvalidCountsError(
            "the AnnData has no genes (0 columns), so there is nothing to model; check the gene selection "
            "(e.g. adata[:, mask] or a highly-variable-gene filter) that produced it"
        )
    if len(names) == 0:
        raise EmptyPerturbationError(
            f"the training cells contain only the control ({control!r}): no perturbation to learn. Check the "
            "perturbation column and control label (cradlekit.data.standardize_perturbations) and the split"
        )
    thin = {str(n): int(c) for n, c in zip(names, n_cells, strict=True) if int(c) < MIN_CELLS_PER_PERTURBATION}
    if thin:
        shown = ", ".join(f"{n} ({c})" for n, c in list(thin.items())[:20])
        logger.warning(
            "%d perturbation(s) have fewer than %d training cells, so their effects are poorly determined: %s%s",
            len(thin), MIN_CELLS_PER_PERTURBATION, shown, " ..." if len(thin) > 20 else "",
        )
