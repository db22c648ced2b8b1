"""One cell of the grid: prepared data → train (or fit a baseline) → evaluate → a result row and its JSON.

A cell is a trained model (:data:`cradlekit.module.MODELS`, or a variant of one) or a baseline of
:mod:`cradlekit.baselines` (``no_change``, ``mean``, ``additive``, ``linear``), which predicts
effects from the training cells without training or generating cells.

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
  ``j2_share`` (J2 / total loss) and ``kl_z_b`` (KL of the basal latent per cell);
* calibrated metrics (:mod:`.scoring`): ``<scope>_ate_pearson_centered`` (ATE-ρ around the mean
  training effect, which a constant prediction cannot win), ``heldout_target_sign`` (share of
  target genes in the panel moving the expected way, ``evaluation.target_direction``) and, with
  ``evaluation.cell_eval``, cell-eval's metrics (``celleval_*``) on the held-out perturbations;
* on a simulated screen, for models with an artifact latent: every QC-failed cell rescued and
  scored against its clean truth (``rescue_truth_corr``, ``rescue_truth_corr_<type>``, ...;
  :mod:`.scoring_truth`);
* convergence: ``stopped_early`` (early stopping on validation ended the run before
  ``max_epochs``), ``converged`` (the same; always true for a baseline), ``epochs``,
  ``best_epoch``, and the time spent (``train_seconds`` wall, ``train_cpu_seconds`` CPU of this
  process). Only converged runs support a verdict (:mod:`.report`).

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
from ..evaluate.log_normalize import (
    TARGET_SUM as _LIBRARY_SIZE,  # generated cells: library size 1e4 (design page, "Metrics")
)
from .config import ExperimentConfig
from .grid import RunSpec, run_json_path, run_key, run_name, run_payload
from .scoring_truth import score_rescue_truth

__all__ = ["run_one", "read_run", "METRICS"]

#: Metric columns of a result row (higher is better for every one).
METRICS = (
    "heldout_ate_pearson", "heldout_ate_r2", "heldout_jaccard",
    "all_ate_pearson", "all_ate_r2", "all_jaccard", "qcpr", "qcpr_heldout",
    "heldout_ate_pearson_centered", "all_ate_pearson_centered",
)
#: Per-criterion QCPR columns (generated cells) and the data's QC-passed cells on the same basis.
QCPR_CRITERIA = ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet")
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
        The cell: a ``models`` entry of the config (a model, a baseline or a variant), the QC
        multiple, the seed.
    write
        Write the JSON (and the model, with ``save_models``) into ``config.output_dir``.

    Returns
    -------
    dict
        ``dataset, model, k, seed, split``, the :data:`METRICS`, ``heldout_n_perturbations``,
        ``heldout_n_excluded``, ``all_n_perturbations``, ``all_n_excluded``, ``epochs``,
        ``best_epoch``, ``steps``, ``max_epochs``, ``stopped_early``, ``converged``,
        ``train_seconds``, ``train_cpu_seconds``, ``eval_seconds``, ``device``,
        ``n_model_cells``, ``n_qcpr_cells``, ``config_hash``, ``run`` (see the module docstring).
    """
    import torch

    spec = RunSpec(model, k, int(seed))
    threads = config.train_options(model).torch_threads
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


def _run(config: ExperimentConfig, spec: RunSpec) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    from ..baselines import mean_baseline
    from ..data.perturbations import perturbation_info
    from .prepare import prepare_data, read_prepared

    split_seed = config.split.seed_for(spec.seed)
    adata = read_prepared(prepare_data(config, spec.k, split_seed))
    key, control = perturbation_info(adata)
    logger.info("run %s: %s at k=%g, seed %d", run_name(config, spec), spec.model, spec.k, spec.seed)
    mean = mean_baseline(adata, artifact_key=spec.artifact_key)
    reference = pd.Series(np.asarray(mean.X[0], dtype=np.float64), index=mean.var_names.astype(str))
    start, cpu = time.perf_counter(), time.process_time()
    trained: Any = None
    predicted: pd.DataFrame | None = None
    generated: Any = None
    if config.is_baseline(spec.model):
        predicted, training = _baseline(config, spec, adata), _no_training()
    else:
        trained, training = _train(config, spec, adata)
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    if trained is not None:
        labels = sorted(set(adata.obs[key].astype(str)) - {control})
        ok = [p for p in labels if trained.can_generate(p)]
        e = config.evaluation
        predicted = _model_ate(trained, control, ok, e.n_model_cells, spec.seed, sampled=e.model_ate == "sampled")
        generated = trained.generate([control, *ok], n=e.n_qcpr_cells, library_size=_LIBRARY_SIZE, seed=spec.seed)
    metrics = _evaluate(config, spec, adata, predicted, generated, control=control, key=key, reference=reference)
    if trained is not None:  # simulated screens: rescued cells against their clean truth (issue 19)
        metrics.update(score_rescue_truth(trained, adata, spec))
    details = {"per_perturbation": metrics.pop("per_perturbation", {}), "heldout_ate": metrics.pop("heldout_ate", {})}
    row = {
        "dataset": config.dataset.display,
        "model": spec.model,
        "k": spec.k,
        "seed": spec.seed,
        "split": _split_label(config, split_seed),
        **(
            objective_diagnostics(trained)
            if trained is not None
            else {"objective": None, "j2_share": math.nan, "kl_z_b": math.nan}
        ),
        **metrics,
        **training,
        "train_seconds": round(train_seconds, 3),
        "train_cpu_seconds": round(train_cpu, 3),
        "eval_seconds": round(time.perf_counter() - start, 3),
        "n_model_cells": config.evaluation.n_model_cells,
        "n_qcpr_cells": config.evaluation.n_qcpr_cells,
        "config_hash": run_key(config, spec),
        "run": run_name(config, spec),
    }
    logger.info("run %s done: %s", row["run"], {m: _fmt(row[m]) for m in METRICS})
    return row, trained, details


