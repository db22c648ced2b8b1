"""The experiment configuration: a YAML file read into frozen dataclasses and validated.

Example (``configs/smoke.yaml``)::

    name: smoke
    output_dir: results/smoke
    dataset: {name: simulator, kwargs: {n_cells: 1500, n_genes: 150, seed: 0}}
    models: [cradle, cvae]
    ks: [3, 5]
    seeds: [0, 1]
    split: {kind: combinations, holdout_fraction: 0.25, seed: run}   # split seed = the run's seed
    model_options: {latent_dim: 8, hidden_dim: 32, num_particles: 1, objective: published}
    variants: {cradle_exact: {model: cradle, options: {objective: exact}}}   # models: [..., cradle_exact]
    train: {max_epochs: 5, max_steps: 20, lr: 1.0e-3, batch_size: 256, accelerator: cpu}
    evaluation: {n_model_cells: 200, n_qcpr_cells: 20}

Every section and key is checked before anything runs: unknown keys, a value of the wrong type
(e.g. ``lr: "3e-3"``, which YAML reads as text), unknown model names, an unknown ``accelerator``,
a non-positive ``k`` and out-of-range fractions raise :class:`ConfigError` naming the offending entry.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..baselines import BASELINES
from ..module import MODELS
from ..module.base import OBJECTIVE_OPTIONS
from ..train.trainer import LR_SCHEDULES
from ._typecheck import check_types
from .config_sections import (
    RUN_SEED,
    CounterfactualConfig,
    EvalOptions,
    ModelOptions,
    QCConfig,
    SplitConfig,
    TrainOptions,
)
from .dataset_config import SIMULATOR, ConfigError, DatasetConfig, validate_dataset
from .variants import read_variants

__all__ = [
    "ConfigError", "DatasetConfig", "QCConfig", "SplitConfig", "CounterfactualConfig", "ModelOptions",
    "TrainOptions", "EvalOptions", "ExperimentConfig", "load_config", "config_from_dict", "SIMULATOR",
    "CRADLE_MODELS", "CRADLE_ONLY_OPTIONS", "RUN_SEED",
]

#: Models that take the objective's options and ``alpha`` (the registered classes with ``takes_objective``).
CRADLE_MODELS = tuple(name for name, cls in MODELS.items() if cls.takes_objective)
#: Options only CRADLE-VAE models take (dropped from the shared options for the baselines).
CRADLE_ONLY_OPTIONS = ("alpha", *OBJECTIVE_OPTIONS, "artifact_latent")
@dataclass(frozen=True)
class ExperimentConfig:
    """A whole grid: one dataset × ``models`` × ``ks`` × ``seeds``.

    ``variants`` names further entries of ``models``: ``{name: {model: <registry name>, options:
    {...}, label: "..."}}``, a registry model with its own options on top of ``model_options``
    (e.g. CRADLE-VAE under the exact objective, or a rung of the SAMS-VAE -> CRADLE-VAE ladder).

    ``models`` may also name the baselines of :mod:`cradlekit.baselines` (``no_change``, ``mean``,
    ``additive``, ``linear``): they are fitted on the same training cells and scored the same way,
    without training or generated cells (their QCPR is empty).
    """

    dataset: DatasetConfig
    models: tuple[str, ...]
    ks: tuple[int | float, ...]
    seeds: tuple[int, ...]
    name: str = "experiment"
    output_dir: str = "results/experiment"
    save_models: bool = False
    qc: QCConfig = QCConfig()
    split: SplitConfig = SplitConfig()
    counterfactual: CounterfactualConfig = CounterfactualConfig()
    model_options: ModelOptions = ModelOptions()
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: TrainOptions = TrainOptions()
    evaluation: EvalOptions = EvalOptions()
    description: str = ""

    @property
    def output_path(self) -> Path:
        """``output_dir`` as a path."""
        return Path(self.output_dir)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with top-level fields changed (e.g. ``output_dir``), validated again."""
        return config_from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML/JSON-serialisable) form; ``config_from_dict(c.to_dict()) == c``."""
        return _plain(dataclasses.asdict(self))

    def base_model(self, model: str) -> str:
        """The registry model of a ``models`` entry (itself, or a variant's ``model``)."""
        return str(self.variants[model]["model"]) if model in self.variants else model

    def model_label(self, model: str) -> str:
        """Name of a ``models`` entry in tables (a variant's ``label``, else the entry)."""
        return str(self.variants.get(model, {}).get("label") or model)

    def train_options(self, model: str) -> TrainOptions:
        """The training options of a ``models`` entry: the grid's ``train`` with its variant's ``train`` on top."""
        own = self.variants.get(model, {}).get("train")
        return dataclasses.replace(self.train, **own) if own else self.train

    def is_baseline(self, model: str) -> bool:
        """Whether a ``models`` entry is a baseline (or a variant of one) rather than a trained model."""
        return self.base_model(model) in BASELINES

    def model_kwargs(self, model: str) -> dict[str, Any]:
        """Keyword arguments of ``PerturbationModel(adata, model=base_model(model), ...)`` for this grid
        (for a baseline: the options of its function, from its variant)."""
        if self.is_baseline(model):
            return dict(self.variants.get(model, {}).get("options", {}))
        base = dataclasses.asdict(self.model_options)
        extra = base.pop("extra")
        own = {**self.model_overrides.get(model, {}), **self.variants.get(model, {}).get("options", {})}
        kwargs = {**base, **extra, **own}
        cls = MODELS.get(self.base_model(model))  # its class says which options it takes
        if not getattr(cls, "takes_objective", False):
            for key in CRADLE_ONLY_OPTIONS:
                if key not in own:
                    kwargs.pop(key, None)
        elif not cls.takes_alpha and "alpha" not in own:
            kwargs.pop("alpha", None)
        return kwargs


# ------------------------------------------------------------------ reading
def load_config(path: str | os.PathLike, **overrides: Any) -> ExperimentConfig:
    """Read and validate a YAML experiment config.

    Parameters
    ----------
    path
        The YAML file.
    **overrides
        Top-level keys replacing the file's (e.g. ``output_dir=...``).

    Raises
    ------
    ConfigError
        An invalid entry (the message names it); a file that is not a YAML mapping.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file ({err.reason} at byte {err.start}); "
                          "pass the config's .yaml") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the config must be a YAML mapping, got {type(raw).__name__}")
    raw = dict(raw)
    dataset = raw.get("dataset")
    if isinstance(dataset, str) and dataset.endswith(".h5ad"):
        dataset = {"path": dataset}
    if isinstance(dataset, Mapping) and isinstance(dataset.get("path"), str):
        file = Path(dataset["path"]).expanduser()
        if not file.is_absolute():  # relative to the config's folder, so a config travels with its data
            file = (Path(path).resolve().parent / file).resolve()
        raw["dataset"] = {**dataset, "path": str(file)}
    return config_from_dict({**raw, **{k: v for k, v in overrides.items() if v is not None}}, source=str(path))


def config_from_dict(raw: Mapping[str, Any], *, source: str = "config") -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from a plain mapping (see :func:`load_config`)."""
    raw = dict(raw)
    for key in ("dataset", "models", "ks", "seeds"):
        if key not in raw:
            raise ConfigError(f"{source}: missing required key {key!r}")
    sections = {
        "dataset": DatasetConfig, "qc": QCConfig, "split": SplitConfig, "counterfactual": CounterfactualConfig,
        "model_options": ModelOptions, "train": TrainOptions, "evaluation": EvalOptions,
    }
    built: dict[str, Any] = {}
    for key, cls in sections.items():
        if key in raw:
            built[key] = _section(cls, raw.pop(key), f"{source}: {key}")
    built["models"] = tuple(_list(raw.pop("models"), f"{source}: models", str))
    built["ks"] = tuple(_k(k) for k in _list(raw.pop("ks"), f"{source}: ks", (int, float)))
    built["seeds"] = tuple(_list(raw.pop("seeds"), f"{source}: seeds", int))
    overrides = raw.pop("model_overrides", None) or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source}: model_overrides must map model names to option mappings")
    built["model_overrides"] = {str(m): dict(v or {}) for m, v in overrides.items()}
    built["variants"] = read_variants(raw.pop("variants", None) or {}, f"{source}: variants")
    allowed = {f.name for f in dataclasses.fields(ExperimentConfig)} - set(built)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; allowed top-level keys: {sorted(allowed | set(built))}")
    config = ExperimentConfig(**built, **{k: raw[k] for k in raw})
    _validate(config, source)
    return config


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if cls is DatasetConfig and isinstance(raw, str):
        raw = {"path": raw} if raw.endswith(".h5ad") else {"name": raw}
    if cls is DatasetConfig and isinstance(raw, Mapping) and raw.get("path") is not None and not raw.get("name"):
        raw = {**raw, "name": Path(str(raw["path"])).stem}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    values = dict(raw)
    if cls is SplitConfig and "fractions" in values:
        values["fractions"] = tuple(float(f) for f in values["fractions"])
    for key in ("kwargs", "extra", "qc_metrics"):
        if key in values:
            if not isinstance(values[key], Mapping):
                raise ConfigError(f"{where}.{key} must be a mapping")
            values[key] = dict(values[key])
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _list(value: Any, where: str, kind: type | tuple[type, ...]) -> list[Any]:
    if isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list, got {value!r}")
    bad = [v for v in value if not isinstance(v, kind) or isinstance(v, bool)]
    if bad:
        raise ConfigError(f"{where}: invalid entries {bad}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: duplicate entries in {list(value)}")
    return list(value)


