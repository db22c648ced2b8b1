"""The per-criterion QC flags of CRADLE-VAE with ``artifact_latent="per_criterion"``.

Such a model has one artifact latent ``u_c`` per QC criterion (:mod:`cradlekit.module.artifact_latents`).
Its registry records which criteria get one (``artifact_criteria``: those of the six that QC did not
skip and that have a flag column ``qc_fail_<criterion>_k<k>`` at the model's ``k``), their columns
(``artifact_flag_keys``) and how often each failure pattern occurs among the QC-failed training cells
(``artifact_patterns``, e.g. ``{"mito": 120, "doublet+mito": 4}``: what ``generate(..., artifact=True)``
draws). Its batches carry the flags (``A_criteria``) and, with J2, the counterfactual artifact of
each QC-passed cell (``A_cf``): the share of the failed cells behind its reference that failed each
criterion (:func:`reference_composition`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from .._keys import CF_INDEX_KEY, CRITERIA, QC_UNS_KEY
from ..errors import MissingKeyError

__all__ = ["criteria_registry", "criterion_flags", "reference_composition", "module_arguments", "criteria_columns"]


def _suffix(artifact_key: str) -> str:
    """``k3`` of ``artifact_k3``: the flag columns of the same ``k`` are ``qc_fail_<criterion>_k3``."""
    if not str(artifact_key).startswith("artifact_k"):
        raise MissingKeyError(
            f"artifact_latent='per_criterion' reads the flags qc_fail_<criterion>_k<k> of the model's k, which it "
            f"takes from an artifact key artifact_k<k>; got {artifact_key!r}"
        )
    return str(artifact_key).removeprefix("artifact_")


def criteria_registry(adata: AnnData, registry: Mapping[str, Any]) -> dict[str, Any]:
    """Registry entries of a per-criterion model: ``artifact_criteria``, ``artifact_flag_keys``, ``artifact_patterns``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        No flag column for any criterion at the model's ``k``.
    ValueError
        Flags that disagree with the artifact label (a cell failed but no criterion is flagged, or
        the reverse): the model could not tell which artifact a failed cell has.
    """
    suffix = _suffix(registry["artifact_key"])
    skipped = {str(s) for s in np.asarray(adata.uns.get(QC_UNS_KEY, {}).get("skipped", []), dtype=str).ravel().tolist()}
    criteria = [c for c in CRITERIA if c not in skipped and f"qc_fail_{c}_{suffix}" in adata.obs.columns]
    if not criteria:
        raise MissingKeyError(
            f"no QC flag columns qc_fail_<criterion>_{suffix} in adata.obs; label the cells with "
            "cradlekit.qc.label_artifacts(adata) before setting up a per-criterion model"
        )
    keys = [f"qc_fail_{c}_{suffix}" for c in criteria]
    flags = criterion_flags(adata, {"artifact_flag_keys": keys})
    a = adata.obs[registry["artifact_key"]].astype(int).to_numpy()
    disagree = flags.any(axis=1).astype(int) != a
    if disagree.any():
        raise ValueError(
            f"{int(disagree.sum())} cells have {registry['artifact_key']} that disagrees with their criterion flags "
            f"{keys} (a failed cell must fail at least one criterion with a latent, a passed cell none); relabel them "
            "with cradlekit.qc.label_artifacts"
        )
    train = (adata.obs[registry["split_key"]].astype(str) == "train").to_numpy() & (a == 1)
    patterns = Counter("+".join(c for c, f in zip(criteria, row, strict=True) if f)
                       for row in flags[train].astype(bool))
    return {
        "artifact_criteria": criteria,
        "artifact_flag_keys": keys,
        "artifact_patterns": {p: int(n) for p, n in sorted(patterns.items())},
    }


def criterion_flags(adata: AnnData, registry: Mapping[str, Any]) -> np.ndarray:
    """``(n_obs, C)`` float32 flags of the registry's criteria (columns ``artifact_flag_keys``).

    Raises
    ------
    cradlekit.errors.MissingKeyError
        A flag column is absent or has missing values.
    """
    keys = list(registry["artifact_flag_keys"])
    missing = [k for k in keys if k not in adata.obs.columns]
    if missing:
        raise MissingKeyError(f"QC flag columns {missing} not found in adata.obs; this per-criterion model reads "
                              f"{keys} (run cradlekit.qc.label_artifacts)")
    columns = [adata.obs[k] for k in keys]
    if any(col.isna().any() for col in columns):
        raise MissingKeyError(f"QC flag columns {keys} have missing values")
    return np.column_stack([col.astype(bool).to_numpy() for col in columns]).astype(np.float32)


def reference_composition(adata: AnnData, flags: np.ndarray, cf_mask: np.ndarray) -> np.ndarray:
    """``(n_obs, C)`` share of the failed cells behind each reference that failed each criterion.

    Read from ``obsm['cf_reference_idx']`` (written by
    :func:`cradlekit.data.counterfactual_references`); 0 for cells outside ``cf_mask`` (failed cells,
    whose counterfactual switches every criterion off, and passed cells without a reference).

    Raises
    ------
    cradlekit.errors.MissingKeyError
        The drawn cells are not recorded.
    ValueError
        They are stale (not QC-failed cells of this AnnData, e.g. after subsetting it).
    """
    if CF_INDEX_KEY not in adata.obsm:
        raise MissingKeyError(f"adata.obsm[{CF_INDEX_KEY!r}] not found: a per-criterion model reads which failed cells "
                              "are behind each reference; rebuild them with cradlekit.data.counterfactual_references")
    idx = np.asarray(adata.obsm[CF_INDEX_KEY])
    n, C = flags.shape
    failed = flags.any(axis=1)
    total = np.zeros((n, C), dtype=np.float64)
    count = np.zeros(n, dtype=np.int64)
    for j in range(idx.shape[1]):  # loop over the n_max draws, not cells
        col = idx[:, j]
        valid = (col >= 0) & cf_mask
        if not valid.any():
            continue
        rows = col[valid]
        if rows.max() >= n or not failed[rows].all():
            raise ValueError(f"adata.obsm[{CF_INDEX_KEY!r}] names cells that are not QC-failed cells of this AnnData "
                             "(stale after subsetting?); rebuild with cradlekit.data.counterfactual_references")
        total[valid] += flags[rows]
        count[valid] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], 0.0)
    return out.astype(np.float32)


def module_arguments(registry: Mapping[str, Any]) -> dict[str, Any]:
    """Data-derived constructor arguments of a per-criterion module (empty for the others)."""
    if not registry.get("artifact_criteria"):
        return {}
    return {"artifact_criteria": list(registry["artifact_criteria"]),
            "artifact_patterns": dict(registry.get("artifact_patterns") or {}) or None}


def criteria_columns(
    adata: AnnData, registry: Mapping[str, Any], cf_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(A_criteria, A_cf or None)`` for every cell of ``adata``, or ``None`` for a model without criteria.

    ``cf_mask``: the cells with a reference (J2 on), else ``None`` (no ``A_cf``).
    """
    if not registry.get("artifact_criteria"):
        return None
    flags = criterion_flags(adata, registry)
    return flags, (None if cf_mask is None else reference_composition(adata, flags, cf_mask))


def to_tensor(values: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """The rows of a per-cell array as a float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(values[rows], dtype=np.float32))


def criteria_inputs(crit, rows: np.ndarray, with_cf: bool, placeholder: bool = False) -> dict[str, torch.Tensor]:
    """``A_criteria`` (and, with J2, ``A_cf``) of ``rows``; ``placeholder``: ``A_cf`` all 0 (inference batches)."""
    if crit is None:
        return {}
    out = {"A_criteria": to_tensor(crit[0], rows)}
    if with_cf:
        out["A_cf"] = torch.zeros_like(out["A_criteria"]) if placeholder else to_tensor(crit[1], rows)
    return out
