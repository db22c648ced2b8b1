"""Quality control: the six CRADLE-VAE artifact criteria (the book's design page, "Data and quality control").

Main entry points
-----------------
:func:`label_artifacts`
    Metrics, one-sided median ± k·MAD thresholds for k = 3, 4, 5, scrublet doublets; writes
    per-criterion flags and ``a_i`` to ``obs`` and every threshold to ``uns['qc']``.
:func:`apply_thresholds`
    Apply a reference's stored thresholds to other (e.g. generated) cells.
:func:`pass_fraction`, :func:`qc_summary`, :func:`qc_thresholds`
    Fraction of cells passing QC (in ``[0, 1]``; :func:`cradlekit.evaluate.qc_pass_rate` gives the
    paper's QCPR in %), per-criterion fail/pass counts, and the thresholds as a table.

Building blocks: :mod:`~cradlekit.qc.genes` (gene sets), :mod:`~cradlekit.qc.metrics`,
:mod:`~cradlekit.qc.thresholds` (MAD rules and the MAD = 0 guard),
:mod:`~cradlekit.qc.doublets`, :mod:`~cradlekit.qc.sample_batches` (thresholds per sample batch).
"""

from __future__ import annotations

from .._deprecated import module_getattr
from .apply import apply_thresholds, pass_fraction
from .doublets import run_scrublet
from .genes import HB_GENES, MT_PATTERN, RIBO_PATTERN, gene_set_masks, hb_mask, mito_mask, ribo_mask
from .label import label_artifacts, qc_summary, qc_thresholds
from .metrics import QCMetrics, compute_metrics
from .record import read_qc_uns
from .thresholds import fails, mad, mad_threshold, robust_scale

__all__ = [
    "label_artifacts",
    "apply_thresholds",
    "pass_fraction",
    "qc_summary",
    "qc_thresholds",
    "read_qc_uns",
    "compute_metrics",
    "QCMetrics",
    "run_scrublet",
    "gene_set_masks",
    "mito_mask",
    "ribo_mask",
    "hb_mask",
    "MT_PATTERN",
    "RIBO_PATTERN",
    "HB_GENES",
    "mad",
    "robust_scale",
    "mad_threshold",
    "fails",
]

#: Old names: ``pass_rate`` (now :func:`pass_fraction`) and the module ``batches`` (now ``sample_batches``).
__getattr__ = module_getattr(__name__, {"pass_rate": "pass_fraction"}, globals())
