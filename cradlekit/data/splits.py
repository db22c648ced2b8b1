"""Train/validation/test splits (design page, "Splits and counterfactual references").

* :func:`split_combinations` — datasets with combinations (Norman, Dixit): a seeded 25% of the
  combinations are held out as unseen test perturbations; every other cell goes to train/val.
* :func:`split_cells` — single-perturbation datasets (Replogle, Adamson): a random 64/16/20 cell split.

Both are stratified by perturbation, vectorised and deterministic given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import SPLIT_KEY
from .._logging import logger
from .._validation import check_obs_key
from ..errors import EmptyPerturbationError, MissingKeyError
from .perturbations import cell_labels, is_combination, parse_perturbation, perturbation_info

__all__ = ["split_combinations", "split_cells", "split_summary", "heldout_perturbations", "HeldOut", "SPLITS"]

SPLITS = ("train", "val", "test")


def _ranks_within_groups(codes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A uniformly random rank of each cell within its group, and the group sizes (indexed by code)."""
    key = rng.random(codes.size)
    order = np.lexsort((key, codes))
    sizes = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.empty(codes.size, dtype=np.int64)
    rank[order] = np.arange(codes.size) - starts[codes[order]]
    return rank, sizes


def _write(adata: AnnData, assignment: np.ndarray, key_added: str, meta: dict) -> None:
    adata.obs[key_added] = pd.Categorical(np.asarray(SPLITS, dtype=object)[assignment], categories=list(SPLITS))
    counts = np.bincount(assignment, minlength=3)
    meta.update({f"n_{s}": int(c) for s, c in zip(SPLITS, counts, strict=True)})
    adata.uns[key_added] = meta
    logger.info("split %r: %s", key_added, ", ".join(f"{s} {c}" for s, c in zip(SPLITS, counts, strict=True)))


def split_combinations(
    adata: AnnData,
    *,
    holdout_fraction: float = 0.25,
    val_fraction: float = 0.2,
    seed: int = 0,
    perturbation_key: str | None = None,
    control_label: str | None = None,
    key_added: str = SPLIT_KEY,
) -> None:
    """Hold out a seeded fraction of the combinations as unseen test perturbations.

    The unique combination labels are sorted and shuffled with ``np.random.default_rng(seed)``; walking
    that order, a combination is held out while fewer than ``ceil(holdout_fraction × n_combinations)``
    are, **provided every one of its targets keeps training cells** (a single perturbation of the
    target, or a combination with it that is not held out): an unseen combination of trained targets
    is what the held-out metrics are meant to evaluate, and a combination with an untrained target
    cannot be generated at all. All cells of a held-out combination go to ``test``. Every other
    cell (controls, singles, remaining combinations) goes to ``train`` or ``val`` at random, stratified
    by perturbation: ``round(val_fraction × n)`` cells of a perturbation with ``n`` cells go to ``val``,
    always leaving at least one in ``train``.

    Parameters
    ----------
    adata
        Cells with canonical perturbation labels (see :func:`~cradlekit.data.standardize_perturbations`).
    holdout_fraction
        Fraction of the combinations held out (0–1).
    val_fraction
        Fraction of the cells of each seen perturbation sent to validation (0 ≤ f < 1).
    seed
        Seed of the shuffle and of the train/val draw.
    perturbation_key, control_label
        Default to ``adata.uns['cradlekit']``.
    key_added
        ``obs`` column and ``uns`` entry written.

    Returns
    -------
    Nothing; writes

    ``obs[key_added]``
        Categorical ``train`` / ``val`` / ``test``.
    ``uns[key_added]``
        ``kind='combinations'``, ``seed``, ``holdout_fraction``, ``val_fraction``, ``perturbation_key``,
        ``heldout`` (held-out combinations, sorted), ``seen`` (every other perturbation, sorted),
        ``n_heldout_wanted`` and ``n_train``/``n_val``/``n_test``.

    Raises
    ------
    ValueError
        If the data has no combination (use :func:`split_cells`) or a fraction is out of range.
    """
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1], got {holdout_fraction}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    key, control = perturbation_info(adata, perturbation_key=perturbation_key, control_label=control_label)
    labels = cell_labels(adata, key, control).to_numpy()  # B+A and A+B are one combination
    codes, uniques = pd.factorize(labels)
    uniques = np.asarray(uniques, dtype=object)
    combo_mask = is_combination(uniques, control_label=control)
    combos = np.sort(uniques[combo_mask].astype(str))
    if combos.size == 0:
        raise ValueError(
            f"no combination (label with {'+'!r}) in adata.obs[{key!r}]; for single-perturbation datasets "
            "use cradlekit.data.split_cells"
        )
    rng = np.random.default_rng(seed)
    n_hold = min(combos.size, math.ceil(holdout_fraction * combos.size - 1e-9))
    members = {str(lab): parse_perturbation(str(lab), control_label=control) for lab in uniques}
    heldout = np.sort(np.asarray(_eligible_holdout(rng.permutation(combos), members, n_hold), dtype=object)).astype(str)
    if heldout.size < n_hold:
        logger.warning(
            "only %d of the %d wanted combinations can be held out with every target keeping training cells",
            heldout.size, n_hold,
        )
    seen = np.sort(np.setdiff1d(uniques.astype(str), heldout))

    held_code = np.isin(uniques.astype(str), heldout)
    rank, sizes = _ranks_within_groups(codes, rng)
    n_val = np.minimum(np.rint(val_fraction * sizes), np.maximum(sizes - 1, 0)).astype(np.int64)
    assignment = np.where(rank < n_val[codes], 1, 0)
    assignment[held_code[codes]] = 2
    meta = {
        "kind": "combinations",
        "seed": int(seed),
        "holdout_fraction": float(holdout_fraction),
        "val_fraction": float(val_fraction),
        "perturbation_key": key,
        "heldout": heldout.astype(str),
        "seen": seen.astype(str),
        "n_heldout_wanted": int(n_hold),
    }
    _write(adata, assignment, key_added, meta)


