"""Perturbation labels: one convention for every dataset.

A cell's perturbation is a string in ``obs[perturbation_key]``: the control label
(``control`` by default), a single target (``KLF1``) or a combination of targets
joined by ``+`` (``KLF1+MAP2K6``). Combinations are stored with their targets in
sorted order so ``B+A`` and ``A+B`` are the same perturbation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import COMBO_SEP, CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .._validation import check_control_label, check_groups_nonempty, check_labels, check_obs_key
from ..errors import MissingKeyError

__all__ = [
    "parse_perturbation",
    "canonical_label",
    "standardize_perturbations",
    "perturbation_info",
    "perturbation_targets",
    "dosage_matrix",
    "is_combination",
]


def parse_perturbation(label: str, *, control_label: str = CONTROL_LABEL, sep: str = COMBO_SEP) -> tuple[str, ...]:
    """Split a label into its targets; the control label gives ``()``.

    Examples
    --------
    >>> parse_perturbation("B+A")
    ('A', 'B')
    >>> parse_perturbation("control")
    ()
    """
    label = str(label)
    if label == control_label:
        return ()
    parts = [p.strip() for p in label.split(sep)]
    parts = [p for p in parts if p and p != control_label]
    return tuple(sorted(set(parts)))


def canonical_label(targets: Iterable[str], *, control_label: str = CONTROL_LABEL, sep: str = COMBO_SEP) -> str:
    """Join targets into the canonical label (sorted, ``+``-separated; empty → control)."""
    targets = sorted(set(targets))
    return sep.join(targets) if targets else control_label


def standardize_perturbations(
    adata: AnnData,
    *,
    perturbation_key: str,
    control_label: str,
    sep: str = COMBO_SEP,
    extra_control_labels: Sequence[str] = (),
    key_added: str = PERTURBATION_KEY,
    new_control_label: str = CONTROL_LABEL,
) -> AnnData:
    """Rewrite a dataset's perturbation column into the cradlekit convention, in place.

    Parameters
    ----------
    adata
        Annotated data with one row per cell.
    perturbation_key
        Column of ``adata.obs`` holding the dataset's own labels.
    control_label
        The dataset's label for control cells (must occur).
    sep
        Separator between targets of a combination in the dataset's labels (``"+"``, ``"_"``, ``"|"`` …).
    extra_control_labels
        Further labels that denote controls (e.g. ``"ctrl"`` inside ``"KLF1+ctrl"``).
    key_added
        Column written with canonical labels.
    new_control_label
        Control label used in ``key_added``.

    Returns
    -------
    The same ``adata``, with

    ``obs[key_added]``
        Categorical canonical labels (sorted targets joined by ``+``, controls ``new_control_label``).
    ``uns['cradlekit']``
        ``perturbation_key``, ``control_label`` and ``combo_sep``.
    """
    check_control_label(adata, perturbation_key, control_label)
    # NaN labels would silently become a perturbation named "nan"
    raw = check_labels(adata, perturbation_key)
    controls = {control_label, *extra_control_labels}
    mapping = {}
    for label in pd.unique(raw):  # loop over unique labels, not cells
        parts = [p.strip() for p in str(label).split(sep)] if label not in controls else []
        parts = [p for p in parts if p and p not in controls]
        mapping[label] = canonical_label(parts, control_label=new_control_label)
    adata.obs[key_added] = pd.Categorical(raw.map(mapping))
    meta = dict(adata.uns.get(UNS_KEY, {}))
    meta.update(perturbation_key=key_added, control_label=new_control_label, combo_sep=COMBO_SEP)
    adata.uns[UNS_KEY] = meta
    return adata


def perturbation_info(
    adata: AnnData, *, perturbation_key: str | None = None, control_label: str | None = None
) -> tuple[str, str]:
    """Resolve the perturbation key and control label: explicit arguments, else ``uns['cradlekit']``.

    Raises
    ------
    MissingKeyError
        If neither is given nor recorded, or the column is absent.
    UnknownControlError
        If the control label has no cell.
    """
    meta = adata.uns.get(UNS_KEY, {})
    key = perturbation_key or meta.get("perturbation_key")
    control = control_label or meta.get("control_label")
    if key is None or control is None:
        raise MissingKeyError(
            "perturbation key/control label unknown: pass perturbation_key= and control_label=, "
            "or call cradlekit.data.standardize_perturbations first"
        )
    check_obs_key(adata, key, what="perturbation key")
    check_control_label(adata, key, control)
    return key, control


def perturbation_targets(labels: Iterable[str], *, control_label: str = CONTROL_LABEL) -> list[str]:
    """Sorted list of every single target appearing in ``labels`` (combinations split)."""
    targets: set[str] = set()
    for label in pd.unique(pd.Series(list(labels), dtype=str)):
        targets.update(parse_perturbation(label, control_label=control_label))
    return sorted(targets)


def is_combination(labels: str | pd.Series | Sequence[str], *, control_label: str = CONTROL_LABEL) -> np.ndarray | bool:
    """Whether each label combines two or more targets: a boolean array, or a bool for one label."""
    if isinstance(labels, str):
        return len(parse_perturbation(labels, control_label=control_label)) >= 2
    s = pd.Series(np.asarray(labels, dtype=str))
    uniq = pd.unique(s)
    n_targets = {u: len(parse_perturbation(u, control_label=control_label)) for u in uniq}
    return (s.map(n_targets) >= 2).to_numpy()


def dosage_matrix(
    adata: AnnData,
    *,
    perturbation_key: str | None = None,
    control_label: str | None = None,
    targets: Sequence[str] | None = None,
    sparse: bool = False,
    dtype=np.float32,
) -> tuple[np.ndarray | sp.csr_matrix, list[str]]:
    """Cells × targets dosage matrix ``p_i`` (1 where the target is perturbed; controls are all zero).

    Parameters
    ----------
    adata
        Cells with canonical labels (see :func:`standardize_perturbations`).
    perturbation_key, control_label
        Default to those recorded in ``adata.uns['cradlekit']``.
    targets
        Column order. Defaults to every target seen. Targets listed here with no cell are
        allowed (unseen perturbations get a zero column) — but every target in the data
        must be in the list.
    sparse
        Return a CSR matrix instead of a dense array.

    Returns
    -------
    matrix, targets
        The dosage matrix and its column names.
    """
    key, control = perturbation_info(adata, perturbation_key=perturbation_key, control_label=control_label)
    labels = adata.obs[key].astype(str)
    seen = perturbation_targets(labels, control_label=control)
    targets = list(seen if targets is None else targets)
    col = {t: j for j, t in enumerate(targets)}
    unknown = sorted(set(seen) - set(col))
    if unknown:
        raise MissingKeyError(f"targets present in the data but not in `targets`: {unknown[:20]}")
    codes, uniq = pd.factorize(labels)
    rows, cols = [], []
    for u, label in enumerate(uniq):  # loop over unique labels; cells are gathered by code
        for t in parse_perturbation(label, control_label=control):
            rows.append(u)
            cols.append(col[t])
    per_label = sp.csr_matrix(
        (np.ones(len(rows), dtype=dtype), (rows, cols)), shape=(len(uniq), len(targets))
    )
    mat = per_label[codes]
    return (mat.tocsr() if sparse else mat.toarray()), targets


def require_perturbations(adata: AnnData, perturbations: Iterable[str], *, perturbation_key: str | None = None) -> None:
    """Raise :class:`~cradlekit.errors.EmptyPerturbationError` if any listed perturbation has no cell."""
    key, _ = perturbation_info(adata, perturbation_key=perturbation_key)
    check_groups_nonempty(adata.obs[key], list(perturbations))
