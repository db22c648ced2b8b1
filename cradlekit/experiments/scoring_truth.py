"""Rescue scored against the truth in a run's row (simulated screens only; design page, "Which artifact").

A model with an artifact latent (CRADLE-VAE and its variants) rescues every QC-failed cell of the
run's data at its ``k`` (:func:`cradlekit.evaluate.rescue_artifacts`, one posterior draw per cell,
seeded by the run's seed) and the rescued expected profiles are compared with each cell's clean
truth (:func:`cradlekit.evaluate.rescue_truth_scores`): ``rescue_truth_corr`` and
``rescue_truth_rmse`` overall and per true artifact type (``rescue_truth_corr_high_mito``, ...),
beside the observed cells' own agreement with the truth (``observed_truth_corr_<type>``). A few
seconds for thousands of cells; nothing for real data or models without an artifact latent.
"""

from __future__ import annotations

from typing import Any

from .._logging import logger
from .grid import RunSpec

__all__ = ["score_rescue_truth"]


def score_rescue_truth(trained: Any, adata: Any, spec: RunSpec) -> dict[str, Any]:
    """The rescue-vs-truth columns of a run's row.

    Empty unless the data is simulated and the model has an artifact latent.
    """
    from ..evaluate import rescue_artifacts, rescue_truth_row, rescue_truth_scores

    simulated = "simulation" in adata.uns and "true_basal" in adata.obsm and "true_artifact_type" in adata.obs
    if not simulated or not getattr(trained.module, "has_artifact", False):
        return {}
    if not (adata.obs[spec.artifact_key].astype(int) == 1).any():
        logger.warning("no QC-failed cell at k=%g: nothing to rescue", spec.k)
        return {}
    rescued = rescue_artifacts(trained, adata, seed=spec.seed)
    return rescue_truth_row(rescue_truth_scores(rescued, adata))
