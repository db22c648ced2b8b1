"""Names of the models, as used in configs and the experiment runner."""

from __future__ import annotations

from typing import Any

from .base import PerturbationVAE
from .cpa_vae import CpaVAE
from .cradle import CradleVAE, CradleVAEWithoutCausal, CradleVAEWithoutCF
from .cvae import ConditionalVAE
from .sams_vae import SamsVAE
from .svae_plus import SVAEPlus

__all__ = ["MODELS", "build_model"]

#: Model name -> constructor. Every constructor takes ``(n_genes, n_perturbations,
#: n_obs_per_perturbation, n_train, **options)``.
MODELS: dict[str, type[PerturbationVAE]] = {
    "cradle": CradleVAE,
    "cradle_wo_cf": CradleVAEWithoutCF,
    "cradle_wo_causal": CradleVAEWithoutCausal,
    "cvae": ConditionalVAE,
    "cpa_vae": CpaVAE,
    "svae_plus": SVAEPlus,
    "sams_vae": SamsVAE,
}


def build_model(name: str, *args: Any, **kwargs: Any) -> PerturbationVAE:
    """Construct the model registered as ``name`` (see :data:`MODELS`).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(*args, **kwargs)
