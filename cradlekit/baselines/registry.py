"""The baselines by name: what the experiment runner, the report and the widgets look up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from anndata import AnnData

from .linear import linear_baseline
from .simple import additive_baseline, mean_baseline, no_change_baseline

__all__ = ["BASELINES", "BASELINE_LABELS", "is_baseline", "predict_baseline"]

#: Name -> function ``(adata, *, perturbations, artifact_key, ...) -> ATE AnnData``.
BASELINES: dict[str, Callable[..., AnnData]] = {
    "no_change": no_change_baseline,
    "mean": mean_baseline,
    "additive": additive_baseline,
    "linear": linear_baseline,
}
#: Display names in tables.
BASELINE_LABELS = {
    "no_change": "Baseline: no change",
    "mean": "Baseline: mean of training perturbations",
    "additive": "Baseline: additive (training singles)",
    "linear": "Baseline: linear (Ahlmann-Eltze et al.)",
}


def is_baseline(name: str) -> bool:
    """Whether ``name`` is a baseline of :data:`BASELINES` (not a trained model)."""
    return name in BASELINES


def predict_baseline(
    name: str, adata: AnnData, *, perturbations: Sequence[str] | None = None, **options: Any
) -> AnnData:
    """Run the baseline ``name`` (see :data:`BASELINES`) on ``adata``.

    Parameters
    ----------
    name
        ``"no_change"``, ``"mean"``, ``"additive"`` or ``"linear"``.
    adata
        Raw counts, QC-labelled and split.
    perturbations
        Labels to predict; ``None``: every non-control label.
    **options
        Keyword options of the baseline (``artifact_key``, ``train_split``; ``n_components``,
        ``ridge``, ``perturbation_embedding`` for ``linear``).

    Raises
    ------
    ValueError
        An unknown name.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[name](adata, perturbations=perturbations, **options)
