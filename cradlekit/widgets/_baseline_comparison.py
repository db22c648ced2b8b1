"""One perturbation's predicted effect beside the simple baselines' (PerturbationExplorer's comparison).

A model's prediction of one perturbation means little on its own: the field's benchmark found that the
mean training effect and the sum of the singles' effects are hard to beat. :func:`baseline_comparison`
scores the model's ATE of one perturbation and the baselines' (:mod:`cradlekit.baselines`, fitted on the
training cells) against the data ATE of that perturbation's QC-passed cells, over genes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from ..baselines import BASELINE_LABELS, predict_baseline
from ..evaluate import data_ate, model_ate

__all__ = ["COMPARISON_BASELINES", "baseline_comparison", "predicted_effect_tables"]

#: Baselines shown beside a model (no change is left out: its ATE-ρ is undefined).
COMPARISON_BASELINES = ("mean", "additive", "linear")
_COLUMNS = ["ATE-ρ", "ATE-R²", "top-k Jaccard", "note"]


def _scores(predicted: np.ndarray, observed: np.ndarray, k: int) -> tuple[float, float, float]:
    """Pearson, R² (the data as truth) and top-``k`` Jaccard by |ATE| of two ATE vectors over genes."""
    ok = np.isfinite(predicted) & np.isfinite(observed)
    p, d = predicted[ok], observed[ok]
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(d) == 0:
        rho = float("nan")
    else:
        rho = float(np.corrcoef(p, d)[0, 1])
    total = float(np.sum((d - d.mean()) ** 2))
    r2 = 1.0 - float(np.sum((d - p) ** 2)) / total if total > 0 else float("nan")
    k = min(int(k), p.size)
    top_p = set(np.argsort(-np.abs(p), kind="stable")[:k])
    top_d = set(np.argsort(-np.abs(d), kind="stable")[:k])
    jaccard = len(top_p & top_d) / len(top_p | top_d) if k else float("nan")
    return rho, r2, float(jaccard)


def baseline_comparison(
    model_values: pd.Series,
    adata: AnnData,
    label: str,
    *,
    artifact_key: str,
    model_label: str = "model",
    baselines: Sequence[str] = COMPARISON_BASELINES,
    k: int = 50,
) -> pd.DataFrame:
    """Score a model's ATE of one perturbation and the baselines' against the data ATE.

    Parameters
    ----------
    model_values
        The model's ATE of ``label``, indexed by gene (e.g. :func:`cradlekit.evaluate.model_ate` of
        generated cells).
    adata
        The screen: raw counts, QC-labelled and split (``obs['split']``; the baselines use its
        training cells).
    label
        Canonical label of the perturbation.
    artifact_key
        ``obs`` column of the QC labels (``artifact_k3`` ...): only QC-passed cells enter the data ATE
        and the baselines.
    model_label
        Row name of the model.
    baselines
        Names from :data:`cradlekit.baselines.BASELINES`.
    k
        Genes of the top-``k`` Jaccard.

    Returns
    -------
    pandas.DataFrame
        One row per predictor (the model first), columns ``ATE-ρ``, ``ATE-R²``, ``top-k Jaccard`` and
        ``note`` (why a baseline has no prediction, e.g. a combination whose singles have no training
        cells). Empty when the data hold no QC-passed cell of ``label`` (nothing to compare with).
    """
    try:
        observed_ate = data_ate(adata, perturbations=[label], artifact_key=artifact_key)
    except ValueError:  # no QC-passed cell of the perturbation (or none in the data)
        return pd.DataFrame(columns=_COLUMNS)
    genes = pd.Index(observed_ate.var_names)
    observed = np.asarray(observed_ate.X, dtype=np.float64)[0]
    rows: dict[str, list] = {}
    predicted = model_values.reindex(genes).to_numpy(dtype=np.float64)
    rows[model_label] = [*_scores(predicted, observed, k), ""]
    for name in baselines:
        title = BASELINE_LABELS.get(name, name)
        try:
            prediction = predict_baseline(name, adata, perturbations=[label], artifact_key=artifact_key)
            if label not in prediction.obs_names:  # the baseline leaves out what it cannot predict
                rows[title] = [np.nan, np.nan, np.nan, "cannot predict it from the training cells"]
                continue
            prediction = prediction[[label]]
            values = pd.Series(np.asarray(prediction.X, dtype=np.float64)[0], index=prediction.var_names)
            values = values.reindex(genes).to_numpy(dtype=np.float64)
        except (ValueError, KeyError) as exc:  # e.g. no training cells of a single, or no split
            rows[title] = [np.nan, np.nan, np.nan, str(exc).split("\n")[0][:160]]
            continue
        if not np.isfinite(values).any():
            rows[title] = [np.nan, np.nan, np.nan, "no prediction for this perturbation"]
            continue
        rows[title] = [*_scores(values, observed, k), ""]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=_COLUMNS)
    out.index.name = "predictor"
    return out.rename(columns={"top-k Jaccard": f"top-{k} Jaccard"})


def predicted_effect_tables(
    generated: AnnData, adata: AnnData, label: str, *, control: str, artifact_key: str, top_n: int,
    in_data: bool, model_label: str = "this model",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PerturbationExplorer's two effect tables of generated cells of ``label`` (and generated controls).

    Returns
    -------
    top_genes : pandas.DataFrame
        ``model_ate`` and ``data_ate`` of the ``top_n`` genes with the largest ``|model_ate|`` (``data_ate``
        NaN without QC-passed data cells of ``label``).
    baselines : pandas.DataFrame
        :func:`baseline_comparison` of the model's ATE (empty for the control or without data cells).
    """
    empty_top = pd.DataFrame(columns=["model_ate", "data_ate"])
    if label == control:
        return empty_top, pd.DataFrame(columns=_COLUMNS)
    ate = model_ate(generated, perturbations=[label])
    values = pd.Series(np.asarray(ate.X, dtype=np.float64)[0], index=ate.var_names)
    order = np.argsort(-np.abs(values.to_numpy()), kind="stable")[:top_n]
    top = pd.DataFrame({"model_ate": values.iloc[order].to_numpy()},
                       index=pd.Index(values.index[order], name="gene"))
    top["data_ate"] = np.nan
    versus = pd.DataFrame(columns=_COLUMNS)
    if in_data:
        try:
            d = data_ate(adata, perturbations=[label], artifact_key=artifact_key)
            observed = pd.Series(np.asarray(d.X, dtype=np.float64)[0], index=d.var_names)
            top["data_ate"] = observed.reindex(top.index).to_numpy()
        except ValueError:  # no QC-passed cells of the perturbation: leave NaN
            pass
        versus = baseline_comparison(values, adata, label, artifact_key=artifact_key, model_label=model_label)
    return top, versus
