"""Prepared data of a grid, cached in the output folder.

``prepared/<key>_qc.h5ad``
    The dataset with QC labels for every ``k`` of the grid (computed once).
``prepared/<key>_s<split seed>_k<k>.h5ad``
    The same plus the split of one split seed and the counterfactual references of
    ``artifact_k<k>`` (references use cells of the same split, so they depend on it).

Files are written atomically (temporary file, then rename), so concurrent workers never read a
half-written file; the runner prepares every file before it starts runs. Each file is built under a
lock (``prepared/.locks/<file>.lock``, :class:`~cradlekit._locks.RunLock`): a second runner on the
same config waits for the first to finish it and then reuses it, so no file is built twice.

A prepared file that does not open as an AnnData (damaged or truncated: a full disk, a bad copy) is
moved to ``prepared/.moved-aside/`` (never deleted; a unique name) and built again, with a warning; a
file that opens but fails to read in full is moved aside the same way by :func:`read_prepared`, whose
error says that the next run of the grid rebuilds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from anndata import AnnData

from .._atomic import write_h5ad_atomic
from .._h5ad import h5ad_problem, read_h5ad_checked
from .._keys import artifact_key
from .._locks import LOCK_DIR, RunLock
from .._logging import logger
from .._moved_aside import MOVED_ASIDE, move_aside
from ..errors import DamagedFileError
from .config import SIMULATOR, ExperimentConfig
from .grid import prepared_key

__all__ = ["load_raw", "prepare_data", "prepare_all", "read_prepared", "prepared_path", "split_seeds"]

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
    return config.output_path / "prepared" / f"{prepared_key(config)}_qc.h5ad"


def split_seeds(config: ExperimentConfig) -> list[int]:
    """The distinct split seeds of the grid's runs."""
    return sorted({config.split.seed_for(s) for s in config.seeds})


def prepared_path(config: ExperimentConfig, k: int | float, split_seed: int) -> Path:
    """Path of the prepared AnnData of ``k`` and ``split_seed`` (QC labels, split, CF references)."""
    tag = artifact_key(k).removeprefix("artifact_")
    return config.output_path / "prepared" / f"{prepared_key(config, k, split_seed)}_s{split_seed}_{tag}.h5ad"


def _lock(path: Path) -> RunLock:
    return RunLock(path.parent / LOCK_DIR / f"{path.name}.lock")


def _usable(path: Path) -> bool:
    """Whether a prepared file exists and opens as an AnnData; a damaged one is moved aside (not deleted)."""
    if not path.exists():
        return False
    problem = h5ad_problem(path)
    if problem is None:
        return True
    _set_aside(path, problem)
    return False


def _set_aside(path: Path, problem: str) -> Path:
    moved = move_aside(path, path.parent / MOVED_ASIDE, f"{path.name}.unreadable")
    logger.warning("prepared data: %s %s; moved it to %s (not deleted) and building it again", path, problem, moved)
    return moved


def _prepare_base(config: ExperimentConfig) -> AnnData:
    path = _base_path(config)
    with _lock(path):  # a second runner waits here, then reuses the file
        if _usable(path):
            logger.info("prepared data: reusing %s", path)
            try:
                return read_h5ad_checked(path, what="prepared file")
            except DamagedFileError as err:
                _set_aside(path, f"does not read in full ({err.__cause__!r})")
        return _build_base(config, path)


def _build_base(config: ExperimentConfig, path: Path) -> AnnData:
    from ..qc import label_artifacts

    adata = load_raw(config)
    logger.info("prepared data: QC labels for k in %s on %d cells x %d genes", list(config.ks), *adata.shape)
    qc = config.qc
    label_artifacts(adata, ks=tuple(config.ks), precomputed=qc.precomputed, run_scrublet=qc.run_scrublet, seed=qc.seed,
                    batch_key=qc.batch_key if qc.batch_key is not None else "auto")
    write_h5ad_atomic(adata, path)
    logger.info("prepared data: wrote %s", path)
    return adata


def _split(adata: AnnData, config: ExperimentConfig, split_seed: int) -> None:
    from ..data import split_cells, split_combinations

    s = config.split
    if s.kind == "combinations":
        split_combinations(adata, holdout_fraction=s.holdout_fraction, val_fraction=s.val_fraction, seed=split_seed)
    else:
        split_cells(adata, fractions=s.fractions, seed=split_seed)


def prepare_data(config: ExperimentConfig, k: int | float, split_seed: int, *, base: AnnData | None = None) -> Path:
    """Make (or find) the prepared AnnData of ``k`` and ``split_seed`` and return its path.

    Parameters
    ----------
    config
        The grid.
    k
        QC MAD multiple; the references use ``artifact_k<k>``.
    split_seed
        Seed of the split (:meth:`SplitConfig.seed_for` of a run's seed).
    base
        The QC-labelled data, if already in memory (not modified).
    """
    from ..data import counterfactual_references

    path = prepared_path(config, k, split_seed)
    if path.exists() and h5ad_problem(path) is None:
        return path  # the common case, without waiting for a lock
    with _lock(path):  # a second runner waits here, then finds the file
        if _usable(path):
            return path
        adata = (_prepare_base(config) if base is None else base).copy()
        _split(adata, config, split_seed)
        cf = config.counterfactual
        counterfactual_references(adata, artifact_key=artifact_key(k), n_max=cf.n_max, seed=cf.seed)
        write_h5ad_atomic(adata, path)
        logger.info("prepared data: wrote %s", path)
    return path


def prepare_all(config: ExperimentConfig) -> dict[tuple[int | float, int], Path]:
    """Prepared files for every ``(k, split seed)`` of the grid (QC labels computed at most once)."""
    wanted = [(k, s) for k in config.ks for s in split_seeds(config)]
    missing = [
        w
        for w in wanted
        if not (prepared_path(config, *w).exists() and h5ad_problem(prepared_path(config, *w)) is None)
    ]
    base = _prepare_base(config) if missing else None
    return {(k, s): prepare_data(config, k, s, base=base) for k, s in wanted}


def read_prepared(path: str | os.PathLike) -> AnnData:
    """Read a prepared file, keeping the last two in memory (runs of one ``k`` in a process share them).

    The returned AnnData is shared: callers must not modify it (``PerturbationModel`` and the
    evaluation functions do not).

    Raises
    ------
    cradlekit.errors.DamagedFileError
        The file does not read as an AnnData. It is moved to ``prepared/.moved-aside/`` (not deleted)
        and the message says so: the next run of the grid builds it again.
    """
    path = Path(path).resolve()
    key = (str(path), path.stat().st_mtime)
    if key not in _CACHE:
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        try:
            _CACHE[key] = read_h5ad_checked(path, what="prepared file")
        except DamagedFileError as err:
            moved = _set_aside(path, "does not read in full")
            raise DamagedFileError(f"{err} It was moved to {moved} (not deleted); run the grid again to build it "
                                   "again.") from err.__cause__
    return _CACHE[key]
