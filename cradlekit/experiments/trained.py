"""Reopen what a grid produced: the prepared AnnData of a ``k`` and the trained model of a run.

Typical use (after :func:`~cradlekit.experiments.run_grid` with ``save_models: true``)::

    from cradlekit.experiments import load_prepared, load_trained

    adata = load_prepared(config, k=3, seed=0)            # QC labels, split of run seed 0, CF references of k = 3
    model = load_trained(config, "cradle", k=3, seed=0)   # a PerturbationModel on that AnnData
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anndata import AnnData

from .config import ExperimentConfig
from .grid import RunSpec, run_name
from .prepare import prepared_path, read_prepared

if TYPE_CHECKING:
    from ..model import PerturbationModel

__all__ = ["load_prepared", "load_trained", "trained_model_path"]


def load_prepared(config: ExperimentConfig, k: int | float, *, seed: int | None = None, copy: bool = True) -> AnnData:
    """The prepared AnnData of ``k`` (QC labels for every ``k``, split, counterfactual references of ``k``).

    Parameters
    ----------
    config
        The grid.
    k
        A QC multiple of the grid.
    seed
        A run seed of the grid (its split seed picks the split); ``None``: the grid's first seed.
    copy
        Return a copy the caller may modify (the runner shares its cached object).

    Raises
    ------
    ValueError
        ``k`` is not in the grid.
    FileNotFoundError
        The grid has not been prepared yet (run :func:`~cradlekit.experiments.run_grid`).
    """
    if float(k) not in {float(x) for x in config.ks}:
        raise ValueError(f"k={k} is not in the grid {config.name!r} (ks: {list(config.ks)})")
    seed = config.seeds[0] if seed is None else int(seed)
    path = prepared_path(config, k, config.split.seed_for(seed))
    if not path.exists():
        raise FileNotFoundError(f"no prepared data for k={k} at {path}: run the grid first (run_grid)")
    adata = read_prepared(path)
    return adata.copy() if copy else adata


def trained_model_path(config: ExperimentConfig, model: str, k: int | float, seed: int):
    """Folder where the runner saved the model of run (``model``, ``k``, ``seed``)."""
    return config.output_path / "models" / run_name(config, RunSpec(model, k, seed))


def load_trained(
    config: ExperimentConfig, model: str, k: int | float, seed: int, *, adata: AnnData | None = None,
    accelerator: str = "auto",
) -> PerturbationModel:  # fmt: skip
    """The trained :class:`~cradlekit.PerturbationModel` of one finished run of the grid.

    Parameters
    ----------
    config
        The grid (with ``save_models: true`` when it ran).
    model, k, seed
        The run.
    adata
        The AnnData to attach (default: :func:`load_prepared` of ``k`` and ``seed``).
    accelerator
        Device to load the module on.

    Raises
    ------
    ValueError
        The run is not part of the grid.
    FileNotFoundError
        The run has not finished, or the grid did not save models.
    """
    from ..model import PerturbationModel

    if model not in config.models or seed not in config.seeds:
        raise ValueError(f"({model}, k={k}, seed={seed}) is not a run of the grid {config.name!r}")
    path = trained_model_path(config, model, k, seed)
    if not path.exists():
        hint = "" if config.save_models else " (the grid has save_models: false)"
        raise FileNotFoundError(f"no saved model of ({model}, k={k}, seed={seed}) at {path}{hint}")
    if adata is None:
        adata = load_prepared(config, k, seed=seed)
    return PerturbationModel.load(path, adata, accelerator=accelerator)
