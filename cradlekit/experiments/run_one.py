"""One cell of the grid: prepared data → train → evaluate → a result row (and its JSON file).

Evaluation (paper Table 2; design page, "Metrics"), at the run's QC multiple ``k``:

* the run's data: QC labels, the split of its split seed (``split.seed: run``: the run's seed,
  as in the authors' sweeps) and the counterfactual references of ``artifact_k<k>``; training
  seed ``train.model_seed`` (the authors fix it) or the run's seed;
* data ATE: QC-passed cells (``artifact_k<k> = 0``) of every split, as the authors do; for a
  cell split (single-perturbation datasets) the held-out scope uses the ``test`` cells only;
* model ATE: ``evaluation.n_model_cells`` generated cells per perturbation and as many controls
  (library size 1e4, artifact off): sampled counts from ``generate``, log-normalised (default,
  ``evaluation.model_ate: sampled``), or expected expressions from ``predict_mean`` (``expected``);
* ATE-ρ, ATE-R², top-``jaccard_k`` Jaccard on the held-out perturbations (``heldout_*``: the
  unseen test combinations; every perturbation for a cell split) and on ``all_*``: every
  perturbation with training cells -- **the same set, and n, for every model** (sVAE+, which
  cannot generate an unseen combination, has only its ``heldout_*`` missing); the run's JSON
  also holds each held-out perturbation's own scores (``per_perturbation``);
* QCPR: ``evaluation.n_qcpr_cells`` generated counts per perturbation (control included), judged
  by the data's thresholds at ``k``; the doublet criterion runs scrublet on **all the run's
  generated cells together** (every perturbation in one set, as the authors' chunks spanning all
  perturbations do: a set of 100 near-identical cells alone is its own reference and scrublet
  then flags 30-50 % of it). ``qcpr`` over all of them, ``qcpr_heldout`` over the held-out
  perturbations, ``qcpr_<criterion>`` per criterion, and ``data_qcpr_<criterion>`` /
  ``data_qcpr`` for the data's QC-passed cells under the same thresholds on the same genes
  (:func:`cradlekit.evaluate.data_pass_rates`), so a gain can be traced to a criterion;
* the objective: ``objective`` (CRADLE-VAE's arm), and at the best epoch on validation cells
  ``j2_share`` (J2 / total loss) and ``kl_z_b`` (KL of the basal latent per cell).

Perturbations with a target the model never trained on cannot be generated; they are left out
and counted in ``*_n_excluded`` (with eligible held-out draws this does not happen in a
combination split).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._logging import logger
from .config import ExperimentConfig
from .grid import RunSpec, run_json_path, run_key, run_name, run_payload

__all__ = ["run_one", "read_run", "METRICS"]

#: Metric columns of a result row (higher is better for every one).
METRICS = (
    "heldout_ate_pearson", "heldout_ate_r2", "heldout_jaccard",
    "all_ate_pearson", "all_ate_r2", "all_jaccard", "qcpr", "qcpr_heldout",
)
#: Per-criterion QCPR columns (generated cells) and the data's QC-passed cells on the same basis.
QCPR_CRITERIA = ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet")
_LIBRARY_SIZE = 1e4
_CHUNK_ENTRIES = 2**24  # generated values held at once by the model-ATE loop


def read_run(path: str | os.PathLike) -> dict[str, Any] | None:
    """The result row stored in a run's JSON, or ``None`` if the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())["row"]
    except (OSError, ValueError, KeyError):
        return None


def run_one(config: ExperimentConfig, model: str, k: int | float, seed: int, *, write: bool = True) -> dict[str, Any]:
    """Train and evaluate one (model, k, seed) cell; write ``runs/<name>.json`` and return its row.

    Parameters
    ----------
    config
        The grid (its prepared data is made here if missing).
    model, k, seed
        The cell: a name of :data:`cradlekit.module.MODELS`, the QC multiple, the training seed.
    write
        Write the JSON (and the model, with ``save_models``) into ``config.output_dir``.

    Returns
    -------
    dict
        ``dataset, model, k, seed, split``, the :data:`METRICS`, ``heldout_n_perturbations``,
        ``heldout_n_excluded``, ``all_n_perturbations``, ``all_n_excluded``, ``epochs``,
        ``best_epoch``, ``steps``, ``train_seconds``, ``eval_seconds``, ``device``,
        ``n_model_cells``, ``n_qcpr_cells``, ``config_hash``, ``run``.
    """
    import torch

    spec = RunSpec(model, k, int(seed))
    threads = config.train.torch_threads
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        row, trained, details = _run(config, spec)
    finally:
        torch.set_num_threads(previous)
    if write:
        _write(config, spec, row, trained, details)
    return row


