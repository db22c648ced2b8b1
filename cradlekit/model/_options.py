"""Which constructor options each model takes, and the SPEC defaults."""

from __future__ import annotations

from typing import Any

from ..models import MODELS

__all__ = ["module_options", "uses_counterfactual", "DEFAULT_ALPHA"]

#: SPEC §3: 0.5 for combination datasets (Norman, Dixit); 0.05 Replogle, 0.1 Adamson.
DEFAULT_ALPHA = 0.5
_CRADLE = ("cradle", "cradle_wo_cf", "cradle_wo_causal")
_MASKED = (*_CRADLE, "sams_vae")


def module_options(
    model: str,
    *,
    latent_dim: int,
    hidden_dim: int,
    num_particles: int,
    alpha: float | None,
    mask_prior: float,
    published: bool,
    class_balanced: bool,
    **model_options: Any,
) -> dict[str, Any]:
    """The keyword options of ``build_model(model, ...)`` (without data-derived ones).

    Options that only CRADLE-VAE models have (``alpha``, ``published``, ``class_balanced``) raise
    when set for another model; ``mask_prior`` is passed to the models with masks (CRADLE-VAE,
    SAMS-VAE) and ignored by the others. ``model_options`` go through unchanged.

    Raises
    ------
    ValueError
        Unknown model name or an option the model does not have.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(MODELS)}")
    opts: dict[str, Any] = {"latent_dim": int(latent_dim), "hidden_dim": int(hidden_dim), "num_particles": int(num_particles)}
    if model in _CRADLE:
        opts.update(published=bool(published), class_balanced=bool(class_balanced))
        if model == "cradle_wo_cf":
            if alpha:
                raise ValueError("model='cradle_wo_cf' is CRADLE-VAE with alpha=0; do not pass alpha")
        else:
            opts["alpha"] = DEFAULT_ALPHA if alpha is None else float(alpha)
    else:
        bad = [k for k, v in (("alpha", alpha is not None), ("published", published), ("class_balanced", class_balanced)) if v]
        if bad:
            raise ValueError(f"{bad} apply to CRADLE-VAE models only, not to model={model!r}")
    if model in _MASKED:
        opts["mask_prior"] = float(mask_prior)
    opts.update(model_options)
    return opts


def uses_counterfactual(model: str, options: dict[str, Any]) -> bool:
    """Whether the model computes J2 and so needs counterfactual references."""
    return model in ("cradle", "cradle_wo_causal") and float(options.get("alpha", DEFAULT_ALPHA)) > 0
