"""Names of the AnnData fields that cradlekit reads and writes.

Kept in one place so that QC, data, models and widgets agree.

``obs``
    ``perturbation``             canonical perturbation label (``A`` or ``A+B``; controls carry the control label)
    ``split``                    ``train`` / ``val`` / ``test``
    ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``, ``pct_counts_hb``,
    ``doublet_score``, ``predicted_doublet``       per-cell QC metrics (scanpy's names)
    ``qc_fail_<criterion>_k<k>``  one flag per QC criterion and MAD multiple ``k``
    ``artifact_k<k>``            ``a_i``: 1 when any criterion fails at ``k``
    ``cf_has_reference``         whether a counterfactual reference exists for the cell
``uns``
    ``cradlekit``                perturbation key, control label, combination separator
    ``qc``                       thresholds, medians, MADs per criterion and ``k``
    ``split``                    split parameters and held-out perturbations
``layers``
    ``cf_reference``             counterfactual reference medians (sparse)
``obsm``
    ``cf_reference_idx``         row indices of the failed cells behind each reference (-1 padded)
"""

from __future__ import annotations

PERTURBATION_KEY = "perturbation"
CONTROL_LABEL = "control"
COMBO_SEP = "+"
SPLIT_KEY = "split"
UNS_KEY = "cradlekit"
QC_UNS_KEY = "qc"
SPLIT_UNS_KEY = "split"
CF_LAYER = "cf_reference"
CF_MASK_KEY = "cf_has_reference"
CF_INDEX_KEY = "cf_reference_idx"
QC_KS = (3, 4, 5)

CRITERIA = ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet")
METRIC_OF_CRITERION = {
    "total_counts": "total_counts",
    "n_genes": "n_genes_by_counts",
    "mito": "pct_counts_mt",
    "ribo": "pct_counts_ribo",
    "hb": "pct_counts_hb",
    "doublet": "predicted_doublet",
}


def artifact_key(k: int | float) -> str:
    """``obs`` column holding ``a_i`` at MAD multiple ``k`` (e.g. ``artifact_k3``)."""
    return f"artifact_k{_fmt_k(k)}"


def flag_key(criterion: str, k: int | float) -> str:
    """``obs`` column flagging failure of one criterion at MAD multiple ``k``."""
    return f"qc_fail_{criterion}_k{_fmt_k(k)}"


def _fmt_k(k: int | float) -> str:
    k = float(k)
    return str(int(k)) if k.is_integer() else str(k).replace(".", "p")
