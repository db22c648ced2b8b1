"""Prepared data of a grid, cached in the output folder.

``prepared/<key>_qc_split.h5ad``
    The dataset with QC labels for every ``k`` of the grid (computed once) and the split.
``prepared/<key>_k<k>.h5ad``
    The same plus the counterfactual references of ``artifact_k<k>``.

Files are written atomically (temporary file, then rename), so concurrent workers never read a
half-written file; the runner prepares every file before it starts runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
from anndata import AnnData

from .._keys import artifact_key
from .._logging import logger
from .config import SIMULATOR, ExperimentConfig
from .grid import prepared_key

__all__ = ["load_raw", "prepare_data", "prepare_all", "read_prepared", "prepared_path"]

_CACHE: dict[tuple[str, float], AnnData] = {}


def load_raw(config: ExperimentConfig) -> AnnData:
    """The dataset of the config: the simulator's output, :func:`cradlekit.data.load_dataset` of a manifest
    dataset, or your own file read and prepared with :func:`cradlekit.data.setup`."""
    from ..data import load_dataset, simulate_perturbseq

    d = config.dataset
    if d.is_file:
        return load_dataset(d.path, **d.setup_kwargs())
    if d.name == SIMULATOR:
        return simulate_perturbseq(**d.kwargs)
    return load_dataset(d.name, **d.kwargs)


def _base_path(config: ExperimentConfig) -> Path:
    return config.output_path / "prepared" / f"{prepared_key(config)}_qc_split.h5ad"


def prepared_path(config: ExperimentConfig, k: int | float) -> Path:
    """Path of the prepared AnnData of ``k`` (QC labels, split, CF references of ``artifact_k<k>``)."""
    tag = artifact_key(k).removeprefix("artifact_")
    return config.output_path / "prepared" / f"{prepared_key(config, k)}_{tag}.h5ad"


def _write_atomic(adata: AnnData, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.h5ad")
    adata.write_h5ad(tmp)
    os.replace(tmp, path)


def _prepare_base(config: ExperimentConfig) -> AnnData:
    from ..data import split_cells, split_combinations
    from ..qc import label_artifacts

    path = _base_path(config)
    if path.exists():
        logger.info("prepared data: reusing %s", path)
        return ad.read_h5ad(path)
    adata = load_raw(config)
    logger.info("prepared data: QC labels for k in %s on %d cells x %d genes", list(config.ks), *adata.shape)
    qc = config.qc
    label_artifacts(adata, ks=tuple(config.ks), precomputed=qc.precomputed, run_scrublet=qc.run_scrublet, seed=qc.seed)
    s = config.split
    if s.kind == "combinations":
        split_combinations(adata, holdout_fraction=s.holdout_fraction, val_fraction=s.val_fraction, seed=s.seed)
    else:
        split_cells(adata, fractions=s.fractions, seed=s.seed)
    _write_atomic(adata, path)
    logger.info("prepared data: wrote %s", path)
    return adata


def prepare_data(config: ExperimentConfig, k: int | float, *, base: AnnData | None = None) -> Path:
    """Make (or find) the prepared AnnData of ``k`` and return its path.

    Parameters
    ----------
    config
        The grid.
    k
        QC MAD multiple; the references use ``artifact_k<k>``.
    base
        The labelled and split data, if already in memory (not modified).
    """
    from ..data import counterfactual_references

    path = prepared_path(config, k)
    if path.exists():
        return path
    adata = (_prepare_base(config) if base is None else base).copy()
    cf = config.counterfactual
    counterfactual_references(adata, artifact_key=artifact_key(k), n_max=cf.n_max, seed=cf.seed)
    _write_atomic(adata, path)
    logger.info("prepared data: wrote %s", path)
    return path


def prepare_all(config: ExperimentConfig) -> dict[int | float, Path]:
    """Prepared files for every ``k`` of the grid (QC labels computed at most once)."""
    missing = [k for k in config.ks if not prepared_path(config, k).exists()]
    base = _prepare_base(config) if missing else None
    return {k: prepare_data(config, k, base=base) for k in config.ks}


def read_prepared(path: str | os.PathLike) -> AnnData:
    """Read a prepared file, keeping the last two in memory (runs of one ``k`` in a process share them).

    The returned AnnData is shared: callers must not modify it (``PerturbationModel`` and the
    evaluation functions do not).
    """
    path = Path(path).resolve()
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = ad.read_h5ad(path)
    return _CACHE[key]
