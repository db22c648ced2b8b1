"""Rescued cells scored against the truth of a simulated screen (design page, "Which artifact").

On a screen from :func:`cradlekit.data.simulate_perturbseq` every cell's clean expected expression
is known (:func:`cradlekit.data.true_clean_frequencies`): the gene frequencies of its basal state and
perturbation before its artifact. A rescue (:func:`cradlekit.evaluate.rescue_artifacts`) predicts
them from the observed counts. Both are compared in the metric space of the paper,
``y = log2(1e4 p + 1)`` with ``p`` the profile divided by its total (library-normalised), per cell:

``truth_corr``
    Pearson correlation over genes of the rescued ``y`` (its expected expression,
    ``layers['expected']``) and the truth's.
``truth_rmse``
    Root mean squared difference over genes of the same two.
``observed_truth_corr``, ``observed_truth_rmse``
    The same for the observed cell's own counts: what the rescue starts from. A rescue helps
    where it is closer to the truth than the observed cell.

:func:`rescue_truth_row` summarises them per true artifact type (``obs['true_artifact_type']``:
``low_umi``, ``high_mito``, ``high_ribo``, ``high_hb``, ``doublet``; ``none`` for clean cells that
QC failed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._validation import get_counts
from ..data.simulate_truth import true_clean_frequencies

__all__ = ["rescue_truth_scores", "rescue_truth_row", "profile_agreement"]

_METRIC_SCALE = 1e4
_TYPE_KEY = "true_artifact_type"


def _metric(profiles: np.ndarray) -> np.ndarray:
    """``log2(1e4 p + 1)`` of rows divided by their totals (an empty row stays 0)."""
    total = profiles.sum(axis=1, keepdims=True)
    return np.log2(_METRIC_SCALE * profiles / np.where(total > 0, total, 1.0) + 1.0)


def profile_agreement(profiles: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: Pearson correlation and RMSE over columns of ``log2(1e4 p + 1)`` of two profile matrices.

    Parameters
    ----------
    profiles, truth
        ``(n, G)`` non-negative profiles (counts, expected counts or frequencies); each row is
        divided by its total first.

    Returns
    -------
    corr, rmse
        ``(n,)`` float64; the correlation is NaN for a row that is constant in either matrix.
    """
    a, b = _metric(np.asarray(profiles, dtype=np.float64)), _metric(np.asarray(truth, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"profiles {a.shape} and truth {b.shape} differ in shape")
    da, db = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((da**2).sum(axis=1) * (db**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, (da * db).sum(axis=1) / denom, np.nan)
    return corr, np.sqrt(((a - b) ** 2).mean(axis=1))


def rescue_truth_scores(rescued: AnnData, adata: AnnData, *, layer: str | None = None) -> pd.DataFrame:
    """Each rescued row against its cell's clean truth, beside the observed cell against the same truth.

    Parameters
    ----------
    rescued
        Output of :func:`~cradlekit.evaluate.rescue_artifacts` on cells of ``adata`` (its
        ``obs['rescued_from']`` names them; ``layers['expected']`` is scored).
    adata
        The simulated screen the cells come from.
    layer
        Count layer of ``adata`` (``None``: ``X``).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``rescued.obs``: ``rescued_from``, ``artifact_type`` (the true one),
        ``truth_corr``, ``truth_rmse``, ``observed_truth_corr``, ``observed_truth_rmse``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        ``adata`` is not a simulated screen.
    KeyError
        A rescued cell is not in ``adata``.
    """
    names = rescued.obs["rescued_from"].astype(str).to_numpy()
    pos = adata.obs_names.get_indexer(names)
    if (pos < 0).any():
        raise KeyError(f"{int((pos < 0).sum())} rescued cells are not in adata, e.g. {names[pos < 0][:3].tolist()}")
    unique, inverse = np.unique(pos, return_inverse=True)
    truth = true_clean_frequencies(adata, unique)[inverse]
    expected = rescued.layers["expected"]
    expected = expected.toarray() if sp.issparse(expected) else np.asarray(expected)
    observed = get_counts(adata, layer)[unique]
    observed = (observed.toarray() if sp.issparse(observed) else np.asarray(observed))[inverse]
    corr, rmse = profile_agreement(expected, truth)
    obs_corr, obs_rmse = profile_agreement(observed, truth)
    types = adata.obs[_TYPE_KEY].astype(str).to_numpy()[pos] if _TYPE_KEY in adata.obs else np.full(pos.size, "unknown")
    return pd.DataFrame(
        {"rescued_from": names, "artifact_type": types, "truth_corr": corr, "truth_rmse": rmse,
         "observed_truth_corr": obs_corr, "observed_truth_rmse": obs_rmse},
        index=rescued.obs_names.copy(),
    )


def rescue_truth_row(scores: pd.DataFrame) -> dict[str, Any]:
    """Result-row columns of :func:`rescue_truth_scores`: means over all rows and per true artifact type.

    Returns
    -------
    dict
        ``rescue_truth_corr``, ``rescue_truth_rmse``, ``observed_truth_corr``, ``rescue_truth_n``
        and, for each artifact type present, ``rescue_truth_corr_<type>``,
        ``rescue_truth_rmse_<type>``, ``observed_truth_corr_<type>``, ``observed_truth_rmse_<type>``
        and ``rescue_truth_n_<type>``.
    """

    def mean(values: pd.Series) -> float:
        values = values.dropna()
        return float(values.mean()) if len(values) else math.nan

    out: dict[str, Any] = {"rescue_truth_corr": mean(scores["truth_corr"]),
                           "rescue_truth_rmse": mean(scores["truth_rmse"]),
                           "observed_truth_corr": mean(scores["observed_truth_corr"]),
                           "rescue_truth_n": int(len(scores))}
    for kind, group in scores.groupby("artifact_type", sort=True, observed=True):
        out[f"rescue_truth_corr_{kind}"] = mean(group["truth_corr"])
        out[f"rescue_truth_rmse_{kind}"] = mean(group["truth_rmse"])
        out[f"observed_truth_corr_{kind}"] = mean(group["observed_truth_corr"])
        out[f"observed_truth_rmse_{kind}"] = mean(group["observed_truth_rmse"])
        out[f"rescue_truth_n_{kind}"] = int(len(group))
    return out
