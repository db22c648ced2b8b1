"""Data: perturbation labels, dataset manifest and checksummed loaders, simulator, splits, counterfactual references.

Typical use::

    import cradlekit as ck
    adata = ck.data.load_dataset("screen.h5ad", perturbation_key="guide",   # your own file
                                 control_label="non-targeting")             # (= read_h5ad + setup)
    adata = ck.data.load_dataset("norman_subset")          # or simulate_perturbseq()
    ck.qc.label_artifacts(adata)                            # obs artifact_k3/4/5, uns['qc']
    ck.data.split_combinations(adata, seed=0)               # obs['split'], 25 % combinations held out
    ck.data.counterfactual_references(adata, artifact_key="artifact_k3")
"""

from .._deprecated import module_getattr
from .counterfactual import counterfactual_matrix, counterfactual_references, reference_table
from .download import fetch
from .example import EXAMPLE_QC_METRICS, write_example_screen
from .manifest import DatasetEntry, get_entry, load_manifest, manifest_path
from .own import read_h5ad, setup
from .perturbations import (
    canonical_label,
    canonicalize_labels,
    dosage_matrix,
    is_combination,
    parse_perturbation,
    perturbation_info,
    perturbation_targets,
    require_perturbations,
    standardize_perturbations,
)
from .readers import load_dataset, standardize_dataset
from .simulate import simulate_perturbseq, true_ate_frame
from .simulate_truth import simulate_clean_cells, true_clean_frequencies
from .splits import HeldOut, heldout_perturbations, split_cells, split_combinations, split_summary

__all__ = [
    "EXAMPLE_QC_METRICS",
    "DatasetEntry",
    "HeldOut",
    "canonical_label",
    "canonicalize_labels",
    "counterfactual_matrix",
    "counterfactual_references",
    "dosage_matrix",
    "fetch",
    "get_entry",
    "heldout_perturbations",
    "is_combination",
    "load_dataset",
    "load_manifest",
    "manifest_path",
    "parse_perturbation",
    "perturbation_info",
    "perturbation_targets",
    "read_h5ad",
    "reference_table",
    "require_perturbations",
    "setup",
    "simulate_perturbseq",
    "simulate_clean_cells",
    "true_clean_frequencies",
    "split_cells",
    "split_combinations",
    "split_summary",
    "standardize_dataset",
    "standardize_perturbations",
    "true_ate_frame",
    "write_example_screen",
]

#: Old names: the module ``normalizers`` (now ``label_layouts``).
__getattr__ = module_getattr(__name__)
