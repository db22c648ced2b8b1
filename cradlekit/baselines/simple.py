"""The no-change, mean and additive baselines (Ahlmann-Eltze, Huber & Anders, 2025)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from .._keys import SPLIT_KEY, artifact_key as _artifact_key
from ..data.perturbations import perturbation_info
from .training_effects import (
    TRAIN_SPLIT,
    baseline_result,
    requested_perturbations,
    single_effects,
    targets_of,
    training_ate,
)

__all__ = ["no_change_baseline", "mean_baseline", "additive_baseline"]


def no_change_baseline(
    adata: AnnData,
    *,
    perturbations: Sequence[str] | None = None,
    artifact_key: str = _artifact_key(3),
    train_split: str | Sequence[str] = TRAIN_SPLIT,
    split_key: str = SPLIT_KEY,
) -> AnnData:
    """ATE 0 for every perturbation: nothing changes.

    Parameters
    ----------
    adata
        Raw counts set up with :func:`cradlekit.data.setup` (or a manifest loader).
    perturbations
        Labels to predict; ``None``: every non-control label of ``adata``.
    artifact_key, train_split, split_key
        Accepted for a uniform signature with the other baselines (unused).

    Returns
    -------
    AnnData
        Perturbations × genes zeros in the layout of :func:`cradlekit.evaluate.data_ate`.
    """
    _, control = perturbation_info(adata)
    requested = requested_perturbations(adata, perturbations)
    zeros = np.zeros(adata.n_vars)
    return baseline_result({p: zeros for p in requested}, requested, adata.var_names, name="no_change", control=control)


def mean_baseline(
    adata: AnnData,
    *,
    perturbations: Sequence[str] | None = None,
    artifact_key: str = _artifact_key(3),
    train_split: str | Sequence[str] = TRAIN_SPLIT,
    split_key: str = SPLIT_KEY,
) -> AnnData:
    """The mean ATE of the training perturbations, predicted for every perturbation.

    Parameters
    ----------
    adata
        Raw counts, QC-labelled and split (see :func:`~cradlekit.baselines.training_ate`).
    perturbations
        Labels to predict; ``None``: every non-control label of ``adata``.
    artifact_key
        QC label: only QC-passed training cells are used.
    train_split, split_key
        Which cells are training cells.

    Returns
    -------
    AnnData
        One identical row per perturbation; ``uns['baseline']['n_training_perturbations']``.
    """
    _, control = perturbation_info(adata)
    train = training_ate(adata, artifact_key=artifact_key, train_split=train_split, split_key=split_key)
    mean = np.asarray(train.X, dtype=np.float64).mean(axis=0)
    requested = requested_perturbations(adata, perturbations)
    return baseline_result({p: mean for p in requested}, requested, train.var_names, name="mean", control=control,
                           info={"n_training_perturbations": int(train.n_obs)})


def additive_baseline(
    adata: AnnData,
    *,
    perturbations: Sequence[str] | None = None,
    artifact_key: str = _artifact_key(3),
    train_split: str | Sequence[str] = TRAIN_SPLIT,
    split_key: str = SPLIT_KEY,
) -> AnnData:
    """ATE(A+B) = ATE(A) + ATE(B), each single's ATE from its training cells.

    A single perturbation's prediction is its own training ATE (a sum of one term). A target seen
    in training only inside combinations gets its effect from them
    (:func:`~cradlekit.baselines.training_effects.single_effects`; listed in
    ``uns['baseline']['derived_from_combinations']``). A label with a target that has no training
    cells at all cannot be predicted and is left out (``uns['baseline']['not_predicted']``).

    Parameters
    ----------
    adata
        Raw counts, QC-labelled and split (see :func:`~cradlekit.baselines.training_ate`).
    perturbations
        Labels to predict; ``None``: every non-control label of ``adata``.
    artifact_key
        QC label: only QC-passed training cells are used.
    train_split, split_key
        Which cells are training cells.

    Returns
    -------
    AnnData
        Perturbations × genes in the layout of :func:`cradlekit.evaluate.data_ate`.
    """
    _, control = perturbation_info(adata)
    train = training_ate(adata, artifact_key=artifact_key, train_split=train_split, split_key=split_key)
    effects, derived = single_effects(train, control)
    requested = requested_perturbations(adata, perturbations)
    predictions = {p: np.sum([effects[t] for t in targets_of(p, control)], axis=0) for p in requested
                   if all(t in effects for t in targets_of(p, control))}
    return baseline_result(predictions, requested, train.var_names, name="additive", control=control,
                           info={"n_targets": len(effects), "derived_from_combinations": derived})
