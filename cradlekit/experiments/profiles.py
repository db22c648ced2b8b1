"""Execution profiles of the book: one environment variable picks the settings of every chapter.

A profile is a YAML file ``<directory>/<name>.yaml`` (the book keeps them in ``book/profiles/``)::

    name: quick
    description: CPU, real subsets and the simulator, minutes
    accelerator: cpu          # or auto / cuda
    torch_threads: 2          # null: leave torch's default
    executor: sequential      # or dask (the experiment grid)
    n_workers: 2
    simulator: {n_cells: 3000, n_genes: 200, seed: 0}
    model_options: {latent_dim: 32, hidden_dim: 128}    # PerturbationModel(...) in chapters 4, 5, 8
    train: {max_epochs: 60, lr: 2.0e-3, batch_size: 256}  # PerturbationModel.train(...)
    generation: {n_cells: 300}
    grid: {...}                # an experiment config (Tables 2/3, Figures 3/4; its dataset is the
                               # chapters' real Perturb-seq data); see load_config

``grid.output_dir`` is read relative to the profile's folder, so a rebuild of the book finds the
runs of the previous build there and reuses them (the runner skips finished runs).

The variable :data:`PROFILE_ENV` (``CRADLEKIT_BOOK_PROFILE``) selects the profile: ``quick``
(the default; CPU, every chapter in minutes) or ``full`` (the paper's settings, meant for a GPU).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, DatasetConfig, ExperimentConfig, config_from_dict

__all__ = ["PROFILE_ENV", "PROFILES", "BookProfile", "profile_name", "load_profile"]

#: Environment variable naming the profile.
PROFILE_ENV = "CRADLEKIT_BOOK_PROFILE"
#: The profiles the book ships.
PROFILES = ("quick", "full")

_KEYS = {"name", "description", "accelerator", "torch_threads", "executor", "n_workers", "simulator",
         "model_options", "train", "generation", "grid"}  # fmt: skip


@dataclass(frozen=True)
class BookProfile:
    """The settings of one book profile (see the module docstring for the file format).

    Attributes
    ----------
    name, description
        Profile name (``quick``/``full``) and a sentence for the reader.
    accelerator
        ``cpu``, ``cuda`` or ``auto`` (:func:`cradlekit.train.resolve_device`).
    torch_threads
        Threads for torch on the CPU (``None``: torch's default).
    executor, n_workers
        How :func:`~cradlekit.experiments.run_grid` runs the grid.
    simulator
        Keyword arguments of :func:`cradlekit.data.simulate_perturbseq`.
    model_options, train
        Keyword arguments of :class:`cradlekit.PerturbationModel` and of its ``train``.
    generation
        ``n_cells``: cells generated per perturbation in the chapters' figures.
    grid
        The experiment grid behind Tables 2/3 and Figures 3/4; its dataset (:attr:`dataset`) is
        the real data the chapters train on.
    source
        The YAML file read.
    """

    name: str
    grid: ExperimentConfig
    description: str = ""
    accelerator: str = "auto"
    torch_threads: int | None = None
    executor: str = "sequential"
    n_workers: int = 2
    simulator: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def dataset(self) -> DatasetConfig:
        """The real dataset the chapters train on: the grid's (a manifest name, or ``simulator``)."""
        return self.grid.dataset

    @property
    def n_generate(self) -> int:
        """Cells generated per perturbation for the chapters' figures (default 300)."""
        return int(self.generation.get("n_cells", 300))

    def train_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of :meth:`cradlekit.PerturbationModel.train`: the profile's, then ``overrides``."""
        return {"accelerator": self.accelerator, **self.train, **overrides}

    def apply(self) -> None:
        """Set torch's CPU thread count to :attr:`torch_threads` (when given)."""
        if self.torch_threads:
            import torch

            torch.set_num_threads(int(self.torch_threads))


def profile_name(name: str | None = None) -> str:
    """The profile to use: ``name``, else ``$CRADLEKIT_BOOK_PROFILE``, else ``quick``.

    Raises
    ------
    ConfigError
        A name other than ``quick`` or ``full``.
    """
    chosen = (name or os.environ.get(PROFILE_ENV) or "quick").strip().lower()
    if chosen not in PROFILES:
        raise ConfigError(f"{PROFILE_ENV}={chosen!r}: the book's profiles are {', '.join(PROFILES)}")
    return chosen


def load_profile(name: str | None = None, *, directory: str | os.PathLike = "profiles") -> BookProfile:
    """Read the profile ``name`` (default: :func:`profile_name`) from ``directory/<name>.yaml``.

    Parameters
    ----------
    name
        ``quick`` or ``full``; ``None`` reads :data:`PROFILE_ENV`.
    directory
        Folder of the profile files (relative paths are relative to the working directory, which
        is the book's folder when the book executes).

    Raises
    ------
    ConfigError
        Unknown profile, missing file, unknown keys or an invalid ``grid``.
    """
    chosen = profile_name(name)
    path = Path(directory) / f"{chosen}.yaml"
    if not path.is_file():
        raise ConfigError(f"profile {chosen!r}: no file {path.resolve()}")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a profile must be a YAML mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown profile keys {unknown}; expected some of {sorted(_KEYS)}")
    if raw.get("name", chosen) != chosen:
        raise ConfigError(f"{path}: name {raw['name']!r} does not match the file name {chosen!r}")
    for key in ("simulator", "model_options", "train", "generation"):
        if not isinstance(raw.get(key, {}), Mapping):
            raise ConfigError(f"{path}: {key} must be a mapping")
    if not isinstance(raw.get("grid"), Mapping):
        raise ConfigError(f"{path}: grid (an experiment config) is required")
    grid = dict(raw["grid"])
    out = Path(grid.get("output_dir", f"_cache/{chosen}"))
    grid["output_dir"] = str(out if out.is_absolute() else (path.parent / out).resolve())
    grid.setdefault("name", f"book_{chosen}")
    executor = raw.get("executor", "sequential")
    if executor not in ("sequential", "dask"):
        raise ConfigError(f"{path}: executor must be sequential or dask, got {executor!r}")
    threads = raw.get("torch_threads")
    return BookProfile(
        name=chosen,
        description=str(raw.get("description", "")),
        accelerator=str(raw.get("accelerator", "auto")),
        torch_threads=None if threads is None else int(threads),
        executor=executor,
        n_workers=int(raw.get("n_workers", 2)),
        simulator=dict(raw.get("simulator", {})),
        model_options=dict(raw.get("model_options", {})),
        train=dict(raw.get("train", {})),
        generation=dict(raw.get("generation", {})),
        grid=config_from_dict(grid, source=f"{path}: grid"),
        source=path.resolve(),
    )
