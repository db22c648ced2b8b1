"""Agreement between model and data ATEs: ATE-ρ, ATE-R² and top-k Jaccard (paper Table 2; design page, "Metrics").

Inputs are perturbations × genes ATE matrices, as AnnData (from :func:`~cradlekit.evaluate.data_ate`
and :func:`~cradlekit.evaluate.model_ate`) or DataFrames (index = perturbations, columns = genes).
The model matrix is aligned to the data matrix by perturbation and gene **names** (never by
position); names present on one side only raise :class:`~cradlekit.errors.MissingKeyError`.

Conventions (the authors' ``eval.py`` ``get_ate_metrics``):

* ATE-ρ and ATE-R² use the **flattened** matrices, every (perturbation, gene) entry once.
* ATE-R² treats the **data** ATE as truth: ``R² = 1 − Σ(data − model)² / Σ(data − mean(data))²``,
  i.e. ``sklearn.metrics.r2_score(y_true=data, y_pred=model)``. It is not symmetric.
* Jaccard: for each perturbation, the ``k`` genes of largest ``|ATE|`` in each matrix;
  ``|A ∩ B| / |A ∪ B|``; averaged over perturbations. Ties in ``|ATE|`` are broken by gene
  position in the data's gene order (the earlier gene ranks first), in both matrices, so the
  result is deterministic (the authors' ``argpartition`` leaves ties unspecified).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import MissingKeyError

__all__ = ["align_ate", "ate_pearson", "ate_r2", "top_k_jaccard", "JaccardResult", "evaluate_perturbations"]

ATE = AnnData | pd.DataFrame


class JaccardResult(NamedTuple):
    """Top-k Jaccard: the mean over perturbations and the value of each perturbation."""

    mean: float
    per_perturbation: pd.Series


def align_ate(
    model: ATE, data: ATE, *, perturbations: Sequence[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model and data ATEs as float64 DataFrames with the data's row and column order.

    Parameters
    ----------
    model, data
        Perturbations × genes ATEs (AnnData or DataFrame).
    perturbations
        Keep only these rows, in this order (each must be in both); ``None``: all rows, and both
        matrices must hold the same perturbations.

    Returns
    -------
    model, data
        Aligned copies.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        Duplicate names, or perturbations/genes present in one matrix only.
    ValueError
        Non-finite ATE values; no perturbation or gene left.
    """
    m, d = _frame(model, "model"), _frame(data, "data")
    _same_names(m.columns, d.columns, "genes")
    if perturbations is None:
        _same_names(m.index, d.index, "perturbations")
        rows = list(d.index)
    else:
        requested = [perturbations] if isinstance(perturbations, str) else perturbations
        rows = list(dict.fromkeys(str(p) for p in requested))
        for side, frame in (("model", m), ("data", d)):
            absent = [p for p in rows if p not in frame.index]
            if absent:
                raise MissingKeyError(
                    f"{len(absent)} requested perturbation(s) absent from the {side} ATE: {absent[:20]}"
                )
    if not rows or d.shape[1] == 0:
        raise ValueError("no perturbation or gene to compare")
    m, d = m.loc[rows, d.columns], d.loc[rows]
    for side, frame in (("model", m), ("data", d)):
        if not np.isfinite(frame.to_numpy()).all():
            raise ValueError(f"the {side} ATE contains NaN or infinite values")
    return m, d


def ate_pearson(model: ATE, data: ATE, *, perturbations: Sequence[str] | None = None) -> float:
    """ATE-ρ: Pearson correlation of the flattened model and data ATE matrices.

    Parameters
    ----------
    model, data
        Perturbations × genes ATEs, aligned by name (see :func:`align_ate`).
    perturbations
        Restrict to these perturbations (e.g. the held-out ones).

    Returns
    -------
    float
        In ``[-1, 1]``; NaN (with a warning) when either matrix is constant.
    """
    m, d = align_ate(model, data, perturbations=perturbations)
    x, y = d.to_numpy().ravel(), m.to_numpy().ravel()
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    if denom == 0:
        _warn("ATE-ρ undefined: the model or data ATE is constant; returning NaN")
        return float("nan")
    return float(np.clip((x @ y) / denom, -1.0, 1.0))


