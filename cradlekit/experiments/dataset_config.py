"""The ``dataset:`` section of an experiment config: a manifest dataset, the simulator, or your own file.

Your own ``.h5ad`` file needs no manifest entry: ``dataset: {path: ..., perturbation_key: ...,
control_label: ..., qc_metrics: {...}}``. It is checked up front (file, columns, control label),
each problem a one-line :class:`ConfigError` naming the file and the field.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SIMULATOR", "ConfigError", "DatasetConfig", "validate_dataset"]

#: Dataset name that selects :func:`cradlekit.data.simulate_perturbseq` instead of the manifest.
SIMULATOR = "simulator"


class ConfigError(ValueError):
    """An invalid experiment configuration."""


@dataclass(frozen=True)
class DatasetConfig:
    """The grid's data: a manifest dataset, the simulator, or your own ``.h5ad`` file.

    ``name``: a manifest name for :func:`cradlekit.data.load_dataset` or ``simulator`` (for your
    own file: a short name, default the file's stem); ``kwargs``: keyword arguments of that
    function; ``label``: name shown in tables (default ``name``).

    Your own file (no manifest entry needed)::

        dataset:
          path: screen.h5ad              # relative paths are taken from the config's folder
          perturbation_key: guide
          control_label: non-targeting
          separator: "+"                 # optional
          qc_metrics: {total_counts: total_counts_full, pct_counts_mt: pct_counts_mt_full}
          counts_layer: null             # optional: layer with the raw counts
          batch_key: null                # optional

    These are the arguments of :func:`cradlekit.data.setup`, applied after reading the file.
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    path: str | None = None
    perturbation_key: str | None = None
    control_label: str | None = None
    separator: str = "+"
    qc_metrics: dict[str, str] = field(default_factory=dict)
    counts_layer: str | None = None
    batch_key: str | None = None

    @property
    def display(self) -> str:
        """Label used in result rows and tables."""
        return self.label or self.name

    @property
    def is_file(self) -> bool:
        """Whether this is your own ``.h5ad`` file (``path`` given)."""
        return self.path is not None

    def setup_kwargs(self) -> dict[str, Any]:
        """Arguments of :func:`cradlekit.data.setup` for your own file."""
        return {"perturbation_key": self.perturbation_key, "control_label": self.control_label,
                "separator": self.separator, "qc_metrics": dict(self.qc_metrics) or None,
                "counts_layer": self.counts_layer, "batch_key": self.batch_key}

    def identity(self) -> dict[str, Any]:
        """What makes your own file's data what it is (its sha256 and set-up keys; ``{}`` otherwise).

        Part of the prepared-data and run cache keys, so an edited file is prepared again.
        """
        if not self.is_file:
            return {}
        stat = Path(self.path).stat()
        setup = {k: v for k, v in self.setup_kwargs().items() if v is not None}
        return {"file_sha256": _digest(str(self.path), stat.st_size, stat.st_mtime_ns), "setup": setup}


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, hashed once per (path, size, modification time)."""
    from ..data.download import file_digest

    return file_digest(path)



def validate_dataset(d: DatasetConfig, fail: Any) -> None:
    """Check the ``dataset:`` section; ``fail(message)`` raises the config error."""
    from ..data import load_dataset, simulate_perturbseq

    if d.is_file:
        _validate_file(d, fail)
        return
    own = [k for k in ("perturbation_key", "control_label", "counts_layer", "batch_key") if getattr(d, k) is not None]
    if own or d.qc_metrics:
        fail(f"dataset: {own + (['qc_metrics'] if d.qc_metrics else [])} apply to your own file only; "
             "add dataset.path: <your .h5ad>")
    if not d.name:
        fail("dataset needs a name (a manifest dataset or 'simulator') or a path to your own .h5ad file")
    if d.name == SIMULATOR:
        fn = simulate_perturbseq
    else:
        from ..data import load_manifest

        names = sorted(load_manifest())
        if d.name not in names:
            fail(f"dataset.name {d.name!r} is neither {SIMULATOR!r} nor a manifest dataset {names}")
        fn = load_dataset
    params = set(inspect.signature(fn).parameters) - {"name"}
    unknown = sorted(set(d.kwargs) - params)
    if unknown:
        fail(f"dataset.kwargs: {unknown} are not arguments of {fn.__name__} ({sorted(params)})")
    if fn is simulate_perturbseq:
        _check_simulator_kwargs(d.kwargs, fail)


def _check_simulator_kwargs(kwargs: dict[str, Any], fail: Any) -> None:
    """Types of the simulator's arguments, and positive cell and gene counts, before anything runs."""
    import typing

    from ..data import simulate_perturbseq
    from ._typecheck import conforms

    hints = typing.get_type_hints(simulate_perturbseq)
    for key, value in kwargs.items():
        if key in hints and not conforms(value, hints[key]):
            fail(f"dataset.kwargs.{key} must be {hints[key]}, got {value!r}")
    for key in ("n_cells", "n_genes", "true_ate_cells", "chunk_size"):
        if key in kwargs and kwargs[key] < 1:
            fail(f"dataset.kwargs.{key} must be a positive integer, got {kwargs[key]!r}")


def _validate_file(d: DatasetConfig, fail: Any) -> None:
    """Check your own file up front: it exists, and has the columns and control label named."""
    file = Path(d.path).expanduser()
    where = f"dataset.path {str(file)!r}"
    if not file.is_file():
        fail(f"{where}: no such file (relative paths are taken from the config's folder)")
    for key in ("perturbation_key", "control_label"):
        if not isinstance(getattr(d, key), str) or not getattr(d, key):
            fail(f"dataset.{key} is required with dataset.path (the obs column of perturbations and its control label)")
    if d.kwargs:
        fail(f"dataset.kwargs {sorted(d.kwargs)} do not apply to your own file; use perturbation_key, control_label, "
             "separator, qc_metrics, counts_layer, batch_key")
    from ..qc.metrics import PRECOMPUTABLE

    bad = sorted(set(d.qc_metrics) - set(PRECOMPUTABLE))
    if bad:
        fail(f"dataset.qc_metrics: unknown metric(s) {bad}; allowed: {list(PRECOMPUTABLE)}")
    try:
        obs, layers = _peek(file)
    except Exception as err:  # noqa: BLE001 - any read failure is reported as a config error
        fail(f"{where}: cannot be read as .h5ad ({type(err).__name__}: {err})")
    columns = {"dataset.perturbation_key": d.perturbation_key, "dataset.batch_key": d.batch_key,
               **{f"dataset.qc_metrics.{m}": c for m, c in d.qc_metrics.items()}}
    for field_name, column in columns.items():
        if column is not None and column not in obs.columns:
            fail(f"{field_name}: column {column!r} not in obs of {file.name} (columns: {list(obs.columns)[:20]})")
    labels = obs[d.perturbation_key].astype(str)
    if not (labels == d.control_label).any():
        fail(f"dataset.control_label {d.control_label!r} has no cell in obs[{d.perturbation_key!r}] of {file.name} "
             f"(labels: {list(labels.unique()[:8])})")
    if d.counts_layer is not None and d.counts_layer not in layers:
        fail(f"dataset.counts_layer {d.counts_layer!r} not in layers of {file.name} ({layers})")


def _peek(file: Path) -> tuple[Any, list[str]]:
    """``obs`` and layer names of an .h5ad file without reading its matrix."""
    import anndata as ad

    backed = ad.read_h5ad(file, backed="r")
    try:
        return backed.obs.copy(), sorted(backed.layers.keys())
    finally:
        backed.file.close()
