"""Evaluation: the metrics of the paper's Table 2 and recovery of simulated artifacts.

Main entry points
-----------------
:func:`data_ate`, :func:`model_ate`
    Average treatment effects (perturbations × genes AnnData) from QC-passed data cells and from
    generated cells, in the metric space of :func:`perturbseq_normalize`.
:func:`ate_pearson`, :func:`ate_r2`, :func:`top_k_jaccard`, :func:`evaluate_perturbations`
    ATE-ρ, ATE-R² (data as truth) and top-50 Jaccard, on all or a subset of perturbations.
:func:`centered_ate_pearson`, :func:`target_sign_agreement`
    Calibrated views: ATE-ρ around the mean training effect (a constant prediction scores 0),
    and whether target genes move the expected way.
:mod:`cradlekit.evaluate.cell_eval`
    Predictions in the layout of the cell-eval package, and its metrics on them (optional extra).
:func:`qc_pass_rate`
    QCPR: % of generated cells passing the data's stored QC thresholds for k = 3, 4, 5.
:func:`artifact_recovery`
    Precision and recall of QC labels against simulated artifacts.
:func:`rescue_artifacts`
    CRADLE-VAE's counterfactual artifact-free counts of observed QC-failed cells (a prediction).
:func:`rescue_truth_scores`, :func:`artifact_gene_effects`
    Rescued cells against the simulator's clean truth; each artifact latent's effect on genes.
"""

from .._deprecated import module_getattr
from .agreement import JaccardResult, align_ate, ate_pearson, ate_r2, evaluate_perturbations, top_k_jaccard
from .artifact_effects import artifact_gene_effects, gene_classes, true_artifact_effects
from .artifact_recovery import artifact_recovery
from .ate import data_ate, model_ate
from .calibrated import SignAgreement, centered_ate_pearson, target_sign_agreement
from .log_normalize import perturbseq_normalize
from .qcpr import criterion_pass_rates, data_pass_rates, qc_pass_rate
from .rescue import rescue_artifacts
from .rescue_truth import rescue_truth_row, rescue_truth_scores

__all__ = [
    "artifact_recovery",
    "perturbseq_normalize",
    "data_ate",
    "model_ate",
    "align_ate",
    "ate_pearson",
    "ate_r2",
    "top_k_jaccard",
    "JaccardResult",
    "evaluate_perturbations",
    "centered_ate_pearson",
    "target_sign_agreement",
    "SignAgreement",
    "qc_pass_rate",
    "criterion_pass_rates",
    "data_pass_rates",
    "rescue_artifacts",
    "rescue_truth_scores",
    "rescue_truth_row",
    "artifact_gene_effects",
    "true_artifact_effects",
    "gene_classes",
]

#: Old names: the modules ``metrics`` (now ``agreement``) and ``normalize`` (now ``log_normalize``).
__getattr__ = module_getattr(__name__)
