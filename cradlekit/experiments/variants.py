"""Named model variants of a grid: a registry model with its own options (``variants:`` of a config).

Example: CRADLE-VAE under our exact-KL objective beside the published one, or a rung of the ladder
from SAMS-VAE to CRADLE-VAE::

    variants:
      cradle_exact: {model: cradle, options: {objective: exact}, label: CRADLE-VAE (exact KL)}
      sams_concat: {model: sams_vae, options: {decoder_input: concat}}
      linear_k5: {model: linear, options: {n_components: 5}}   # a baseline with its own options
      cvae_plateau: {model: cvae, train: {lr_schedule: plateau}}   # the same model, other training options
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..baselines import BASELINES
from ..module import MODELS
from .dataset_config import ConfigError

__all__ = ["read_variants"]


def read_variants(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    """Validate ``variants:`` into ``{name: {"model": registry name, "options": {...}, ["label": str]}}``.

    ``model`` is a registry model (:data:`cradlekit.module.MODELS`) or a baseline
    (:data:`cradlekit.baselines.BASELINES`), whose ``options`` go to the baseline function;
    ``train`` (optional) replaces keys of the grid's ``train`` section for this entry (checked
    by the config).

    Raises
    ------
    ConfigError
        Not a mapping, a missing or unknown ``model``, unknown keys, or a name that is a registry model.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must map names to {{model: ..., options: {{...}}}}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping) or "model" not in spec:
            raise ConfigError(f"{where}.{name} must be a mapping with a 'model' (a registry name)")
        unknown = sorted(set(spec) - {"model", "options", "label", "train"})
        if unknown:
            raise ConfigError(
                f"{where}.{name}: unknown key(s) {unknown}; allowed: ['label', 'model', 'options', 'train']"
            )
        if str(name) in MODELS or str(name) in BASELINES:
            raise ConfigError(f"{where}.{name}: a variant cannot reuse a registry model or baseline name")
        if spec["model"] not in MODELS and spec["model"] not in BASELINES:
            raise ConfigError(f"{where}.{name}.model {spec['model']!r} is not one of {sorted(MODELS)} "
                              f"or a baseline {sorted(BASELINES)}")
        options = spec.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}.{name}.options must be a mapping")
        train = spec.get("train") or {}
        if not isinstance(train, Mapping):
            raise ConfigError(f"{where}.{name}.train must be a mapping of training options")
        out[str(name)] = {"model": str(spec["model"]), "options": dict(options),
                          **({"train": dict(train)} if train else {}),
                          **({"label": str(spec["label"])} if spec.get("label") else {})}
    return out


