"""Counterfactual references ``x̄_{i,c}`` for the auxiliary loss (SPEC §2, paper Algorithm 1.11).

For a QC-passed cell ``i`` the reference is the per-gene median of up to ``n_max`` QC-failed cells with
the same perturbation in the same split, drawn without replacement with a seeded RNG, independently
per passed cell. The published code draws positions within the failed subset but then indexes the
full matrix with them (so its medians come from the wrong cells) and is unseeded; here the drawn
rows are failed cells of the right group, and they are recorded for provenance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import CF_INDEX_KEY, CF_LAYER, CF_MASK_KEY, SPLIT_KEY, artifact_key as _artifact_key
from .._logging import logger
from .._validation import check_raw_counts, get_counts
from ..errors import MissingKeyError
from .perturbations import perturbation_info

__all__ = ["counterfactual_references"]

_DRAW_ROWS = 1024  # passed cells per random draw; fixed so results do not depend on the memory budget


def _draw_without_replacement(rng: np.random.Generator, n_rows: int, n_pool: int, k: int) -> np.ndarray:
    """``n_rows`` independent uniform k-subsets of ``range(n_pool)`` (random order), shape ``(n_rows, k)``."""
    out = np.empty((n_rows, k), dtype=np.int64)
    for start in range(0, n_rows, _DRAW_ROWS):  # blocks of cells bound the random matrix
        stop = min(start + _DRAW_ROWS, n_rows)
        keys = rng.random((stop - start, n_pool))
        out[start:stop] = np.argpartition(keys, k - 1, axis=1)[:, :k]
    return out


def _median_rows(
    failed: np.ndarray, draws: np.ndarray, genes: np.ndarray, n_genes: int, block_rows: int
) -> sp.csr_matrix:
    """Per-gene medians over the failed rows listed in each row of ``draws``; CSR float32 (rows × n_genes).

    ``failed`` (failed cells × kept genes, small unsigned ints) holds only the columns ``genes``; the
    median of every other gene is 0. Sorting small integers along the draw axis is much faster than
    ``np.median`` and gives the same values.
    """
    k = draws.shape[1]
    pieces = []
    for start in range(0, draws.shape[0], block_rows):  # memory-bounded blocks of passed cells
        block = failed[draws[start : start + block_rows]]  # cells × k × kept genes
        block.sort(axis=1)
        med = (block[:, (k - 1) // 2, :].astype(np.float32) + block[:, k // 2, :]) * np.float32(0.5)
        piece = sp.csr_matrix(med)
        piece = sp.csr_matrix((piece.data, genes[piece.indices], piece.indptr), shape=(piece.shape[0], n_genes))
        pieces.append(piece)
    return sp.vstack(pieces, format="csr") if len(pieces) > 1 else pieces[0]


def counterfactual_references(
    adata: AnnData,
    *,
    artifact_key: str = _artifact_key(3),
    split_key: str = SPLIT_KEY,
    n_max: int = 50,
    seed: int = 0,
    layer: str | None = None,
    perturbation_key: str | None = None,
    control_label: str | None = None,
    key_added: str = CF_LAYER,
    max_block_mb: float = 256.0,
) -> None:
    """Build the counterfactual reference of every QC-passed cell.

    Groups are (perturbation, split). In a group with more than ``n_max`` failed cells every passed
    cell gets its own draw of ``n_max`` distinct failed cells; with ``1 … n_max`` failed cells all are
    used and the median is shared; with none, the passed cells get no reference. Failed cells never
    get one. The mask, not the (empty) row, says which cells have a reference.

    Parameters
    ----------
    adata
        Raw counts with perturbation labels, QC labels and a split.
    artifact_key
        ``obs`` column of ``a_i`` (0 passed, 1 failed), written by :func:`cradlekit.qc.label_artifacts`.
    split_key
        ``obs`` split column (see :func:`~cradlekit.data.splits.split_combinations`).
    n_max
        Most failed cells per reference (50 in the paper).
    seed
        Seed of the draws (one generator, groups visited in sorted (perturbation, split) order).
    layer
        Count layer; ``None`` uses ``adata.X``.
    perturbation_key, control_label
        Default to ``adata.uns['cradlekit']``.
    key_added
        Layer written.
    max_block_mb
        Memory bound of one gathered (cells × n_max × genes) float32 block; results do not depend on it.

    Returns
    -------
    Nothing; writes

    ``layers[key_added]``
        CSR float32 medians; rows of cells without a reference are empty.
    ``obs['cf_has_reference']``
        Whether the cell has a reference.
    ``obsm['cf_reference_idx']``
        int64 (n_obs × n_max) row positions (in this ``adata``) of the failed cells behind each
        reference, ``-1`` padded. They go stale if ``adata`` is subset or reordered.
    ``uns['cf_reference']``
        ``artifact_key``, ``split_key``, ``perturbation_key``, ``n_max``, ``seed``, ``layer`` ('X' for X),
        ``key_added``, ``n_with_reference``, ``n_passed_without_reference`` and ``groups_without_failed``
        ('perturbation|split' labels of groups with passed but no failed cells).

    Raises
    ------
    MissingKeyError
        If the artifact or split column is missing.
    InvalidCountsError
        If the counts are not raw integers.
    """
    if n_max < 1:
        raise ValueError(f"n_max must be at least 1, got {n_max}")
    if artifact_key not in adata.obs:
        raise MissingKeyError(
            f"artifact label {artifact_key!r} not found in adata.obs; run cradlekit.qc.label_artifacts first"
        )
    if split_key not in adata.obs:
        raise MissingKeyError(
            f"split {split_key!r} not found in adata.obs; run cradlekit.data.split_combinations "
            "(combination datasets) or split_cells first"
        )
    key, _ = perturbation_info(adata, perturbation_key=perturbation_key, control_label=control_label)
    X = get_counts(adata, layer)
    check_raw_counts(X, what="adata.X" if layer is None else f"adata.layers[{layer!r}]")
    if sp.issparse(X) and not isinstance(X, (sp.csr_matrix, sp.csr_array)):
        X = sp.csr_matrix(X)
    a_raw = adata.obs[artifact_key]
    if a_raw.isna().any():
        raise ValueError(f"adata.obs[{artifact_key!r}] has missing values")
    a = a_raw.astype(int).to_numpy()
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"adata.obs[{artifact_key!r}] must be 0/1 (passed/failed), got {np.unique(a)[:10]}")
    split = adata.obs[split_key]
    if split.isna().any():
        raise ValueError(f"adata.obs[{split_key!r}] has missing values; every cell needs a split")

    n_obs, n_genes = adata.shape
    p_codes, p_uniques = pd.factorize(adata.obs[key].astype(str).to_numpy(), sort=True)
    s_codes, s_uniques = pd.factorize(split.astype(str).to_numpy(), sort=True)
    group = p_codes.astype(np.int64) * len(s_uniques) + s_codes
    order = np.lexsort((np.arange(n_obs), a, group))  # by group, then passed before failed, then row
    bounds = np.flatnonzero(np.diff(group[order])) + 1

    rng = np.random.default_rng(seed)
    idx = np.full((n_obs, n_max), -1, dtype=np.int64)
    has_ref = np.zeros(n_obs, dtype=bool)
    row_ids, blocks, no_failed = [], [], []
    for members in np.split(order, bounds):  # loop over (perturbation, split) groups
        passed = members[a[members] == 0]
        failed = members[a[members] == 1]
        if passed.size == 0:
            continue
        if failed.size == 0:
            g = group[members[0]]
            no_failed.append(f"{p_uniques[g // len(s_uniques)]}|{s_uniques[g % len(s_uniques)]}")
            continue
        sub = X[failed]
        k = min(n_max, failed.size)
        # a gene non-zero in fewer than ceil(k/2) failed cells of the group has median 0 in every draw
        if sp.issparse(sub):
            nnz = np.bincount(sub.indices[sub.data != 0], minlength=n_genes)
        else:
            nnz = np.count_nonzero(sub, axis=0)
        genes = np.flatnonzero(nnz >= (k + 1) // 2)
        block_rows = max(1, int(max_block_mb * 2**20 // (4 * n_max * max(genes.size, 1))))
        sub = sub[:, genes]
        dense = sub.toarray() if sp.issparse(sub) else np.asarray(sub)  # failed cells of this group only
        dense = np.rint(dense).astype(np.uint16 if dense.size == 0 or dense.max() < 2**16 else np.uint32)
        if failed.size <= n_max:
            med = _median_rows(dense, np.arange(failed.size)[None, :], genes, n_genes, 1)
            blocks.append(med[np.zeros(passed.size, dtype=np.int64)])
            idx[passed, : failed.size] = failed
        else:
            draws = _draw_without_replacement(rng, passed.size, failed.size, n_max)
            blocks.append(_median_rows(dense, draws, genes, n_genes, block_rows))
            idx[passed] = failed[draws]
        row_ids.append(passed)
        has_ref[passed] = True

    if blocks:
        stacked = sp.vstack(blocks, format="csr", dtype=np.float32)
        rows = np.concatenate(row_ids)
        position = np.empty(n_obs, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        take = np.where(has_ref, position, -1)
        # empty row appended at the end for cells without a reference
        padded = sp.vstack([stacked, sp.csr_matrix((1, n_genes), dtype=np.float32)], format="csr")
        ref = padded[np.where(take >= 0, take, rows.size)]
    else:
        ref = sp.csr_matrix((n_obs, n_genes), dtype=np.float32)
    ref = sp.csr_matrix(ref, dtype=np.float32)
    ref.eliminate_zeros()

    adata.layers[key_added] = ref
    adata.obs[CF_MASK_KEY] = has_ref
    adata.obsm[CF_INDEX_KEY] = idx
    n_passed_no_ref = int(((a == 0) & ~has_ref).sum())
    adata.uns["cf_reference"] = {
        "artifact_key": artifact_key,
        "split_key": split_key,
        "perturbation_key": key,
        "n_max": int(n_max),
        "seed": int(seed),
        "layer": "X" if layer is None else layer,
        "key_added": key_added,
        "n_with_reference": int(has_ref.sum()),
        "n_passed_without_reference": n_passed_no_ref,
        "groups_without_failed": np.asarray(sorted(no_failed), dtype=str),
    }
    if no_failed:
        logger.warning(
            "%d passed cells in %d (perturbation, split) groups have no failed cell and no reference: %s",
            n_passed_no_ref, len(no_failed), sorted(no_failed)[:10],
        )
    logger.info("counterfactual references for %d of %d passed cells", int(has_ref.sum()), int((a == 0).sum()))
