"""Input checks shared by every public function. Each raises a :mod:`cradlekit.errors` type."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .errors import EmptyPerturbationError, InvalidCountsError, MissingKeyError, UnknownControlError

#: How to get a backed AnnData into memory (shown in every error about one).
BACKED_HINT = (
    "adata is backed (opened with backed='r'): its matrix stays on disk, where cradlekit cannot "
    "compute on it. Load it into memory with `adata = adata.to_memory()` (or "
    "`cradlekit.data.read_h5ad(path)`; for a file larger than memory, select cells first: "
    "`adata[mask].to_memory()`)"
)


def get_counts(adata: AnnData, layer: str | None = None):
    """Return ``adata.X`` or ``adata.layers[layer]``, raising a clear error if the layer is absent."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise MissingKeyError(
            f"layer {layer!r} not found in adata.layers (available: {sorted(adata.layers.keys())})"
        )
    return adata.layers[layer]


def check_raw_counts(X, *, what: str = "adata.X") -> None:
    """Raise :class:`InvalidCountsError` unless ``X`` holds finite, non-negative integer counts.

    Float dtypes are accepted when every value is a whole number (10x files often store
    counts as float32). Only the stored values of a sparse matrix are inspected. A matrix still on
    disk (a backed AnnData) is refused with :data:`BACKED_HINT`.
    """
    if not (isinstance(X, np.ndarray) or sp.issparse(X)) and type(X).__module__.split(".")[0] in ("h5py", "anndata"):
        raise InvalidCountsError(f"{what} is on disk, not in memory: {BACKED_HINT}")
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number):
        raise InvalidCountsError(f"{what} has dtype {values.dtype}; expected integer UMI counts")
    if values.size == 0:
        return
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            n_nan = int(np.isnan(values).sum())
            raise InvalidCountsError(
                f"{what} contains {n_nan} NaN and {int((~finite).sum()) - n_nan} infinite values; "
                "raw UMI counts must be finite"
            )
    if values.min() < 0:
        raise InvalidCountsError(
            f"{what} contains negative values (min {values.min()}); pass raw UMI counts, not scaled data"
        )
    if np.issubdtype(values.dtype, np.floating):
        frac = np.abs(values - np.round(values))
        if frac.max() > 1e-6:
            raise InvalidCountsError(
                f"{what} contains non-integer values (e.g. {float(values[np.argmax(frac)])!r}); it looks "
                "normalised or log-transformed. Pass raw UMI counts (often in adata.layers['counts'])."
            )


def check_obs_key(adata: AnnData, key: str, *, what: str = "column") -> pd.Series:
    """Return ``adata.obs[key]`` or raise :class:`MissingKeyError` listing the available columns."""
    if key not in adata.obs.columns:
        raise MissingKeyError(
            f"{what} {key!r} not found in adata.obs (available: {list(adata.obs.columns)})"
        )
    return adata.obs[key]


def check_labels(adata: AnnData, key: str) -> pd.Series:
    """``adata.obs[key]`` as strings; raise :class:`MissingKeyError` if a cell has no label (NaN)."""
    labels = check_obs_key(adata, key, what="label column")
    n_missing = int(labels.isna().sum())
    if n_missing:
        raise MissingKeyError(
            f"{n_missing} cells have no label in adata.obs[{key!r}]; label or drop them first"
        )
    return labels.astype(str)


def check_control_label(adata: AnnData, key: str, control_label: str) -> None:
    """Raise :class:`UnknownControlError` if ``control_label`` has no cell in ``obs[key]``."""
    labels = check_obs_key(adata, key, what="perturbation key")
    if not (labels.astype(str) == control_label).any():
        seen = pd.unique(labels.astype(str))[:10]
        raise UnknownControlError(
            f"control label {control_label!r} does not occur in adata.obs[{key!r}] "
            f"(first labels seen: {list(seen)})"
        )


def check_groups_nonempty(labels: pd.Series, required: Iterable[str], *, context: str = "") -> None:
    """Raise :class:`EmptyPerturbationError` naming every required label without cells."""
    present = set(pd.unique(labels.astype(str)))
    missing = [r for r in required if r not in present]
    if missing:
        where = f" {context}" if context else ""
        raise EmptyPerturbationError(
            f"{len(missing)} perturbation(s) have no cells{where}: {missing[:20]}"
        )
