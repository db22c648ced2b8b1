"""How well QC labels recover known (simulated) artifacts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import QC_KS, artifact_key
from .._validation import check_obs_key

__all__ = ["artifact_recovery"]


def artifact_recovery(
    adata: AnnData,
    *,
    truth_key: str = "true_artifact",
    type_key: str | None = "true_artifact_type",
    ks: Sequence[float] = QC_KS,
) -> pd.DataFrame:
    """Precision and recall of the QC label ``a_i`` against ground-truth artifact labels.

    Parameters
    ----------
    adata
        Cells labelled by :func:`cradlekit.qc.label_artifacts` that also carry truth labels
        (e.g. from :func:`cradlekit.data.simulate_perturbseq`).
    truth_key
        Boolean ``obs`` column: the cell carries an injected artifact.
    type_key
        Optional ``obs`` column naming the artifact type; adds a per-type recall column for each type.
    ks
        MAD multiples to report (each needs ``obs['artifact_k<k>']``).

    Returns
    -------
    One row per ``k`` with ``n_flagged``, ``n_true``, ``precision``, ``recall``, ``f1`` and,
    when ``type_key`` is given, ``recall_<type>`` per artifact type.
    """
    truth = check_obs_key(adata, truth_key, what="truth column").to_numpy().astype(bool)
    types = None
    if type_key is not None and type_key in adata.obs:
        types = adata.obs[type_key].astype(str).to_numpy()
    rows = []
    for k in ks:
        pred = check_obs_key(adata, artifact_key(k), what="QC label").to_numpy().astype(bool)
        tp = int((pred & truth).sum())
        precision = tp / pred.sum() if pred.sum() else np.nan
        recall = tp / truth.sum() if truth.sum() else np.nan
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        row = {
            "k": k,
            "n_flagged": int(pred.sum()),
            "n_true": int(truth.sum()),
            "precision": precision,
            "recall": recall,
            "f1": f1,
        }
        if types is not None:
            for t in sorted(set(types[truth])):
                sel = types == t
                row[f"recall_{t}"] = float(pred[sel].mean())
            clean = ~truth
            row["false_positive_rate"] = float(pred[clean].mean()) if clean.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("k")

