"""Experiment runner: the paper's Table 2/3 grid (models × QC multiples k × seeds) from a YAML config.

Typical use::

    from cradlekit.experiments import load_config, run_grid

    config = load_config("configs/smoke.yaml")
    result = run_grid(config)                       # or executor="dask", n_workers=2
    result.results                                  # one row per run (also results.csv)

Modules
-------
config
    :class:`ExperimentConfig` (YAML schema, validation).
grid
    Expansion into :class:`RunSpec` cells and the cache keys.
prepare
    QC labels, split and counterfactual references, cached per ``k`` in the output folder.
run_one
    One (model, k, seed): train, evaluate, write ``runs/<name>.json``.
runner
    :func:`run_grid`: sequential or Dask, skipping finished runs; ``results.csv`` and tables.
profiles
    The book's execution profiles (``quick``/``full``), chosen by ``CRADLEKIT_BOOK_PROFILE``.
trained
    Reopen a grid's prepared data and saved models (:func:`load_prepared`, :func:`load_trained`).
tables
    Table 2 / Table 3 in Markdown and HTML (mean ± sd, best bold, second underlined).
"""

from __future__ import annotations

from .config import ConfigError, ExperimentConfig, config_from_dict, load_config
from .grid import RunSpec, expand_grid, run_key
from .profiles import PROFILE_ENV, BookProfile, load_profile, profile_name
from .run_one import METRICS, run_one
from .runner import GridResult, collect_results, local_dask_client, run_grid, write_results
from .tables import render_table, summarize, write_tables
from .trained import load_prepared, load_trained, trained_model_path

__all__ = [
    "BookProfile",
    "PROFILE_ENV",
    "load_prepared",
    "load_profile",
    "load_trained",
    "trained_model_path",
    "profile_name",
    "ConfigError",
    "ExperimentConfig",
    "GridResult",
    "METRICS",
    "RunSpec",
    "collect_results",
    "config_from_dict",
    "expand_grid",
    "load_config",
    "local_dask_client",
    "render_table",
    "run_grid",
    "run_key",
    "run_one",
    "summarize",
    "write_results",
    "write_tables",
]
