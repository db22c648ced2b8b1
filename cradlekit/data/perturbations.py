"""Perturbation labels: one convention for every dataset.

A cell's perturbation is a string in ``obs[perturbation_key]``: the control label
(``control`` by default), a single target (``KLF1``) or a combination of targets
joined by ``+`` (``KLF1+MAP2K6``). Combinations are stored with their targets in
sorted order so ``B+A`` and ``A+B`` are the same perturbation.

One rule makes a label canonical, :func:`canonicalize_labels` (built on :func:`parse_perturbation`):
targets are whitespace-stripped, sorted and de-duplicated, control members (``control+A``) are
dropped, and an empty or missing label is an error, as is a label with an empty member (``+``,
``A+``, ``+B``, ``A++B``: a separator with nothing on one side is neither a target nor the control,
and guessing which was meant would silently turn such cells into controls or singles). The split, the
dosage matrix, the data ATE and generation all go through it, so ``B+A`` and ``A+B`` are one
perturbation everywhere.

:func:`standardize_perturbations` (and so :func:`cradlekit.data.setup`) also warns about labels that
look like a missing value written as text (``nan``, ``None``, ``NA`` ...) and labels that differ from
a control label only in case (``Control`` next to ``control``): both would otherwise become targets.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import COMBO_SEP, CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .._validation import check_control_label, check_groups_nonempty, check_labels, check_obs_key
from ..errors import InvalidLabelError, MissingKeyError
from .label_checks import warn_suspicious_labels

__all__ = [
    "parse_perturbation",
    "canonicalize_labels",
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

    Raises
    ------
    ValueError
        For an empty (or whitespace-only) label: it is not the control.
    cradlekit.errors.InvalidLabelError
        For a label with an empty member (``"+"``, ``"A+"``, ``"+B"``, ``"A++B"``); a ``ValueError``.
    """
    return _parse(label, controls=(control_label,), sep=sep)[0]


def _parse(label, *, controls: Sequence[str], sep: str) -> tuple[tuple[str, ...], set[str]]:
    """Targets of one label and the repairs made (``order``, ``whitespace``, ``duplicate``, ...)."""
    text = str(label)
    if not text.strip() or _is_missing(label):
        raise ValueError(f"empty perturbation label {label!r}; it is neither a target nor the control")
    stripped = text.strip()
    if stripped in controls:
        return (), ({"whitespace"} if stripped != text else set())
    raw = text.split(sep) if sep else [text]
    parts = [p.strip() for p in raw]
    notes: set[str] = set()
    if any(p != q for p, q in zip(parts, raw, strict=True)):
        notes.add("whitespace")
    if any(not p for p in parts):
        raise InvalidLabelError(
            f"perturbation label {text!r} has an empty member (nothing on one side of {sep!r}): it is neither a "
            "target nor the control"
        )
    if any(p == controls[0] for p in parts):
        notes.add("control member")
    elif any(p in controls for p in parts):
        notes.add("declared control member")  # e.g. Norman's 'KLF1+ctrl': how singles are written
    parts = [p for p in parts if p not in controls]
    if len(set(parts)) != len(parts):
        notes.add("duplicate")
    targets = tuple(sorted(set(parts)))
    if list(targets) != parts and "duplicate" not in notes:
        notes.add("order")
    return targets, notes


def _is_missing(label) -> bool:
    try:
        return bool(pd.isna(label))
    except (TypeError, ValueError):
        return False


_WARN_NOTES = {
    "duplicate": "a target repeated within a label (e.g. 'A+A') was counted once",
    "control member": "a control inside a combination (e.g. 'control+A') was dropped",
}


