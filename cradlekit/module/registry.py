"""Names of the models, as used in configs and the experiment runner.

Adding a model is one entry here: what the rest of the package needs to know about it (which
options it takes, whether it reads artifact labels or counterfactual references) are class
attributes of its :class:`~cradlekit.module.base.PerturbationVAE` subclass (``has_artifact``,
``takes_objective``, ``takes_alpha``, ``takes_mask_prior``), read through :func:`model_class`.
"""

from __future__ import annotations

from typing import Any

from .base import PerturbationVAE
from .cpa_vae import CpaVAE
from .cradle import CradleVAE, CradleVAEWithoutCausal, CradleVAEWithoutCF
from .cvae import ConditionalVAE
from .sams_vae import SamsVAE
from .svae_plus import SVAEPlus

__all__ = ["MODELS", "build_model", "model_class"]

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


def model_class(name: str) -> type[PerturbationVAE]:
    """The class registered as ``name`` in :data:`MODELS`.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


def build_model(name: str, *args: Any, **kwargs: Any) -> PerturbationVAE:
    """Construct the model registered as ``name`` (see :data:`MODELS`).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    return model_class(name)(*args, **kwargs)
