"""cradlekit: CRADLE-VAE for Perturb-seq on AnnData.

Submodules
----------
qc
    Six-criterion MAD quality control with scrublet; applying stored thresholds to generated cells.
data
    Dataset manifest and checksummed loaders, perturbation labels, a Perturb-seq simulator,
    splits and counterfactual references.
module
    The probabilistic core (scvi-tools' ``module``): Pyro models and guides of CRADLE-VAE, its
    ablations and four baselines, tensors in and out.
train
    Training from sparse host data, one dense batch at a time, with early stopping, checkpoints and resume.
model
    The user-facing API on AnnData (scvi-tools' ``model``): :class:`PerturbationModel` sets a
    ``module`` up from AnnData, trains, generates, saves and loads.
evaluate
    Evaluation against ground truth.
"""

from __future__ import annotations

from . import data, errors, evaluate, model, module, qc, train
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
    "module",
    "qc",
    "train",
    "__version__",
]