def _train(config: ExperimentConfig, spec: RunSpec, adata: Any) -> tuple[Any, dict[str, Any]]:
    """Train the run's model; return it and the training facts of its row."""
    from ..model import PerturbationModel

    pm = PerturbationModel(adata, model=config.base_model(spec.model), artifact_key=spec.artifact_key,
                           **config.model_kwargs(spec.model))
    t = config.train_options(spec.model)
    pm.train(
        max_epochs=t.max_epochs, max_steps=t.max_steps, lr=t.lr, weight_decay=t.weight_decay,
        batch_size=t.batch_size, patience=t.patience, grad_clip=t.grad_clip, lr_schedule=t.lr_schedule,
        lr_factor=t.lr_factor, lr_patience=t.lr_patience,
        seed=spec.seed if t.model_seed is None else t.model_seed, accelerator=t.accelerator, progress_bar=False,
    )
    info = pm.train_info
    stopped = bool(info.get("stopped_early", False))
    return pm, {
        "epochs": int(info["epochs"]), "best_epoch": int(info["best_epoch"]), "steps": int(info["steps"]),
        "max_epochs": int(t.max_epochs), "stopped_early": stopped, "converged": stopped,
        "best_val_loss": float(info["best_loss"]),
        "device": str(info["device"]),
    }


def _no_training() -> dict[str, Any]:
    """The training facts of a baseline's row: nothing is trained, so nothing can stop short."""
    return {"epochs": 0, "best_epoch": 0, "steps": 0, "max_epochs": 0, "stopped_early": False, "converged": True,
            "best_val_loss": math.nan, "device": "cpu"}


def _baseline(config: ExperimentConfig, spec: RunSpec, adata: Any) -> pd.DataFrame:
    """A baseline's predicted ATE (it generates no cells)."""
    from ..baselines import predict_baseline

    ate = predict_baseline(config.base_model(spec.model), adata, artifact_key=spec.artifact_key,
                           **config.model_kwargs(spec.model))
    return pd.DataFrame(np.asarray(ate.X, dtype=np.float64), index=ate.obs_names.astype(str),
                        columns=ate.var_names.astype(str))


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


def _evaluate(
    config: ExperimentConfig, spec: RunSpec, adata: Any, predicted: pd.DataFrame, generated: Any, *, control: str,
    key: str, reference: pd.Series,
) -> dict[str, Any]:
    """Scope metrics for every predictor; QCPR for the models (their generated cells); cell-eval on request."""
    from .scoring import data_qcpr, scopes, score_cell_eval, score_qcpr, score_scopes

    e = config.evaluation
    out = score_scopes(config, spec, adata, predicted, control=control, key=key, reference=reference)
    heldout, split = scopes(config, adata, control, key)["heldout"]
    if generated is not None:
        out.update(score_qcpr(generated, adata, spec, heldout, scrublet=e.run_scrublet, key=key))
    else:
        out.update({"qcpr_doublets": "no generated cells (baseline)", "qcpr": math.nan, "qcpr_heldout": math.nan,
                    **{f"qcpr_{c}": math.nan for c in QCPR_CRITERIA}, **data_qcpr(adata, spec)})
    if e.cell_eval:
        usable = [p for p in heldout if p in set(predicted.index)]
        if usable:
            out.update(score_cell_eval(adata, spec, usable, split, control=control, key=key, generated=generated,
                                       predicted=None if generated is not None else predicted))
    return out


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
    if config.save_models and model is not None:
        model.save(config.output_path / "models" / run_name(config, spec), overwrite=True)
    record = {
        "row": _jsonable(row),
        "run": _jsonable(run_payload(config, spec)),
        "train_info": _jsonable(model.train_info if model is not None else {}),
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
