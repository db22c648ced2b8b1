"""QC thresholds per sample batch (lane, donor, sample), as scanpy users compute them per sample.

Sample batches group the cells of a screen by where they were measured; they are not the training
minibatches of :class:`cradlekit.train.CellBatches`.

The paper computes one MAD threshold per dataset. With ``batch_key`` :func:`batch_thresholds`
also computes each batch's own medians, MADs and thresholds; :func:`warn_batch_spread` warns when
they differ strongly, and with ``batch_thresholds=True`` :func:`apply_batch_flags` flags every cell
against its own batch's thresholds instead of the pooled ones.

"Differ strongly": at the smallest ``k``, the batches' medians or thresholds of a criterion span
more than :data:`BATCH_SPREAD_MADS` pooled MADs, i.e. a whole batch sits where the pooled rule
starts failing cells.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import CRITERIA, METRIC_OF_CRITERION, artifact_key, flag_key
from .thresholds import MAD_CRITERIA, SIDE, compute_thresholds, fails, k_label

__all__ = ["batch_thresholds", "warn_batch_spread", "apply_batch_flags", "BATCH_SPREAD_MADS"]

#: Spread (in pooled MADs) of per-batch medians or thresholds above which a warning is issued.
BATCH_SPREAD_MADS = 2.0


def batch_thresholds(
    table: pd.DataFrame, batches: np.ndarray, ks: tuple[float, ...], *, skipped=(), mad_zero_guard: bool = True
) -> dict[str, dict]:
    """``{batch: {"n_cells", "stats", "thresholds"}}``: the MAD rules computed within each batch."""
    out: dict[str, dict] = {}
    for batch in pd.unique(batches):
        rows = batches == batch
        stats, thresholds = compute_thresholds(
            table.loc[rows], ks, skipped=skipped, mad_zero_guard=mad_zero_guard
        )
        out[str(batch)] = {"n_cells": int(rows.sum()), "stats": stats, "thresholds": thresholds}
    return out


def warn_batch_spread(
    per_batch: dict[str, dict], pooled_stats: dict, ks: tuple[float, ...], *, batch_key: str, skipped=()
) -> list[str]:
    """Warn about criteria whose per-batch medians or thresholds differ strongly; return those criteria."""
    k = min(ks)
    strong, details = [], []
    for criterion in MAD_CRITERIA:
        scale = float(pooled_stats[criterion]["scale"])
        if criterion in skipped or not np.isfinite(scale) or scale <= 0:
            continue
        side = SIDE[criterion]
        medians = {b: float(v["stats"][criterion]["median"]) for b, v in per_batch.items()}
        thresh = {b: float(v["thresholds"][k_label(k)][criterion][side]) for b, v in per_batch.items()}
        spread = max(np.ptp(list(medians.values())), np.ptp(list(thresh.values())))
        if spread > BATCH_SPREAD_MADS * scale:
            strong.append(criterion)
            shown = ", ".join(f"{b}: {t:.4g}" for b, t in list(thresh.items())[:6])
            details.append(f"{criterion} (k={k:g} thresholds {shown}; pooled MAD {scale:.4g})")
    if details:
        msg = (
            f"QC thresholds differ strongly between batches of obs[{batch_key!r}]: {'; '.join(details)}. One "
            "pooled threshold then fails whole batches or none of their cells. Consider "
            "label_artifacts(..., batch_key=..., batch_thresholds=True) for per-batch thresholds."
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
    return strong


def apply_batch_flags(
    adata: AnnData, table: pd.DataFrame, batches: np.ndarray, per_batch: dict[str, dict], ks: tuple[float, ...]
) -> None:
    """Rewrite the MAD-criterion flags and ``a_i`` in ``obs`` with each batch's own thresholds."""
    obs = adata.obs
    labels = np.asarray(batches).astype(str)
    for k in ks:
        any_fail = np.zeros(adata.n_obs, dtype=bool)
        for criterion in CRITERIA:
            if criterion in MAD_CRITERIA:
                side = SIDE[criterion]
                values = table[METRIC_OF_CRITERION[criterion]].to_numpy()
                flag = np.zeros(adata.n_obs, dtype=bool)
                for batch, rec in per_batch.items():
                    rows = labels == batch
                    flag[rows] = fails(values[rows], float(rec["thresholds"][k_label(k)][criterion][side]), side)
                obs[flag_key(criterion, k)] = flag
            any_fail |= obs[flag_key(criterion, k)].to_numpy(dtype=bool)
        obs[artifact_key(k)] = any_fail.astype(np.uint8)