def _k(k: int | float) -> int | float:
    k = float(k)
    if not k > 0 or k != k:
        raise ConfigError(f"ks: every QC MAD multiple k must be a positive number, got {k:g}")
    return int(k) if k.is_integer() else k


#: Accepted ``train.accelerator`` values (checked when the config is read, not when a run starts).
ACCELERATOR = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _validate(c: ExperimentConfig, source: str) -> None:
    def fail(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    check_types(c, fail, skip=("dataset",))  # dataset: checked by validate_dataset
    train_fields = {f.name for f in dataclasses.fields(TrainOptions)}
    for name, variant in c.variants.items():
        bad = sorted(set(variant.get("train", {})) - train_fields)
        if bad:
            fail(f"variants.{name}.train: unknown key(s) {bad}; allowed: {sorted(train_fields)}")
        if variant.get("train"):
            own = c.train_options(name)
            check_types(own, lambda msg, name=name: fail(f"variants.{name}.train: {msg}"))
            _validate_train(own, lambda msg, name=name: fail(f"variants.{name}: {msg}"))
    _validate_train(c.train, fail)

    unknown = [m for m in c.models if m not in MODELS and m not in BASELINES and m not in c.variants]
    if unknown:
        fail(f"unknown model name(s) {unknown}; choose from {sorted(MODELS)}, a baseline {sorted(BASELINES)} "
             "or a name under 'variants'")

    bad_over = sorted(set(c.model_overrides) - set(c.models))
    if bad_over:
        fail(f"model_overrides for model(s) not in the grid: {bad_over}")
    for model, opts in [*c.model_overrides.items(), *((m, v["options"]) for m, v in c.variants.items())]:
        if c.is_baseline(model):
            _check_baseline_options(model, c.base_model(model), opts, fail)
        elif (not getattr(MODELS.get(c.base_model(model)), "takes_objective", False)
              and set(CRADLE_ONLY_OPTIONS) & set(opts)):
            fail(f"options of {model}: {sorted(set(CRADLE_ONLY_OPTIONS) & set(opts))} apply to CRADLE-VAE models only")
    from ..module.cradle import OBJECTIVES

    if c.model_options.objective is not None and c.model_options.objective not in OBJECTIVES:
        fail(f"model_options.objective must be one of {sorted(OBJECTIVES)} or null, got {c.model_options.objective!r}")
    seed = c.split.seed
    if seed != RUN_SEED and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        fail(f"split.seed must be {RUN_SEED!r} or a non-negative integer, got {c.split.seed!r}")
    if any(s < 0 for s in c.seeds):
        fail(f"seeds must be non-negative integers, got {list(c.seeds)}")
    validate_dataset(c.dataset, fail)
    s = c.split
    if s.kind not in ("combinations", "cells"):
        fail(f"split.kind must be 'combinations' or 'cells', got {s.kind!r}")
    if not 0 < s.holdout_fraction < 1:
        fail(f"split.holdout_fraction must be in (0, 1), got {s.holdout_fraction}")
    if not 0 <= s.val_fraction < 1:
        fail(f"split.val_fraction must be in [0, 1), got {s.val_fraction}")
    if len(s.fractions) != 3 or min(s.fractions) < 0 or abs(sum(s.fractions) - 1) > 1e-6:
        fail(f"split.fractions must be three non-negative numbers summing to 1, got {list(s.fractions)}")
    positive = {
        "model_options.latent_dim": c.model_options.latent_dim, "model_options.hidden_dim": c.model_options.hidden_dim,
        "model_options.num_particles": c.model_options.num_particles,
        "evaluation.n_model_cells": c.evaluation.n_model_cells, "evaluation.n_qcpr_cells": c.evaluation.n_qcpr_cells,
        "evaluation.jaccard_k": c.evaluation.jaccard_k,
        "counterfactual.n_max": c.counterfactual.n_max,
    }
    for name, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(f"{name} must be a positive integer, got {value!r}")
    if c.evaluation.model_ate not in ("sampled", "expected"):
        fail(f"evaluation.model_ate must be 'sampled' or 'expected', got {c.evaluation.model_ate!r}")
    if c.evaluation.target_direction not in ("down", "up", "data"):
        fail(f"evaluation.target_direction must be 'down', 'up' or 'data', got {c.evaluation.target_direction!r}")
    if c.model_options.alpha is not None and c.model_options.alpha < 0:
        fail(f"model_options.alpha must be non-negative, got {c.model_options.alpha}")
    for name in ("name", "output_dir", "description"):
        if not isinstance(getattr(c, name), str):
            fail(f"{name} must be a string, got {getattr(c, name)!r}")
    if not c.output_dir.strip():
        fail("output_dir must not be empty")
    if not isinstance(c.save_models, bool):
        fail(f"save_models must be true or false, got {c.save_models!r}")


def _validate_train(t: TrainOptions, fail: Any) -> None:
    """Checks of a ``train`` section (the grid's, or a variant's merged one)."""
    if not ACCELERATOR.match(t.accelerator):
        fail(f"train.accelerator must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got {t.accelerator!r}")
    if t.model_seed is not None and (isinstance(t.model_seed, bool) or not isinstance(t.model_seed, int)):
        fail(f"train.model_seed must be an integer or null, got {t.model_seed!r}")
    values = {"train.max_epochs": t.max_epochs, "train.batch_size": t.batch_size, "train.lr_patience": t.lr_patience,
              **{k: v for k, v in {"train.max_steps": t.max_steps, "train.patience": t.patience,
                                   "train.torch_threads": t.torch_threads}.items() if v is not None}}
    for name, value in values.items():
        smallest = 0 if name == "train.lr_patience" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
            fail(f"{name} must be a {'non-negative' if smallest == 0 else 'positive'} integer, got {value!r}")
    if not t.lr > 0:
        fail(f"train.lr must be positive, got {t.lr}")
    if t.lr_schedule not in LR_SCHEDULES:
        fail(f"train.lr_schedule must be null or 'plateau', got {t.lr_schedule!r}")
    if not 0 < t.lr_factor < 1:
        fail(f"train.lr_factor must be in (0, 1), got {t.lr_factor!r}")


def _check_baseline_options(model: str, base: str, options: dict[str, Any], fail: Any) -> None:
    """A baseline variant's options must be keyword options of its function (data keys are the grid's)."""
    fn = BASELINES[base]
    allowed = {p for p, v in inspect.signature(fn).parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
    allowed -= {"perturbations", "artifact_key", "train_split", "split_key"}
    bad = sorted(set(options) - allowed)
    if bad:
        fail(f"options of {model}: {bad} are not options of the {base!r} baseline (allowed: {sorted(allowed)})")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