def _run(config: ExperimentConfig, spec: RunSpec) -> tuple[dict[str, Any], Any]:
    from ..model import PerturbationModel
    from .prepare import prepare_data, read_prepared

    split_seed = config.split.seed_for(spec.seed)
    adata = read_prepared(prepare_data(config, spec.k, split_seed))
    ak = spec.artifact_key
    logger.info("run %s: %s at k=%g, seed %d", run_name(config, spec), spec.model, spec.k, spec.seed)
    pm = PerturbationModel(adata, model=config.base_model(spec.model), artifact_key=ak, **config.model_kwargs(spec.model))
    t = config.train
    start = time.perf_counter()
    pm.train(
        max_epochs=t.max_epochs, max_steps=t.max_steps, lr=t.lr, weight_decay=t.weight_decay,
        batch_size=t.batch_size, patience=t.patience, grad_clip=t.grad_clip,
        seed=spec.seed if t.model_seed is None else t.model_seed, accelerator=t.accelerator, progress_bar=False,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = _evaluate(config, spec, adata, pm)
    details = {"per_perturbation": metrics.pop("per_perturbation", {}), "heldout_ate": metrics.pop("heldout_ate", {})}
    info = pm.train_info
    row = {
        "dataset": config.dataset.display,
        "model": spec.model,
        "k": spec.k,
        "seed": spec.seed,
        "split": _split_label(config, split_seed),
        **objective_diagnostics(pm),
        **metrics,
        "epochs": int(info["epochs"]),
        "best_epoch": int(info["best_epoch"]),
        "steps": int(info["steps"]),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(time.perf_counter() - start, 3),
        "device": str(info["device"]),
        "n_model_cells": config.evaluation.n_model_cells,
        "n_qcpr_cells": config.evaluation.n_qcpr_cells,
        "config_hash": run_key(config, spec),
        "run": run_name(config, spec),
    }
    logger.info("run %s done: %s", row["run"], {m: _fmt(row[m]) for m in METRICS})
    return row, pm, details


def _split_label(config: ExperimentConfig, split_seed: int) -> str:
    s = config.split
    if s.kind == "combinations":
        return f"combinations holdout={s.holdout_fraction:g} seed={split_seed}"
    return f"cells {'/'.join(f'{f:g}' for f in s.fractions)} seed={split_seed}"


def objective_diagnostics(pm: Any) -> dict[str, Any]:
    """``objective``, ``j2_share`` (J2 / loss) and ``kl_z_b`` (per cell) at the best epoch, on validation cells.

    Read from the training history (validation records, else training ones); NaN where the model
    has no such term (``objective`` ``None`` for the baselines).
    """
    best = int(pm.train_info.get("best_epoch", -1))
    record = next((r for r in pm.history if int(r.get("epoch", -2)) == best), pm.history[-1] if pm.history else {})
    prefix = "val_" if "val_loss" in record else "train_"
    loss = float(record.get(f"{prefix}loss", math.nan))
    j2 = float(record.get(f"{prefix}j2", math.nan))
    return {
        "objective": getattr(pm.module, "objective", None),
        "j2_share": j2 / loss if loss else math.nan,
        "kl_z_b": float(record.get(f"{prefix}kl_z_b", math.nan)),
    }


def _evaluate(config: ExperimentConfig, spec: RunSpec, adata: Any, pm: Any) -> dict[str, Any]:
    from ..evaluate import criterion_pass_rates, data_ate, data_pass_rates, evaluate_perturbations

    e, ak = config.evaluation, spec.artifact_key
    control = pm.registry["control_label"]
    key = pm.registry["perturbation_key"]
    labels = sorted(set(adata.obs[key].astype(str)) - {control})
    if config.split.kind == "combinations":
        heldout = sorted(str(p) for p in adata.uns["split"]["heldout"])
        heldout_split = None
        seen = [p for p in labels if p not in set(heldout)]
    else:
        heldout, heldout_split, seen = labels, "test", labels
    ok = [p for p in labels if pm.can_generate(p)]
    scopes = {"heldout": (heldout, heldout_split), "all": (seen, None)}
    model_ate = _model_ate(pm, control, ok, e.n_model_cells, spec.seed, sampled=e.model_ate == "sampled")
    out: dict[str, Any] = {}
    for scope, (wanted, split) in scopes.items():
        usable = [p for p in wanted if p in set(ok)]
        out[f"{scope}_n_excluded"] = len(wanted) - len(usable)
        scores = {"ate_pearson": math.nan, "ate_r2": math.nan, "jaccard": math.nan, "n_perturbations": 0}
        if usable:
            data = data_ate(adata, artifact_key=ak, perturbations=usable, split=split, on_empty="skip")
            present = [p for p in usable if p in set(data.obs_names)]
            out[f"{scope}_n_excluded"] += len(usable) - len(present)
            k_genes = min(e.jaccard_k, adata.n_vars)
            scores.update(evaluate_perturbations(model_ate, data, perturbations=present, k=k_genes))
            if scope == "heldout" and present:
                out["per_perturbation"] = _per_perturbation(model_ate, data, present, k_genes)
                out["heldout_ate"] = _ate_vectors(model_ate, data, present)
        for m in ("ate_pearson", "ate_r2", "jaccard"):
            out[f"{scope}_{m}"] = float(scores[m])
        out[f"{scope}_n_perturbations"] = int(scores["n_perturbations"])
    generated = pm.generate([control, *ok], n=e.n_qcpr_cells, library_size=_LIBRARY_SIZE, seed=spec.seed)
    per_group, out["qcpr_doublets"] = _qcpr(generated, adata, spec, e.run_scrublet, key)  # labels `generated`
    out["qcpr"] = float(per_group.mean())  # equal cells per group: the pooled rate
    held = [p for p in heldout if p in per_group.index]
    out["qcpr_heldout"] = float(per_group.loc[held].mean()) if held else math.nan
    out.update({f"qcpr_{c}": float(v) for c, v in criterion_pass_rates(generated, spec.k).drop("all").items()})
    data_rates = data_pass_rates(adata, spec.k).loc["QC-passed cells"]
    out["data_qcpr"] = float(data_rates["all"])
    out.update({f"data_qcpr_{c}": float(v) for c, v in data_rates.drop("all").items()})
    return out


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
    return {"genes": [str(g) for g in d.columns],
            **{p: {"model": np.round(m.loc[p].to_numpy(), 4).tolist(), "data": np.round(d.loc[p].to_numpy(), 4).tolist()} for p in labels}}


def _qcpr(generated: Any, adata: Any, spec: RunSpec, scrublet: bool, key: str) -> tuple[pd.Series, str]:
    """QCPR per perturbation at the run's ``k`` (``generated`` is labelled in place), and how doublets were judged.

    scrublet runs once on all the generated cells (every perturbation together). It cannot score
    cells with (almost) no variable gene (a barely trained model generates near-identical
    cells); the doublet criterion is then skipped and the row says so in ``qcpr_doublets``.
    """
    from ..evaluate import qc_pass_rate

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
    return table.iloc[:, 0], how


def _model_ate(pm: Any, control: str, labels: list[str], n: int, seed: int, *, sampled: bool = True) -> pd.DataFrame:
    """Model ATE of ``labels`` from ``n`` generated cells each (``sampled``: count profiles from
    ``generate``, log-normalised; else expected expressions from ``predict_mean``), a few
    perturbations at a time (bounded memory)."""
    import anndata as ad

    from ..evaluate import model_ate

    draw = pm.generate if sampled else pm.predict_mean
    n_genes = len(pm.registry["genes"])
    per_chunk = max(1, _CHUNK_ENTRIES // max(1, n * n_genes))
    ctrl = draw([control], n=n, library_size=_LIBRARY_SIZE, seed=seed)
    key = ctrl.uns["cradlekit"]["perturbation_key"]
    frames = []
    for i, start in enumerate(range(0, len(labels), per_chunk)):
        chunk = labels[start : start + per_chunk]
        cells = draw(chunk, n=n, library_size=_LIBRARY_SIZE, seed=seed + 1 + i)
        both = ad.concat([ctrl, cells], index_unique="-")
        both.obs[key] = both.obs[key].astype(str)
        ate = model_ate(both, control_label=control, perturbation_key=key, perturbations=chunk, normalized=not sampled)
        frames.append(pd.DataFrame(ate.X, index=ate.obs_names, columns=ate.var_names))
    if not frames:
        return pd.DataFrame(columns=pm.registry["genes"], dtype=np.float64)
    return pd.concat(frames)


def _write(config: ExperimentConfig, spec: RunSpec, row: dict[str, Any], model: Any, details: dict[str, Any]) -> None:
    path = run_json_path(config, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if config.save_models:
        model.save(config.output_path / "models" / run_name(config, spec), overwrite=True)
    record = {
        "row": _jsonable(row),
        "run": _jsonable(run_payload(config, spec)),
        "train_info": _jsonable(model.train_info),
        "heldout_per_perturbation": _jsonable(details.get("per_perturbation", {})),
        "heldout_ate": _jsonable(details.get("heldout_ate", {})),
        "host": platform.node(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False))
    os.replace(tmp, path)  # the JSON appears only once the run is complete


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def _fmt(value: Any) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
