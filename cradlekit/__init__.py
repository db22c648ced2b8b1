"""cradlekit: CRADLE-VAE for Perturb-seq on AnnData.

Submodules
----------
qc
    Six-criterion MAD quality control with scrublet; applying stored thresholds to generated cells.
data
    Dataset manifest and checksummed loaders, perturbation parsing, a Perturb-seq simulator,
    splits and counterfactual references.
"""

from __future__ import annotations

from . import data, errors, qc
from ._logging import logger

__version__ = "0.1.0"

__all__ = ["data", "errors", "qc", "logger", "__version__"]