def canonicalize_labels(
    labels: Iterable,
    *,
    control_label: str = CONTROL_LABEL,
    sep: str = COMBO_SEP,
    extra_control_labels: Sequence[str] = (),
    new_control_label: str | None = None,
    what: str = "labels",
) -> pd.Series:
    """The canonical label of every cell: the one rule used by split, dosage, ATE and generation.

    Targets are whitespace-stripped, sorted (``B+A`` → ``A+B``) and de-duplicated; control members
    are removed (with a warning giving the number of cells); controls become ``new_control_label``.

    Parameters
    ----------
    labels
        One label per cell (a Series keeps its index).
    control_label, extra_control_labels
        Labels that denote control cells (also as members of a combination).
    sep
        Separator between the targets of a combination.
    new_control_label
        Label written for controls (default ``control_label``).
    what
        Name of the labels in messages (e.g. ``"adata.obs['guide']"``).

    Returns
    -------
    pandas.Series
        Canonical labels (strings), same length and index as ``labels``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        If a label is missing (NaN/None) or empty: the message gives the number of cells.
    cradlekit.errors.InvalidLabelError
        If a label has an empty member (``+``, ``A+``, ``+B``, ``A++B``): the message gives the number
        of cells and the labels.

    Warns
    -----
    UserWarning
        When a duplicate or control member was removed from a label.
    """
    series = labels if isinstance(labels, pd.Series) else pd.Series(list(labels), dtype=object)
    new_control = control_label if new_control_label is None else new_control_label
    controls = (control_label, *extra_control_labels)
    missing = series.isna().to_numpy() | (series.astype(str).str.strip() == "").to_numpy()
    if missing.any():
        raise MissingKeyError(
            f"{int(missing.sum())} of {len(series)} cells have an empty or missing perturbation label in "
            f"{what}; label them (e.g. with the control label {control_label!r}) or drop them first"
        )
    text = series.astype(str)
    mapping: dict[str, str] = {}
    fixed: dict[str, list[str]] = {}
    bad: list[str] = []
    for label in pd.unique(text):  # loop over unique labels, not cells
        try:
            targets, notes = _parse(label, controls=controls, sep=sep)
        except InvalidLabelError:
            bad.append(label)
            continue
        mapping[label] = canonical_label(targets, control_label=new_control, sep=COMBO_SEP)
        for note in notes & set(_WARN_NOTES):
            fixed.setdefault(note, []).append(label)
    counts = text.value_counts()
    if bad:
        raise InvalidLabelError(
            f"{int(counts[bad].sum())} of {len(series)} cells in {what} have a label with an empty member "
            f"({len(bad)} labels: {bad[:5]}): a {sep!r} with nothing on one side is neither a target nor the "
            f"control {control_label!r}. Fix these labels (e.g. 'A+' -> 'A', '+' -> {control_label!r}) or drop "
            "the cells first"
        )
    out = text.map(mapping)
    for note, examples in fixed.items():
        n = int(counts[examples].sum())
        msg = (f"{what}: {_WARN_NOTES[note]} in {n} cells ({len(examples)} labels, e.g. "
               f"{examples[:3]} -> {[mapping[e] for e in examples[:3]]})")
        warnings.warn(msg, UserWarning, stacklevel=2)
    return out


def cell_labels(adata: AnnData, key: str, control_label: str) -> pd.Series:
    """Canonical labels of ``adata.obs[key]`` (see :func:`canonicalize_labels`), indexed by cell."""
    check_obs_key(adata, key, what="perturbation key")
    return canonicalize_labels(adata.obs[key], control_label=control_label, what=f"adata.obs[{key!r}]")


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
        Categorical canonical labels (see :func:`canonicalize_labels`; controls ``new_control_label``).
    ``obs[key_added + '_original']``
        The original labels, when ``key_added`` is the column that held them.
    ``uns['cradlekit']``
        ``perturbation_key``, ``control_label`` and ``combo_sep``.

    Raises
    ------
    cradlekit.errors.UnknownControlError
        The control label has no cell.
    cradlekit.errors.MissingKeyError
        A cell has no (or an empty) label.
    cradlekit.errors.InvalidLabelError
        A label has an empty member (``+``, ``A+``, ``+B``, ``A++B``).

    Warns
    -----
    UserWarning
        Labels that look like a missing value written as text (``nan``, ``None``, ``NA`` ...), or
        that differ from a control label only in case (``Control`` next to ``control``): both are
        kept as targets.
    """
    check_control_label(adata, perturbation_key, control_label)
    # NaN or empty labels would silently become a perturbation named "nan" or the control
    raw = check_labels(adata, perturbation_key)
    warn_suspicious_labels(raw, (control_label, *extra_control_labels), sep, what=f"adata.obs[{perturbation_key!r}]")
    canonical = canonicalize_labels(
        raw, control_label=control_label, sep=sep, extra_control_labels=extra_control_labels,
        new_control_label=new_control_label, what=f"adata.obs[{perturbation_key!r}]",
    )
    original = f"{key_added}_original"
    if key_added == perturbation_key and original not in adata.obs.columns:
        adata.obs[original] = adata.obs[perturbation_key].copy()  # never lose the user's labels
    adata.obs[key_added] = pd.Categorical(canonical)
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
            "or set your data up first: cradlekit.data.setup(adata, perturbation_key=..., control_label=...) "
            "(standardize_perturbations does the labels only)"
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
    labels = cell_labels(adata, key, control)
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
