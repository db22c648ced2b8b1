r"""The linear baseline of Ahlmann-Eltze, Huber & Anders (*Nat Methods* 2025).

The training effects (genes × training perturbations, ``Y``: each perturbation's mean normalised
expression minus the controls') are modelled as

.. math:: Y \approx G\,W\,P + b\,\mathbf{1}^\top

* ``G`` (genes × K): a gene embedding, the first K principal-component coordinates of the genes in
  the training pseudobulk expression (genes as observations, one variable per training condition,
  controls included), as the authors build it;
* ``P`` (K × perturbations): a perturbation embedding. ``"target_gene"`` (the authors' choice): the
  row of ``G`` of the perturbed gene, which needs every target in the gene panel.
  ``"training_data"``: the first K principal-component scores of each target's single effect on
  the training cells (targets as observations; a target trained only inside combinations has the
  effect :func:`~cradlekit.baselines.training_effects.single_effects` derives), for panels that do
  not hold the targets. A combination's embedding is the sum of its targets' (the authors'
  double-perturbation model);
* ``b``: the mean training effect of each gene;
* ``W`` (K × K): ridge regression on both sides,
  ``W = (GᵀG + λI)⁻¹ Gᵀ (Y − b) Pᵀ (P Pᵀ + λI)⁻¹``, with the authors' ``K = 10`` and ``λ = 0.1``.

``"auto"`` takes ``"target_gene"`` when every target is a gene of the panel, else ``"training_data"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import SPLIT_KEY, artifact_key as _artifact_key
from .._validation import get_counts
from ..data.perturbations import cell_labels, perturbation_info
from .training_effects import (
    TRAIN_SPLIT,
    baseline_result,
    requested_perturbations,
    single_effects,
    targets_of,
    training_ate,
)

__all__ = ["linear_baseline", "ridge_bilinear"]

Embedding = Literal["auto", "target_gene", "training_data"]


def ridge_bilinear(Y: np.ndarray, G: np.ndarray, P: np.ndarray, ridge: float) -> np.ndarray:
    """``W`` minimising ``‖Y − G W P‖² + λ‖·‖²`` on each side: ``(GᵀG + λI)⁻¹ Gᵀ Y Pᵀ (PPᵀ + λI)⁻¹``.

    Parameters
    ----------
    Y
        Genes × conditions (already centred).
    G, P
        Genes × K and K' × conditions.
    ridge
        λ ≥ 0.
    """
    left = np.linalg.solve(G.T @ G + ridge * np.eye(G.shape[1]), G.T @ Y)
    right = np.linalg.solve(P @ P.T + ridge * np.eye(P.shape[0]), P).T  # Pᵀ (PPᵀ + λI)⁻¹
    return left @ right


def linear_baseline(
    adata: AnnData,
    *,
    perturbations: Sequence[str] | None = None,
    artifact_key: str = _artifact_key(3),
    train_split: str | Sequence[str] = TRAIN_SPLIT,
    split_key: str = SPLIT_KEY,
    n_components: int = 10,
    ridge: float = 0.1,
    perturbation_embedding: Embedding = "auto",
) -> AnnData:
    """Predict effects with the authors' linear model fitted on the training cells.

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
    n_components
        ``K``, at most the number of training conditions minus one.
    ridge
        ``λ`` of both ridge penalties.
    perturbation_embedding
        ``"auto"``, ``"target_gene"`` or ``"training_data"`` (see the module docstring).

    Returns
    -------
    AnnData
        Perturbations × genes in the layout of :func:`cradlekit.evaluate.data_ate`;
        ``uns['baseline']`` records ``n_components``, ``ridge`` and the embedding used. A label
        with a target that has no embedding (no single-perturbation training cells, or not in
        the panel for ``"target_gene"``) is left out (``not_predicted``).

    Raises
    ------
    ValueError
        ``"target_gene"`` with a target outside the gene panel; fewer than two training
        conditions with an embedding; ``n_components < 1`` or ``ridge < 0``.
    """
    if int(n_components) < 1 or float(ridge) < 0:
        raise ValueError(f"n_components must be >= 1 and ridge >= 0, got {n_components} and {ridge}")
    if perturbation_embedding not in ("auto", "target_gene", "training_data"):
        raise ValueError(
            f"perturbation_embedding must be 'auto', 'target_gene' or 'training_data', got {perturbation_embedding!r}"
        )
    _, control = perturbation_info(adata)
    train = training_ate(adata, artifact_key=artifact_key, train_split=train_split, split_key=split_key)
    requested = requested_perturbations(adata, perturbations)
    genes = pd.Index(train.var_names.astype(str))
    change = pd.DataFrame(np.asarray(train.X, dtype=np.float64), index=train.obs_names.astype(str), columns=genes)
    control_mean = _control_mean(adata, artifact_key, train_split, split_key)
    expression = pd.concat([change + control_mean, pd.DataFrame([control_mean], index=[control], columns=genes)])
    labels = list(change.index) + list(requested)
    targets = sorted({t for p in labels for t in targets_of(p, control)})
    mode = perturbation_embedding
    if mode == "auto":
        mode = "target_gene" if all(t in genes for t in targets) else "training_data"
    k_max = max(1, min(int(n_components), expression.shape[0]))  # conditions incl. the control: K <= n_cond
    G = _gene_embedding(expression.to_numpy(), k_max)
    embed = _target_embedding(mode, train, G, genes, control, int(n_components))
    fit_rows = [p for p in change.index if all(t in embed for t in targets_of(p, control))]
    if len(fit_rows) < 2:
        raise ValueError(
            f"the linear baseline needs at least two training conditions with an embedding, got {fit_rows}"
        )
    P_fit = np.stack([_embed(p, embed, control) for p in fit_rows], axis=1)
    Y = change.loc[fit_rows].to_numpy().T  # genes × conditions
    center = Y.mean(axis=1, keepdims=True)
    W = ridge_bilinear(Y - center, G, P_fit, float(ridge))
    predictions = {p: (G @ W @ _embed(p, embed, control) + center[:, 0]) for p in requested
                   if all(t in embed for t in targets_of(p, control))}
    return baseline_result(predictions, requested, genes, name="linear", control=control,
                           info={"n_components": int(G.shape[1]), "ridge": float(ridge),
                                 "perturbation_embedding": mode, "n_training_conditions": len(fit_rows)})


def _control_mean(adata: AnnData, artifact_key: str, train_split: str | Sequence[str], split_key: str) -> np.ndarray:
    """Mean normalised expression of the QC-passed training control cells."""
    from ..evaluate.log_normalize import perturbseq_normalize

    key, control = perturbation_info(adata)
    splits = [train_split] if isinstance(train_split, str) else list(train_split)
    rows = (cell_labels(adata, key, control).to_numpy() == control) & adata.obs[split_key].astype(str).isin(
        splits
    ).to_numpy()
    rows &= pd.to_numeric(adata.obs[artifact_key]).to_numpy() == 0
    normalized = perturbseq_normalize(get_counts(adata, None)[np.flatnonzero(rows)], zero_total="zero")
    return np.asarray(normalized.mean(axis=0), dtype=np.float64).ravel()


def _gene_embedding(expression: np.ndarray, k: int) -> np.ndarray:
    """Genes × k principal-component coordinates (genes as observations, conditions as variables)."""
    X = expression.T  # genes × conditions
    X = X - X.mean(axis=0, keepdims=True)
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    k = min(k, int((S > S[0] * 1e-10).sum()) if S.size else 0) or 1
    return U[:, :k] * S[:k]


def _target_embedding(mode: str, train: AnnData, G: np.ndarray, genes: pd.Index, control: str,
                      n_components: int) -> dict[str, np.ndarray]:
    """K-vector of each single target that has one."""
    if mode == "target_gene":
        position = {g: i for i, g in enumerate(genes)}
        singles = {t for p in train.obs_names for t in targets_of(str(p), control)}
        absent = sorted(t for t in singles if t not in position)
        if absent:
            raise ValueError(
                f"perturbation_embedding='target_gene' needs every target in the gene panel; absent: {absent[:10]}"
            )
        return {t: G[position[t]] for t in singles}
    effects = single_effects(train, control)[0]
    if len(effects) < 2:
        return {}
    names = sorted(effects)
    X = np.stack([effects[t] for t in names])
    X = X - X.mean(axis=0, keepdims=True)
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    k = max(1, min(n_components, len(names) - 1))
    scores = U[:, :k] * S[:k]
    return {t: scores[i] for i, t in enumerate(names)}


def _embed(label: str, embed: dict[str, np.ndarray], control: str) -> np.ndarray:
    return np.sum([embed[t] for t in targets_of(label, control)], axis=0)
