"""Simple predictors of perturbation effects, beside every model (Ahlmann-Eltze, Huber & Anders, 2025).

A deep model earns its place only if it predicts better than arithmetic on the training data. The
field's benchmark (Ahlmann-Eltze, Huber & Anders, *Nat Methods* 2025) found that no deep model beat
these baselines on unseen double perturbations; every table of cradlekit shows them beside the models.

Each baseline returns its predictions in the layout of :func:`cradlekit.evaluate.data_ate` (an
AnnData with one row per perturbation, one column per gene, the ATE in ``X``), computed only from
the **training cells** (``obs['split'] == 'train'``, QC-passed), so it scores with the same
functions as a model (:func:`cradlekit.evaluate.evaluate_perturbations`).

``no_change``
    ATE 0 for every perturbation. Its ATE-ρ is undefined (a constant); ATE-R² is meaningful.
``mean``
    The mean ATE of the training perturbations, the same vector for every perturbation: what a
    shared shift of every perturbed cell against the controls scores by itself.
``additive``
    For a combination ``A+B``: ATE(A) + ATE(B) from the training cells of the singles. For a
    single perturbation the sum has one term: its own training ATE (in a cell split, the
    observed effect on the training cells).
``linear``
    The linear model of Ahlmann-Eltze et al.: ``ATE ≈ G W P + b`` with a gene embedding ``G``
    from a PCA of the training pseudobulk, a perturbation embedding ``P`` (a combination's is the
    sum of its targets'), ``W`` fitted by ridge regression (:mod:`.linear`).

:func:`predict_baseline` runs one by name; :data:`BASELINES` lists them; :func:`is_baseline`
tells a baseline name from a model name (the experiment runner accepts both in ``models:``).
"""

from __future__ import annotations

from .linear import linear_baseline
from .registry import BASELINE_LABELS, BASELINES, is_baseline, predict_baseline
from .simple import additive_baseline, mean_baseline, no_change_baseline
from .training_effects import training_ate

__all__ = [
    "BASELINES",
    "BASELINE_LABELS",
    "is_baseline",
    "predict_baseline",
    "no_change_baseline",
    "mean_baseline",
    "additive_baseline",
    "linear_baseline",
    "training_ate",
]
