"""Scores of one run's predictions: the paper's metrics, the calibrated ones, QCPR and cell-eval.

Every predictor of a grid, trained model or baseline, is scored here from its predicted ATE
(perturbations × genes), on the same perturbation sets:

* ``heldout_*``: the unseen test combinations of a combination split; every perturbation (its
  ``test`` cells) for a cell split;
* ``all_*``: every perturbation with training cells -- the same set, and n, for every predictor.

Per scope: ATE-ρ, ATE-R², top-k Jaccard (the paper's), ``ate_pearson_centered`` (ATE-ρ around the
mean training effect, :func:`cradlekit.evaluate.centered_ate_pearson`), on a simulated screen
``true_ate_pearson`` (ATE-ρ against the true ATE) and, held out, ``target_sign`` (the share of
target genes in the panel that move the expected way, :func:`cradlekit.evaluate.target_sign_agreement`).
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import numpy as np
import pandas as pd

from .._logging import logger
from ..evaluate.log_normalize import (
    TARGET_SUM as _LIBRARY_SIZE,  # generated cells: library size 1e4 (design page, "Metrics")
)
from .config import ExperimentConfig
from .grid import RunSpec

__all__ = ["scopes", "score_scopes", "score_qcpr", "score_cell_eval", "CELL_EVAL_METRICS"]

#: cell-eval metrics copied into a result row (``celleval_<name>``; mean over held-out perturbations).
CELL_EVAL_METRICS = ("pearson_delta", "discrimination_score_l1", "overlap_at_N", "de_direction_match", "mae_delta")


def scopes(config: ExperimentConfig, adata: Any, control: str, key: str) -> dict[str, tuple[list[str], str | None]]:
    """``{"heldout": (labels, split or None), "all": (labels, None)}`` for the run's data."""
    labels = sorted(set(adata.obs[key].astype(str)) - {control})
    if config.split.kind == "combinations":
        heldout = sorted(str(p) for p in adata.uns["split"]["heldout"])
        seen = [p for p in labels if p not in set(heldout)]
        return {"heldout": (heldout, None), "all": (seen, None)}
    return {"heldout": (labels, "test"), "all": (labels, None)}


def score_scopes(
    config: ExperimentConfig, spec: RunSpec, adata: Any, predicted: pd.DataFrame, *, control: str, key: str,
    reference: pd.Series,
) -> dict[str, Any]:
    """The scope metrics of one run (and ``per_perturbation``, ``heldout_ate`` for its JSON).

    Parameters
    ----------
    predicted
        Predicted ATE, one row per perturbation the predictor can predict.
    reference
        The mean training ATE per gene (the centre of ``ate_pearson_centered``).
    """
    from ..evaluate import centered_ate_pearson, data_ate, evaluate_perturbations, target_sign_agreement

    e, ak = config.evaluation, spec.artifact_key
    out: dict[str, Any] = {}
    for scope, (wanted, split) in scopes(config, adata, control, key).items():
        usable = [p for p in wanted if p in set(predicted.index)]
        out[f"{scope}_n_excluded"] = len(wanted) - len(usable)
        scores = {"ate_pearson": math.nan, "ate_r2": math.nan, "jaccard": math.nan, "n_perturbations": 0}
        centered = math.nan
        if usable:
            data = data_ate(adata, artifact_key=ak, perturbations=usable, split=split, on_empty="skip")
            present = [p for p in usable if p in set(data.obs_names)]
            out[f"{scope}_n_excluded"] += len(usable) - len(present)
            k_genes = min(e.jaccard_k, adata.n_vars)
            scores.update(evaluate_perturbations(predicted, data, perturbations=present, k=k_genes))
            centered = centered_ate_pearson(predicted, data, reference=reference, perturbations=present)
            out.update(_against_truth(adata, predicted, present, scope))
            if scope == "heldout" and present:
                out["per_perturbation"] = _per_perturbation(predicted, data, present, k_genes)
                out["heldout_ate"] = _ate_vectors(predicted, data, present)
                sign = target_sign_agreement(predicted, direction=e.target_direction, data=data, perturbations=present,
                                             control_label=control)
                out["heldout_target_sign"], out["heldout_target_sign_n"] = sign.fraction, sign.n
        for m in ("ate_pearson", "ate_r2", "jaccard"):
            out[f"{scope}_{m}"] = float(scores[m])
        out[f"{scope}_ate_pearson_centered"] = float(centered)
        out[f"{scope}_n_perturbations"] = int(scores["n_perturbations"])
    out.setdefault("heldout_target_sign", math.nan)
    out.setdefault("heldout_target_sign_n", 0)
    return out