def _eligible_holdout(order: np.ndarray, members: dict[str, tuple[str, ...]], n_hold: int) -> list[str]:
    """Walk ``order`` and hold out combinations whose targets all keep a non-held-out perturbation."""
    support: dict[str, int] = {}
    for targets in members.values():
        for t in set(targets):
            support[t] = support.get(t, 0) + 1
    chosen: list[str] = []
    for combo in order:
        if len(chosen) >= n_hold:
            break
        targets = set(members[str(combo)])
        if all(support[t] > 1 for t in targets):
            chosen.append(str(combo))
            for t in targets:
                support[t] -= 1
    return chosen


def split_cells(
    adata: AnnData,
    *,
    fractions: Sequence[float] = (0.64, 0.16, 0.20),
    seed: int = 0,
    stratify: bool = True,
    perturbation_key: str | None = None,
    control_label: str | None = None,
    key_added: str = SPLIT_KEY,
) -> None:
    """Random train/val/test split of cells (single-perturbation datasets such as Replogle, Adamson).

    Within each perturbation (or over all cells when ``stratify=False``) the cells are put in a random
    order; the first ``round(f_train·n)`` go to train (at least one), up to ``round((f_train+f_val)·n)``
    to val, the rest to test.

    Parameters
    ----------
    adata
        Cells; with ``stratify=True`` they need canonical perturbation labels.
    fractions
        Train, validation and test fractions (non-negative, summing to 1).
    seed
        Seed of the random order.
    stratify
        Split each perturbation separately so every perturbation keeps the proportions.
    perturbation_key, control_label
        Default to ``adata.uns['cradlekit']`` (only used when stratifying).
    key_added
        ``obs`` column and ``uns`` entry written.

    Returns
    -------
    Nothing; writes

    ``obs[key_added]``
        Categorical ``train`` / ``val`` / ``test``.
    ``uns[key_added]``
        ``kind='cells'``, ``seed``, ``fractions``, ``stratify``, ``perturbation_key`` ('' when not
        stratified) and ``n_train``/``n_val``/``n_test``.
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    if adata.n_obs == 0:
        raise EmptyPerturbationError("adata has no cells to split")
    key = ""
    if stratify:
        key, control = perturbation_info(adata, perturbation_key=perturbation_key, control_label=control_label)
        codes, _ = pd.factorize(cell_labels(adata, key, control).to_numpy())
    else:
        codes = np.zeros(adata.n_obs, dtype=np.int64)
    rng = np.random.default_rng(seed)
    rank, sizes = _ranks_within_groups(np.asarray(codes, dtype=np.int64), rng)
    b_train = np.maximum(np.rint(f[0] * sizes), np.minimum(sizes, 1))
    b_val = np.maximum(np.rint((f[0] + f[1]) * sizes), b_train)
    assignment = (rank >= b_train[codes]).astype(np.int64) + (rank >= b_val[codes])
    meta = {
        "kind": "cells",
        "seed": int(seed),
        "fractions": f,
        "stratify": bool(stratify),
        "perturbation_key": key,
    }
    _write(adata, assignment, key_added, meta)


def split_summary(
    adata: AnnData,
    *,
    split_key: str = SPLIT_KEY,
    artifact_key: str | None = None,
    perturbation_key: str | None = None,
) -> pd.DataFrame:
    """Cells per split (and QC pass/fail counts when ``artifact_key`` is given).

    Parameters
    ----------
    adata
        Cells with ``obs[split_key]``.
    split_key
        Split column (see :func:`split_combinations`, :func:`split_cells`).
    artifact_key
        Optional ``obs`` column of ``a_i`` (e.g. ``artifact_k3``): adds ``n_pass``, ``n_fail`` and ``fail_fraction``.
    perturbation_key
        Perturbation column; defaults to ``uns['cradlekit']`` when recorded, adding ``n_perturbations``.

    Returns
    -------
    DataFrame indexed by split (``train``, ``val``, ``test``) with ``n_cells``, ``fraction`` and, when
    available, ``n_perturbations``, ``n_pass``, ``n_fail``, ``fail_fraction``.
    """
    split = check_obs_key(adata, split_key, what="split key").astype(str)
    index = pd.Index(list(SPLITS) + sorted(set(split.unique()) - set(SPLITS)), name=split_key)
    out = pd.DataFrame(index=index)
    out["n_cells"] = split.value_counts().reindex(index, fill_value=0).astype(int)
    out["fraction"] = out["n_cells"] / max(len(split), 1)
    key = perturbation_key or adata.uns.get("cradlekit", {}).get("perturbation_key")
    if key is not None and key in adata.obs:
        per_split = adata.obs[key].astype(str).groupby(split.to_numpy()).nunique()
        out["n_perturbations"] = per_split.reindex(index, fill_value=0)
    if artifact_key is not None:
        a = check_obs_key(adata, artifact_key, what="artifact key").astype(int).to_numpy()
        n_fail = pd.Series(a, index=split.index).groupby(split.to_numpy()).sum().reindex(index, fill_value=0)
        out["n_fail"] = n_fail.astype(int).to_numpy()
        out["n_pass"] = out["n_cells"] - out["n_fail"]
        out["fail_fraction"] = out["n_fail"] / out["n_cells"].where(out["n_cells"] > 0)
    return out


class HeldOut(NamedTuple):
    """What :func:`heldout_perturbations` returns (unpacks as ``perturbations, split``)."""

    #: Perturbations to evaluate on, sorted.
    perturbations: list[str]
    #: ``split=`` for :func:`cradlekit.evaluate.data_ate`: ``None`` (every cell of a held-out
    #: combination is a test cell) or ``"test"`` (a cell split: the held-out cells only).
    split: str | None


def heldout_perturbations(adata: AnnData, *, split_key: str = SPLIT_KEY) -> HeldOut:
    """The perturbations a split holds out, and the cells to measure them on, for either split kind.

    Parameters
    ----------
    adata
        Cells split by :func:`split_combinations` or :func:`split_cells`.
    split_key
        The ``obs`` column and ``uns`` entry of the split.

    Returns
    -------
    HeldOut
        ``(perturbations, split)``. After :func:`split_combinations`: the held-out combinations
        (``uns[split_key]['heldout']``, never seen in training) and ``None``. After
        :func:`split_cells`: every non-control perturbation with a test cell and ``"test"``; the
        model saw other cells of each of them, so this measures held-out cells, not unseen
        perturbations.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        The data has not been split.

    Examples
    --------
    >>> heldout, split = heldout_perturbations(adata)                               # doctest: +SKIP
    >>> data = ck.evaluate.data_ate(adata, perturbations=heldout, split=split)      # doctest: +SKIP
    """
    meta = adata.uns.get(split_key)
    if meta is None or split_key not in adata.obs:
        raise MissingKeyError(
            f"adata has no split {split_key!r}: run cradlekit.data.split_combinations(adata) (combinations) or "
            "cradlekit.data.split_cells(adata) (one target per cell) first"
        )
    kind = str(meta.get("kind", "combinations" if "heldout" in meta else "cells"))
    if kind == "combinations":
        return HeldOut(sorted(str(p) for p in np.asarray(meta["heldout"]).ravel()), None)
    key, control = perturbation_info(adata)
    labels = cell_labels(adata, key, control).to_numpy()
    in_test = adata.obs[split_key].astype(str).to_numpy() == "test"
    return HeldOut(sorted({str(p) for p in labels[in_test]} - {str(control)}), "test")
