"""The training data every baseline learns from, and the layout every baseline returns.

:func:`training_ate` is the data ATE (:func:`cradlekit.evaluate.data_ate`) of every perturbation
on the QC-passed cells of the training split: exactly the cells a model fits (validation cells
only steer a model's early stopping, test cells are never seen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import SPLIT_KEY, artifact_key as _artifact_key
from .._logging import logger
from ..data.perturbations import canonicalize_labels, parse_perturbation, perturbation_info
from ..errors import MissingKeyError

__all__ = ["training_ate", "single_effects", "baseline_result", "requested_perturbations"]

#: The split whose cells the baselines learn from.
TRAIN_SPLIT = "train"


def training_ate(
    adata: AnnData,
    *,
    artifact_key: str = _artifact_key(3),
    train_split: str | Sequence[str] = TRAIN_SPLIT,
    split_key: str = SPLIT_KEY,
) -> AnnData:
    """Data ATE of every perturbation with QC-passed cells in the training split.

    Parameters
    ----------
    adata
        Raw counts labelled by :func:`cradlekit.qc.label_artifacts` and split by
        :func:`cradlekit.data.split_combinations` or :func:`~cradlekit.data.split_cells`.
    artifact_key
        ``obs`` column with ``a_i`` (only cells with 0 are used).
    train_split
        Value(s) of ``obs[split_key]`` that count as training cells.
    split_key
        The split column.

    Returns
    -------
    AnnData
        As :func:`cradlekit.evaluate.data_ate`: perturbations × genes, ``uns['ate']['split']``
        records the training split.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        No split column (split the data first) or no QC labels.
    """
    from ..evaluate import data_ate

    if split_key not in adata.obs.columns:
        raise MissingKeyError(
            f"adata.obs[{split_key!r}] not found: baselines learn from the training cells, so split the data "
            "first (cradlekit.data.split_combinations or split_cells)"
        )
    key, control = perturbation_info(adata)
    in_train = (
        adata.obs[split_key].astype(str).isin([train_split] if isinstance(train_split, str) else list(train_split))
    )
    labels = set(canonicalize_labels(adata.obs.loc[in_train, key].astype(str), control_label=control)) - {control}
    if not labels:
        raise MissingKeyError(f"no perturbed cell in the training split {train_split!r}")
    return data_ate(adata, artifact_key=artifact_key, perturbations=sorted(labels), split=train_split,
                    split_key=split_key, on_empty="skip")


def requested_perturbations(adata: AnnData, perturbations: Sequence[str] | None) -> list[str]:
    """Canonical labels to predict: ``perturbations`` or every non-control label of ``adata``."""
    key, control = perturbation_info(adata)
    if perturbations is None:
        perturbations = adata.obs[key].astype(str).unique()
    elif isinstance(perturbations, str):
        perturbations = [perturbations]
    labels = canonicalize_labels([str(p) for p in perturbations], control_label=control, what="perturbations")
    return [p for p in dict.fromkeys(labels) if p != control]


def targets_of(label: str, control: str) -> tuple[str, ...]:
    """The single targets of a canonical label (``("A", "B")`` for ``A+B``)."""
    return parse_perturbation(label, control_label=control)


def single_effects(train: AnnData, control: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Each target's single effect on the training cells, and the targets whose effect was derived.

    A target with single-perturbation training cells has its observed ATE. Targets seen in
    training only inside combinations (the combination split keeps such a target trained through
    a combination) get the additive model's least-squares estimate from those combinations: with
    the observed singles fixed, the effects ``β`` of the other targets minimise
    ``Σ_c ‖ATE(c) − Σ_{t∈c} β_t‖²`` over the training combinations ``c`` that contain one, with
    the minimum-norm solution where the combinations do not separate them (``A+B`` seen only
    together: each gets half of ``ATE(A+B)``; one combination ``T+X`` with ``X`` observed:
    ``ATE(T+X) − ATE(X)``).

    Parameters
    ----------
    train
        :func:`training_ate` of the data.
    control
        The control label.

    Returns
    -------
    effects, derived
        Target -> effect vector over the genes; the targets whose effect was derived.
    """
    X = np.asarray(train.X, dtype=np.float64)
    rows = {str(p): X[i] for i, p in enumerate(train.obs_names)}
    members = {p: targets_of(p, control) for p in rows}
    effects = {m[0]: rows[p] for p, m in members.items() if len(m) == 1}
    combos = [p for p, m in members.items() if len(m) > 1 and any(t not in effects for t in m)]
    unknown = sorted({t for p in combos for t in members[p] if t not in effects})
    if unknown:
        design = np.array([[float(t in members[p]) for t in unknown] for p in combos])
        residual = np.stack([rows[p] - sum((effects[t] for t in members[p] if t in effects), np.zeros(X.shape[1]))
                             for p in combos])
        beta = np.linalg.pinv(design) @ residual  # minimum-norm least squares, every gene at once
        effects.update({t: beta[i] for i, t in enumerate(unknown)})
    return effects, unknown


def baseline_result(
    predictions: dict[str, np.ndarray], requested: list[str], genes: pd.Index, *, name: str,
    control: str, info: dict[str, Any] | None = None,
) -> AnnData:
    """Predictions as an ATE AnnData (rows in ``requested`` order); unpredictable rows left out with a warning."""
    rows = [p for p in requested if p in predictions]
    missing = [p for p in requested if p not in predictions]
    if missing:
        logger.warning("baseline %r cannot predict %d perturbation(s) (a target without training cells): %s",
                       name, len(missing), missing[:10])
    X = np.vstack([predictions[p] for p in rows]) if rows else np.zeros((0, len(genes)))
    out = AnnData(X=np.asarray(X, dtype=np.float64), obs=pd.DataFrame(index=pd.Index(rows, dtype=str)),
                  var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
    out.uns["control"] = control
    out.uns["ate"] = {"source": f"baseline:{name}"}
    out.uns["baseline"] = {"name": name, "not_predicted": missing, **(info or {})}
    return out