def _against_truth(adata: Any, predicted: pd.DataFrame, labels: list[str], scope: str) -> dict[str, float]:
    """On a simulated screen, ``<scope>_true_ate_pearson``: ATE-ρ against the true ATE (empty for real data)."""
    from ..data import true_ate_frame
    from ..evaluate import ate_pearson

    if "simulation" not in adata.uns or "true_ate" not in adata.uns["simulation"]:
        return {}
    truth = true_ate_frame(adata)
    known = [p for p in labels if p in truth.index]
    if not known or not predicted.columns.isin(truth.columns).all():
        return {}
    # the simulation's truth covers every simulated gene; a screen written on a panel keeps fewer
    truth = truth.loc[:, predicted.columns]
    return {f"{scope}_true_ate_pearson": ate_pearson(predicted, truth, perturbations=known)}


def _per_perturbation(model_ate: pd.DataFrame, data: Any, labels: list[str], k: int) -> dict[str, dict[str, float]]:
    """ATE-ρ, ATE-R² and top-``k`` Jaccard of each perturbation on its own (over genes)."""
    from ..evaluate import ate_pearson, ate_r2, top_k_jaccard

    jac = top_k_jaccard(model_ate, data, k=k, perturbations=labels).per_perturbation
    return {
        p: {"ate_pearson": ate_pearson(model_ate, data, perturbations=[p]),
            "ate_r2": ate_r2(model_ate, data, perturbations=[p]), "jaccard": float(jac[p])}
        for p in labels
    }


def _ate_vectors(model_ate: pd.DataFrame, data: Any, labels: list[str]) -> dict[str, Any]:
    """Model and data ATE of each held-out perturbation over the genes (4 decimals), for gene-level analysis."""
    from ..evaluate import align_ate

    m, d = align_ate(model_ate, data, perturbations=labels)
    return {
        "genes": [str(g) for g in d.columns],
        **{
            p: {"model": np.round(m.loc[p].to_numpy(), 4).tolist(), "data": np.round(d.loc[p].to_numpy(), 4).tolist()}
            for p in labels
        },
    }


