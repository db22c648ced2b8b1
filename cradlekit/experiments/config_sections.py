"""The sections of an experiment configuration (:mod:`cradlekit.experiments.config`): one frozen
dataclass per YAML section below the top level, with its defaults. Validation lives in ``config``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model._options import DEFAULT_OBJECTIVE

__all__ = [
    "QCConfig", "SplitConfig", "CounterfactualConfig", "ModelOptions", "TrainOptions", "EvalOptions", "RUN_SEED",
]

#: ``split.seed`` value that makes each run's split seed its own seed (the authors' sweeps).
RUN_SEED = "run"


@dataclass(frozen=True)
class QCConfig:
    """Options of :func:`cradlekit.qc.label_artifacts` (labels for every ``k`` of the grid, computed once).

    ``batch_key``: an ``obs`` column of sample batches (e.g. the cell line of a multi-line screen):
    scrublet runs per batch; ``null`` takes the one recorded by set-up, if any."""

    run_scrublet: bool = True
    seed: int = 0
    precomputed: Any = "auto"
    batch_key: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    """``kind``: ``combinations`` (:func:`~cradlekit.data.split_combinations`) or ``cells``
    (:func:`~cradlekit.data.split_cells`); their fractions; ``seed``: the split seed, ``"run"``
    (default: each run's split seed is its seed, as in the authors' sweeps, so the ± of a table is
    over splits) or an integer (one split for the whole grid)."""

    kind: str = "combinations"
    holdout_fraction: float = 0.25
    val_fraction: float = 0.2
    fractions: tuple[float, float, float] = (0.64, 0.16, 0.20)
    seed: int | str = RUN_SEED

    def seed_for(self, run_seed: int) -> int:
        """The split seed of a run with seed ``run_seed``."""
        return int(run_seed) if self.seed == RUN_SEED else int(self.seed)


@dataclass(frozen=True)
class CounterfactualConfig:
    """Options of :func:`cradlekit.data.counterfactual_references` (computed per ``k``)."""

    n_max: int = 50
    seed: int = 0


@dataclass(frozen=True)
class ModelOptions:
    """Constructor options of :class:`~cradlekit.model.PerturbationModel` shared by every model.

    ``alpha`` and the objective (``objective``: the package default ``unweighted``, ``published``
    (the paper's: set it for a reproduction), ``balanced`` or ``exact``; or its ingredients ``published``,
    ``class_balanced``) are passed to the CRADLE-VAE models only
    (``alpha`` not to ``cradle_wo_cf``). ``mask_prior``: ``null`` keeps the paper's prior number of
    active latent dimensions per perturbation, ``p x D = 0.01 x 200 = 2``, at a smaller
    ``latent_dim``. ``extra`` goes to every model unchanged.
    """

    latent_dim: int = 200
    hidden_dim: int = 400
    num_particles: int = 5
    alpha: float | None = None
    mask_prior: float | None = 0.01
    objective: str | None = DEFAULT_OBJECTIVE
    published: bool | None = None
    class_balanced: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainOptions:
    """Arguments of :meth:`PerturbationModel.train`; ``torch_threads``: intra-op threads during a run
    (1 keeps small networks fast and results identical between sequential and Dask runs; ``None``: unchanged);
    ``model_seed``: the training seed of every run (the authors fix it and vary the split seed);
    ``None``: each run's seed. ``lr_schedule``: ``null`` (constant ``lr``, the paper's) or
    ``plateau`` (halve after ``lr_patience`` epochs without a new best validation loss, see
    :class:`cradlekit.train.TrainConfig`)."""

    max_epochs: int = 2000
    max_steps: int | None = None
    lr: float = 3e-4
    weight_decay: float = 1e-6
    batch_size: int = 512
    patience: int | None = 50
    grad_clip: float = 100.0
    accelerator: str = "auto"
    torch_threads: int | None = 1
    model_seed: int | None = None
    lr_schedule: str | None = None
    lr_factor: float = 0.5
    lr_patience: int = 10


@dataclass(frozen=True)
class EvalOptions:
    """Evaluation budget: generated cells per perturbation for the model ATE (the paper: 2,500) and for
    QCPR (the paper: 100), top-``jaccard_k`` genes (50), scrublet on the generated cells (on).

    ``target_direction``: the expected sign of a target gene's own change (``down`` for knockout
    and CRISPRi, ``up`` for CRISPRa, ``data``: the data's sign), for ``heldout_target_sign``;
    ``cell_eval``: also score the held-out perturbations with the cell-eval package (optional
    extra ``cradlekit[evaluate]``; ``celleval_*`` columns).

    ``model_ate``: ``"sampled"`` (the paper and the authors' evaluation code: the mean of
    log-normalised *generated count* profiles) or ``"expected"`` (the mean of ``log2(1e4·ρ + 1)``,
    the decoder's expected expression without the negative-binomial noise)."""

    n_model_cells: int = 2500
    n_qcpr_cells: int = 100
    jaccard_k: int = 50
    run_scrublet: bool = True
    model_ate: str = "sampled"
    target_direction: str = "data"
    cell_eval: bool = False
