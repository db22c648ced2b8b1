"""Expansion of a config into runs, and the cache keys of runs and prepared data.

A run is one (model, k, seed) cell of the grid. Its cache key is the SHA-256 of the canonical
JSON of everything that determines its result (dataset and loading options that change the
data, QC, split and counterfactual settings, the model's resolved constructor options, training
and evaluation options, ``k``, ``seed``, and :data:`RUNNER_VERSION`), so a changed setting gives
a new key and an unchanged one finds the finished run. Paths (output folder, data file
location) and the grid's other cells are not part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ExperimentConfig

__all__ = [
    "RunSpec", "expand_grid", "run_key", "run_name", "run_json_path", "run_payload", "prepared_key",
    "RUNNER_VERSION", "MODEL_ORDER",
]

#: Bumped when a change to run_one makes old cached results incomparable.
RUNNER_VERSION = 4  # 2: model ATE from sampled counts; 3: split seed per run, eligible held-out
# combinations, one "all" set for every model, objective arms, per-criterion QCPR; 4: baselines,
# calibrated metrics, convergence columns
#: Dataset keyword arguments that say where a file is, not what is in it (kept out of the keys).
_LOCATION_KWARGS = ("path", "cache_dir", "local_dirs", "download", "verify")
#: Table order of the models (the paper's, ablations last).
MODEL_ORDER = ("no_change", "mean", "additive", "linear", "cvae", "cpa_vae", "svae_plus", "sams_vae", "cradle",
               "cradle_wo_cf", "cradle_wo_causal")


@dataclass(frozen=True, order=True)
class RunSpec:
    """One cell of the grid."""

    model: str
    k: int | float
    seed: int

    @property
    def artifact_key(self) -> str:
        """The ``obs`` QC label the run trains and evaluates with."""
        from .._keys import artifact_key

        return artifact_key(self.k)


def expand_grid(config: ExperimentConfig) -> list[RunSpec]:
    """The runs of a config in a deterministic order: k, then model (config order), then seed."""
    return [RunSpec(m, k, s) for k in config.ks for m in config.models for s in config.seeds]


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: The settings each section of a run's key held at RUNNER_VERSION 4. A setting added since enters the key
#: only when it differs from its default, so adding an option does not invalidate finished runs.
_KEYED_V4 = {
    "qc": {"run_scrublet", "seed", "precomputed"},
    "split": {"kind", "holdout_fraction", "val_fraction", "fractions", "seed"},
    "counterfactual": {"n_max", "seed"},
    "train": {"max_epochs", "max_steps", "lr", "weight_decay", "batch_size", "patience", "grad_clip", "accelerator",
              "torch_threads", "model_seed", "lr_schedule", "lr_factor", "lr_patience"},
    "evaluation": {"n_model_cells", "n_qcpr_cells", "jaccard_k", "run_scrublet", "model_ate", "target_direction",
                   "cell_eval"},
    "model_options": {"latent_dim", "hidden_dim", "num_particles", "alpha", "mask_prior", "objective", "published",
                      "class_balanced"},
}


def _keyed(section: str, values: dict[str, Any], defaults: Any) -> dict[str, Any]:
    """``values`` without the settings added after version 4 that are at their default (see :data:`_KEYED_V4`)."""
    fields = {f.name: f for f in dataclasses.fields(defaults)}
    missing = object()

    def default(name: str) -> Any:
        f = fields.get(name)
        if f is None:
            return missing
        if f.default is not dataclasses.MISSING:
            return f.default
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else missing

    return {k: v for k, v in values.items() if k in _KEYED_V4[section] or v != default(k)}


def _data_payload(config: ExperimentConfig) -> dict[str, Any]:
    kwargs = {k: v for k, v in config.dataset.kwargs.items() if k not in _LOCATION_KWARGS}
    return {
        "dataset": {"name": config.dataset.name, "kwargs": kwargs, **config.dataset.identity()},
        "qc": _keyed("qc", dataclasses.asdict(config.qc), type(config.qc)),
        "split": _keyed("split", dataclasses.asdict(config.split), type(config.split)),
    }


def prepared_key(config: ExperimentConfig, k: int | float | None = None, split_seed: int | None = None) -> str:
    """Key of the prepared AnnData: QC labels (``k=None``), plus the split of ``split_seed`` and the
    CF references of ``k``."""
    payload: dict[str, Any] = {"data": _data_payload(config), "ks": sorted(float(x) for x in config.ks)}
    payload["data"].pop("split")  # QC labels do not depend on the split
    if k is not None:
        payload.update(
            k=float(k),
            counterfactual=_keyed(
                "counterfactual", dataclasses.asdict(config.counterfactual), type(config.counterfactual)
            ),
            split=_keyed("split", dataclasses.asdict(config.split), type(config.split)),
            split_seed=split_seed,
        )
    return _digest(payload)


def run_payload(config: ExperimentConfig, spec: RunSpec) -> dict[str, Any]:
    """Everything that determines the result of ``spec`` (hashed by :func:`run_key`).

    A baseline's result does not depend on the model, training or generation settings, which are
    left out of its payload (changing them does not refit it).
    """
    if config.is_baseline(spec.model):
        e = config.evaluation
        return {
            "runner_version": RUNNER_VERSION, "data": _data_payload(config), "model": spec.model,
            "base_model": config.base_model(spec.model), "options": config.model_kwargs(spec.model),
            "split_seed": config.split.seed_for(spec.seed), "k": float(spec.k), "seed": int(spec.seed),
            "evaluation": {"jaccard_k": e.jaccard_k, "target_direction": e.target_direction, "cell_eval": e.cell_eval},
        }
    return {
        "runner_version": RUNNER_VERSION,
        "data": _data_payload(config),
        "counterfactual": _keyed(
            "counterfactual", dataclasses.asdict(config.counterfactual), type(config.counterfactual)
        ),
        "model": spec.model,
        "base_model": config.base_model(spec.model),
        "model_kwargs": _keyed("model_options", config.model_kwargs(spec.model), type(config.model_options)),
        "split_seed": config.split.seed_for(spec.seed),
        "train": _keyed("train", dataclasses.asdict(config.train_options(spec.model)), type(config.train)),
        "evaluation": _keyed("evaluation", dataclasses.asdict(config.evaluation), type(config.evaluation)),
        "k": float(spec.k),
        "seed": int(spec.seed),
    }


def run_key(config: ExperimentConfig, spec: RunSpec) -> str:
    """The run's cache key (16 hex digits)."""
    return _digest(run_payload(config, spec))


def run_name(config: ExperimentConfig, spec: RunSpec) -> str:
    """File stem of a run: ``<model>_k<k>_s<seed>_<key>``."""
    return f"{spec.model}_{spec.artifact_key.removeprefix('artifact_')}_s{spec.seed}_{run_key(config, spec)}"


def run_json_path(config: ExperimentConfig, spec: RunSpec) -> Path:
    """Where the finished run's JSON is written."""
    return config.output_path / "runs" / f"{run_name(config, spec)}.json"