def score_qcpr(
    generated: Any, adata: Any, spec: RunSpec, heldout: list[str], *, scrublet: bool, key: str
) -> dict[str, Any]:
    """QCPR of a model's generated cells (``generated`` is labelled in place) and the data's on the same basis.

    scrublet runs once on all the generated cells (every perturbation together). It cannot score
    cells with (almost) no variable gene (a barely trained model generates near-identical
    cells); the doublet criterion is then skipped and the row says so in ``qcpr_doublets``.
    """
    from ..evaluate import criterion_pass_rates, qc_pass_rate

    how = f"scrublet on all {generated.n_obs} generated cells together" if scrublet else "skipped"
    kwargs = {"ks": [spec.k], "seed": spec.seed, "groupby": key, "inplace": True}
    try:
        table = qc_pass_rate(generated, adata, run_scrublet=scrublet, **kwargs)
    except ValueError as err:
        if not (scrublet and str(err).startswith("scrublet failed")):
            raise
        logger.warning("QCPR without the doublet criterion: %s", err)
        how = "skipped: scrublet failed on the generated cells"
        table = qc_pass_rate(generated, adata, run_scrublet=False, **kwargs)
    per_group = table.iloc[:, 0]
    held = [p for p in heldout if p in per_group.index]
    out: dict[str, Any] = {"qcpr_doublets": how, "qcpr": float(per_group.mean()),  # equal cells per group: pooled
                           "qcpr_heldout": float(per_group.loc[held].mean()) if held else math.nan}
    out.update({f"qcpr_{c}": float(v) for c, v in criterion_pass_rates(generated, spec.k).drop("all").items()})
    out.update(data_qcpr(adata, spec))
    out.update(truth_qcpr(adata, spec, list(per_group.index), n=int(generated.n_obs // max(1, len(per_group))),
                          scrublet=scrublet, key=key))
    return out


def truth_qcpr(adata: Any, spec: RunSpec, labels: list[str], *, n: int, scrublet: bool, key: str) -> dict[str, float]:
    """On a simulated screen, the QCPR ceiling: ``truth_qcpr`` and ``truth_qcpr_<criterion>`` of fresh
    artifact-free cells from the true process (:func:`cradlekit.data.simulate_clean_cells`) at
    library size 1e4, judged exactly as the generated cells; empty for real data."""
    from ..data import simulate_clean_cells
    from ..evaluate import criterion_pass_rates, qc_pass_rate

    if "simulation" not in adata.uns or "true_inverse_dispersion" not in adata.var:
        return {}
    cells = simulate_clean_cells(adata, labels, n=n, library_size=_LIBRARY_SIZE, seed=spec.seed)
    kwargs = {"ks": [spec.k], "seed": spec.seed, "groupby": key, "inplace": True}
    table = qc_pass_rate(cells, adata, run_scrublet=scrublet, **kwargs)
    out = {"truth_qcpr": float(table.iloc[:, 0].mean())}
    out.update({f"truth_qcpr_{c}": float(v) for c, v in criterion_pass_rates(cells, spec.k).drop("all").items()})
    return out


def data_qcpr(adata: Any, spec: RunSpec) -> dict[str, float]:
    """``data_qcpr`` and ``data_qcpr_<criterion>``: the data's QC-passed cells under the same thresholds and genes."""
    from ..evaluate import data_pass_rates

    rates = data_pass_rates(adata, spec.k).loc["QC-passed cells"]
    return {"data_qcpr": float(rates["all"]), **{f"data_qcpr_{c}": float(v) for c, v in rates.drop("all").items()}}


def score_cell_eval(
    adata: Any, spec: RunSpec, labels: list[str], split: str | None, *, control: str, key: str,
    generated: Any = None, predicted: pd.DataFrame | None = None,
) -> dict[str, float]:
    """cell-eval's metrics (:data:`CELL_EVAL_METRICS`, ``celleval_*``) on the held-out perturbations.

    The real side is the QC-passed observed cells of ``labels`` (in ``split``) and the QC-passed
    controls; the predicted side a model's ``generated`` cells or a baseline's ``predicted`` ATE
    as mean cells (:func:`cradlekit.evaluate.cell_eval.baseline_cells`). Empty when cell-eval is
    not installed (logged).
    """
    from ..evaluate.cell_eval import baseline_cells, cell_eval_layout, cell_eval_row, has_cell_eval, run_cell_eval

    if not has_cell_eval():
        logger.warning("evaluation.cell_eval is on but cell-eval is not installed (pip install 'cradlekit[evaluate]')")
        return {}
    obs = adata.obs
    passed = pd.to_numeric(obs[spec.artifact_key]).to_numpy() == 0
    in_split = np.ones(adata.n_obs, dtype=bool) if split is None else obs["split"].astype(str).to_numpy() == split
    labels_all = obs[key].astype(str).to_numpy()
    rows = passed & ((labels_all == control) | (in_split & np.isin(labels_all, labels)))
    real = cell_eval_layout(adata[np.flatnonzero(rows)], perturbation_key=key, control_label=control, keep=labels)
    present = [p for p in labels if (real.obs["target_gene"].astype(str) == p).any()]
    if generated is not None:
        pred = cell_eval_layout(generated, perturbation_key=key, control_label=control, keep=present)
    else:
        counts = real.obs["target_gene"].astype(str).value_counts()
        pred = baseline_cells(predicted.loc[present], real, control_label=control,
                              n_cells={p: int(counts[p]) for p in present})
    with tempfile.TemporaryDirectory(prefix="cradlekit-celleval-") as tmp:
        _, aggregate = run_cell_eval(pred, real, control_label=control, out_dir=tmp, num_threads=1)
    return cell_eval_row(aggregate, metrics=CELL_EVAL_METRICS)