def ate_r2(model: ATE, data: ATE, *, perturbations: Sequence[str] | None = None) -> float:
    """ATE-R²: coefficient of determination of the model ATE, with the **data** ATE as truth.

    ``R² = 1 − Σ(data − model)² / Σ(data − mean(data))²`` over the flattened matrices, i.e.
    ``sklearn.metrics.r2_score(data, model)`` as in the authors' ``eval.py``. It can be negative
    and is not symmetric in its arguments.

    Parameters
    ----------
    model, data
        Perturbations × genes ATEs, aligned by name (see :func:`align_ate`).
    perturbations
        Restrict to these perturbations.

    Returns
    -------
    float
        ``≤ 1``; NaN (with a warning) when the data ATE is constant (sklearn would return 0 or 1).
    """
    m, d = align_ate(model, data, perturbations=perturbations)
    truth, pred = d.to_numpy().ravel(), m.to_numpy().ravel()
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    if ss_tot == 0:
        _warn("ATE-R² undefined: the data ATE is constant; returning NaN")
        return float("nan")
    return 1.0 - float(((truth - pred) ** 2).sum()) / ss_tot


def top_k_jaccard(
    model: ATE, data: ATE, *, k: int = 50, perturbations: Sequence[str] | None = None
) -> JaccardResult:
    """Mean Jaccard index of the top-``k`` genes by ``|ATE|`` in model and data, per perturbation.

    Parameters
    ----------
    model, data
        Perturbations × genes ATEs, aligned by name (see :func:`align_ate`).
    k
        Genes per set (50 in the paper); at most the number of genes.
    perturbations
        Restrict to these perturbations.

    Returns
    -------
    JaccardResult
        ``mean`` (float) and ``per_perturbation`` (Series indexed by perturbation, named
        ``jaccard``). Ties in ``|ATE|``: the gene earlier in the data's gene order ranks first.
    """
    m, d = align_ate(model, data, perturbations=perturbations)
    n_genes = d.shape[1]
    if not 1 <= int(k) <= n_genes:
        raise ValueError(f"k must be between 1 and the number of genes ({n_genes}), got {k}")
    k = int(k)
    in_m, in_d = _top_k_mask(m.to_numpy(), k), _top_k_mask(d.to_numpy(), k)
    inter = (in_m & in_d).sum(axis=1)
    values = inter / (2 * k - inter)
    per = pd.Series(values, index=d.index, name="jaccard")
    return JaccardResult(float(values.mean()), per)


def evaluate_perturbations(
    model_ate: ATE, data_ate: ATE, *, perturbations: Sequence[str] | None = None, k: int = 50
) -> dict[str, float | int]:
    """ATE-ρ, ATE-R² and top-``k`` Jaccard of one model on one set of perturbations (one table row).

    Parameters
    ----------
    model_ate, data_ate
        Perturbations × genes ATEs (see :func:`~cradlekit.evaluate.model_ate`,
        :func:`~cradlekit.evaluate.data_ate`).
    perturbations
        Subset to score (e.g. the held-out combinations); ``None``: every perturbation, which
        must then be the same in both.
    k
        Genes per Jaccard set.

    Returns
    -------
    dict
        ``ate_pearson``, ``ate_r2``, ``jaccard`` (floats), ``n_perturbations``, ``n_genes``
        (ints). ``pandas.DataFrame([row, ...])`` stacks several rows into a table.
    """
    m, d = align_ate(model_ate, data_ate, perturbations=perturbations)
    return {
        "ate_pearson": ate_pearson(m, d),
        "ate_r2": ate_r2(m, d),
        "jaccard": top_k_jaccard(m, d, k=k).mean,
        "n_perturbations": int(d.shape[0]),
        "n_genes": int(d.shape[1]),
    }


# --- helpers ------------------------------------------------------------------------------------
def _frame(ate: ATE, side: str) -> pd.DataFrame:
    if isinstance(ate, AnnData):
        X = ate.X.toarray() if hasattr(ate.X, "toarray") else np.asarray(ate.X)
        frame = pd.DataFrame(X, index=ate.obs_names.astype(str), columns=ate.var_names.astype(str))
    elif isinstance(ate, pd.DataFrame):
        frame = ate.copy()
        frame.index, frame.columns = frame.index.astype(str), frame.columns.astype(str)
    else:
        raise TypeError(f"the {side} ATE must be an AnnData or a DataFrame, got {type(ate).__name__}")
    for axis, names in (("perturbation", frame.index), ("gene", frame.columns)):
        if names.has_duplicates:
            raise MissingKeyError(f"the {side} ATE has duplicate {axis} names: {list(names[names.duplicated()][:10])}")
    return frame.astype(np.float64)


def _same_names(model_names: pd.Index, data_names: pd.Index, what: str) -> None:
    only_model = model_names.difference(data_names)
    only_data = data_names.difference(model_names)
    if len(only_model) or len(only_data):
        raise MissingKeyError(
            f"model and data ATEs have different {what}: {len(only_data)} only in data "
            f"{list(only_data[:10])}, {len(only_model)} only in model {list(only_model[:10])}"
            + (" (pass perturbations= to compare a shared subset)" if what == "perturbations" else "")
        )


def _top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of each row's ``k`` largest ``|values|``; ties go to the earlier column."""
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :k]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
