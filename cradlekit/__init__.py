"""cradlekit: CRADLE-VAE for Perturb-seq on AnnData.

Submodules
----------
qc
    Six-criterion MAD quality control with scrublet; applying stored thresholds to generated cells.
data
    Dataset manifest and checksummed loaders, perturbation labels, a Perturb-seq simulator,
    splits and counterfactual references.
models
    Pyro models and guides: CRADLE-VAE, its ablations and four baselines.
train
    Device-resident training with early stopping, checkpoints and resume.
model
    :class:`PerturbationModel`: set up from AnnData, train, generate, save/load (scvi-tools style).
evaluate
    Evaluation against ground truth.
"""

from __future__ import annotations

from . import data, errors, evaluate, model, models, qc, train
from ._logging import logger
from .model import PerturbationModel

__version__ = "0.1.0"

__all__ = [
    "PerturbationModel",
    "data",
    "errors",
    "evaluate",
    "logger",
    "model",
    "models",
    "qc",
    "train",
    "__version__",
]
