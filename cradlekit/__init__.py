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
pl
    Figures (matplotlib); imported on first use of ``cradlekit.pl``.
widgets
    ipywidgets controllers for notebooks; imported on first use of ``cradlekit.widgets``.
baselines
    Simple predictors every model is compared with: no change, the mean training effect, additive
    singles and the linear model of Ahlmann-Eltze, Huber & Anders (2025).
experiments
    The experiment runner (grids of runs, tables); imported on first use of ``cradlekit.experiments``.

``pl``, ``widgets`` and ``experiments`` are loaded lazily (PEP 562), so ``import cradlekit`` does not
import matplotlib or ipywidgets.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from . import baselines, data, errors, evaluate, model, module, qc, train
from ._deprecated import install_module_aliases
from ._logging import enable_logging, logger
from .model import PerturbationModel

__version__ = "0.1.0"

#: Submodules imported on first attribute access (they pull in matplotlib, ipywidgets, ...).
_LAZY_SUBMODULES = ("experiments", "pl", "widgets")

__all__ = [
    "PerturbationModel",
    "baselines",
    "data",
    "enable_logging",
    "errors",
    "evaluate",
    "experiments",
    "logger",
    "model",
    "module",
    "pl",
    "qc",
    "train",
    "widgets",
    "__version__",
]

install_module_aliases()  # old names of renamed modules stay importable, with a DeprecationWarning


def __getattr__(name: str) -> ModuleType:
    """Import a lazily loaded submodule (``cradlekit.pl``, ``.widgets``, ``.experiments``) on first use."""
    if name in _LAZY_SUBMODULES:
        submodule = importlib.import_module(f".{name}", __name__)
        globals()[name] = submodule
        return submodule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
