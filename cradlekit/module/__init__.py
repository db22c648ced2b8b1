"""The probabilistic core: Pyro models and guides of CRADLE-VAE and its baselines.

Tensors in, tensors out (the AnnData-facing classes live elsewhere). Every model is a
:class:`~cradlekit.module.base.PerturbationVAE` with Pyro ``model``/``guide`` methods, a ``loss``
(negative per-cell ELBO plus auxiliary terms, with its parts), and ``generate`` /
``predict_mean`` (Algorithm 3). See :mod:`cradlekit.module.base` for the batch keys and the
minibatch scaling.

Modules
-------
layers, standardize, distributions, likelihood
    Shared blocks: (residual) MLPs, log-standardisation, the straight-through Gumbel-softmax
    Bernoulli, the negative-binomial decoder.
sparse_effects
    Masked perturbation embeddings shared by SAMS-VAE and CRADLE-VAE.
divergence
    Gaussian KL and the counterfactual loss J2 (exact and published).
base, generation
    The common base class (scaling, ELBO, generation API) and batched generation.
cradle, sams_vae, cpa_vae, cvae, svae_plus
    One model per file.
registry
    :data:`MODELS`, :func:`build_model` and :func:`model_class`; what a model takes and reads is on
    its class (``has_artifact``, ``takes_objective``, ``takes_alpha``, ``takes_mask_prior``).
"""

from __future__ import annotations

from .._deprecated import module_getattr
from .base import PerturbationVAE
from .cpa_vae import CpaVAE
from .cradle import CradleVAE, CradleVAEWithoutCausal, CradleVAEWithoutCF
from .cvae import ConditionalVAE
from .divergence import counterfactual_loss, gaussian_kl, published_gaussian_kl
from .registry import MODELS, build_model, model_class
from .sams_vae import SamsVAE
from .standardize import LogStandardize, log_standardize_stats
from .svae_plus import SVAEPlus, condition_onehot, unique_conditions

__all__ = [
    "PerturbationVAE",
    "CradleVAE",
    "CradleVAEWithoutCF",
    "CradleVAEWithoutCausal",
    "SamsVAE",
    "CpaVAE",
    "ConditionalVAE",
    "SVAEPlus",
    "MODELS",
    "build_model",
    "model_class",
    "LogStandardize",
    "log_standardize_stats",
    "gaussian_kl",
    "published_gaussian_kl",
    "counterfactual_loss",
    "unique_conditions",
    "condition_onehot",
]

#: Old names: the module ``normalization`` (now ``standardize``).
__getattr__ = module_getattr(__name__)
