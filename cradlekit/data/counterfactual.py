"""Counterfactual references ``x̄_{i,c}`` for the auxiliary loss (paper Algorithm 1, line 11;
design page, "Splits and counterfactual references").

For a QC-passed cell ``i`` the reference is the per-gene median of up to ``n_max`` QC-failed cells with
the same perturbation in the same split, drawn without replacement with a seeded RNG, independently
per passed cell. The published code draws positions within the failed subset but then indexes the
full matrix with them (so its medians come from the wrong cells) and is unseeded; here the drawn
rows are failed cells of the right group, and they are recorded for provenance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import CF_INDEX_KEY, CF_LAYER, CF_MASK_KEY, SPLIT_KEY, artifact_key as _artifact_key
from .._logging import logger
from .._rows import check_counts_in_chunks, csr_view, is_in_memory, row_chunks
from .._validation import get_counts
from ..errors import MissingKeyError
from .perturbations import perturbation_info

__all__ = ["counterfactual_references", "counterfactual_matrix", "reference_table", "table_key", "row_key"]

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


def table_key(key: str = CF_LAYER) -> str:
    """``uns`` key of the reference table written under ``key`` (``'cf_reference_table'``)."""
    return f"{key}_table"


def row_key(key: str = CF_LAYER) -> str:
    """``obs`` column with each cell's row in the reference table (``'cf_reference_row'``; -1: none)."""
    return f"{key}_row"


class FailedRows:
    """The QC-failed cells' rows of ``X``, read once in chunks when ``X`` is on disk (a backed h5ad)."""

    def __init__(self, X, failed: np.ndarray):
        self.X = X
        if is_in_memory(X):
            self.rows = None
            return
        self.rows = failed
        parts = [block for _, block in row_chunks(X, failed)]
        self.block = csr_view(sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, X.shape[1])))

    def __getitem__(self, rows: np.ndarray):
        if self.rows is None:
            return self.X[rows]
        return self.block[np.searchsorted(self.rows, rows)]


def _per_cell(table: sp.csr_matrix, ref_row: np.ndarray) -> sp.csr_matrix:
    """One row per cell: ``table[ref_row]``, empty where ``ref_row == -1``."""
    padded = sp.vstack([table, sp.csr_matrix((1, table.shape[1]), dtype=np.float32)], format="csr")
    out = sp.csr_matrix(padded[np.where(ref_row >= 0, ref_row, table.shape[0])], dtype=np.float32)
    out.eliminate_zeros()
    return out


def reference_table(adata: AnnData, key: str = CF_LAYER) -> tuple[sp.csr_matrix, np.ndarray]:
    """The references as ``(table, row per cell)``: cell ``i``'s reference is ``table[row[i]]`` (-1: none).

    Reads the compact form written by :func:`counterfactual_references` (``uns[key + '_table']`` and
    ``obs[key + '_row']``), or a per-cell layer ``layers[key]`` (then ``row`` is ``0 .. n_obs - 1``).

    Raises
    ------
    MissingKeyError
        If neither form exists.
    """
    if table_key(key) in adata.uns and row_key(key) in adata.obs.columns:
        table = adata.uns[table_key(key)]
        if not sp.issparse(table):
            table = sp.csr_matrix(np.asarray(table, dtype=np.float32))
        row = adata.obs[row_key(key)].to_numpy().astype(np.int64)
        if row.max(initial=-1) >= table.shape[0] or table.shape[1] != adata.n_vars:
            raise ValueError(
                f"counterfactual reference table {table_key(key)!r} ({table.shape}) does not match "
                f"adata.obs[{row_key(key)!r}] / {adata.n_vars} genes; rebuild it with counterfactual_references"
            )
        return sp.csr_matrix(table, dtype=np.float32), row
    if key in adata.layers:
        return sp.csr_matrix(adata.layers[key], dtype=np.float32), np.arange(adata.n_obs)
    raise MissingKeyError(
        f"counterfactual references {key!r} not found (neither adata.uns[{table_key(key)!r}] with "
        f"adata.obs[{row_key(key)!r}] nor adata.layers[{key!r}]); create them with "
        "cradlekit.data.counterfactual_references(adata)"
    )


def counterfactual_matrix(adata: AnnData, key: str = CF_LAYER) -> sp.csr_matrix:
    """Every cell's reference as one CSR row (empty rows for cells without one), for inspection."""
    table, row = reference_table(adata, key)
    return _per_cell(table, row)


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
    per_cell_layer: bool = False,
) -> None:
    """Build the counterfactual reference of every QC-passed cell.

    Groups are (perturbation, split). In a group with more than ``n_max`` failed cells every passed
    cell gets its own draw of ``n_max`` distinct failed cells; with ``1 … n_max`` failed cells all are
    used and the median is shared; with none, the passed cells get no reference. Failed cells never
    get one. The mask, not the (empty) row, says which cells have a reference.

    ``adata`` may be a backed AnnData (``read_h5ad(path, backed="r")``): the counts are checked in
    chunks and only the QC-failed cells' rows are read into memory.

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
        Name of the references (see below).
    max_block_mb
        Memory bound of one gathered (cells × n_max × genes) float32 block; results do not depend on it.
    per_cell_layer
        Also write the references as a per-cell layer ``layers[key_added]`` (one row per cell, a
        shared reference repeated) instead of the compact table; for code that needs a layer.

    Returns
    -------
    Nothing; writes

    ``uns[key_added + '_table']`` and ``obs[key_added + '_row']``
        The compact form: a CSR float32 table with one row per distinct reference (one per group
        whose failed cells are all used, one per passed cell where ``n_max`` of them are drawn) and
        each cell's row in it (-1: no reference). Memory grows with the number of distinct
        references, not with the cells sharing them. :func:`counterfactual_matrix` expands it to one
        row per cell; :func:`reference_table` reads either form. (With ``per_cell_layer``:
        ``layers[key_added]``, CSR float32 medians, empty rows for cells without a reference.)
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
    key, X, a, split = _checked_inputs(adata, artifact_key=artifact_key, split_key=split_key, layer=layer,
                                       perturbation_key=perturbation_key, control_label=control_label)
    refs = _build_references(X, a, _groups(adata.obs[key], split, a), n_max=n_max, seed=seed,
                             max_block_mb=max_block_mb)
    _write_references(adata, refs, key_added=key_added, per_cell_layer=per_cell_layer)
    n_passed_no_ref = int(((a == 0) & ~refs.has_ref).sum())
    adata.uns["cf_reference"] = {
        "artifact_key": artifact_key,
        "split_key": split_key,
        "perturbation_key": key,
        "n_max": int(n_max),
        "seed": int(seed),
        "layer": "X" if layer is None else layer,
        "key_added": key_added,
        "n_with_reference": int(refs.has_ref.sum()),
        "n_references": int(refs.table.shape[0]),
        "per_cell_layer": bool(per_cell_layer),
        "n_passed_without_reference": n_passed_no_ref,
        "groups_without_failed": np.asarray(sorted(refs.no_failed), dtype=str),
    }
    if refs.no_failed:
        logger.warning(
            "%d passed cells in %d (perturbation, split) groups have no failed cell and no reference: %s",
            n_passed_no_ref, len(refs.no_failed), sorted(refs.no_failed)[:10],
        )
    logger.info("counterfactual references for %d of %d passed cells", int(refs.has_ref.sum()), int((a == 0).sum()))


def _checked_inputs(
    adata: AnnData, *, artifact_key: str, split_key: str, layer: str | None,
    perturbation_key: str | None, control_label: str | None,
) -> tuple[str, Any, np.ndarray, pd.Series]:
    """``(perturbation key, counts as CSR or dense, a_i as 0/1 ints, split column)``, each checked."""
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
    X = csr_view(get_counts(adata, layer))
    check_counts_in_chunks(X, what="adata.X" if layer is None else f"adata.layers[{layer!r}]")
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
    return key, X, a, split


def _groups(perturbation: pd.Series, split: pd.Series, a: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``('perturbation|split', rows)`` per group, groups in sorted (perturbation, split) order; within
    a group passed cells before failed ones, each by row."""
    p_codes, p_uniques = pd.factorize(perturbation.astype(str).to_numpy(), sort=True)
    s_codes, s_uniques = pd.factorize(split.astype(str).to_numpy(), sort=True)
    group = p_codes.astype(np.int64) * len(s_uniques) + s_codes
    order = np.lexsort((np.arange(group.size), a, group))  # by group, then passed before failed, then row
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    out = []
    for members in np.split(order, bounds):
        g = group[members[0]]
        out.append((f"{p_uniques[g // len(s_uniques)]}|{s_uniques[g % len(s_uniques)]}", members))
    return out


def _kept_failed_counts(sub, k: int, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(genes, counts)``: the genes whose median over ``k`` of the failed rows ``sub`` can be non-zero
    (non-zero in at least ``ceil(k / 2)`` of them) and those rows' counts of them, as small unsigned ints."""
    if sp.issparse(sub):
        nnz = np.bincount(sub.indices[sub.data != 0], minlength=n_genes)
    else:
        nnz = np.count_nonzero(sub, axis=0)
    genes = np.flatnonzero(nnz >= (k + 1) // 2)
    sub = sub[:, genes]
    dense = sub.toarray() if sp.issparse(sub) else np.asarray(sub)  # failed cells of this group only
    return genes, np.rint(dense).astype(np.uint16 if dense.size == 0 or dense.max() < 2**16 else np.uint32)


class _References:
    """The references being built: table rows, each cell's row, drawn cells, groups without failed cells."""

    def __init__(self, n_obs: int, n_genes: int, n_max: int):
        self.n_genes = n_genes
        self.idx = np.full((n_obs, n_max), -1, dtype=np.int64)
        self.has_ref = np.zeros(n_obs, dtype=bool)
        self.ref_row = np.full(n_obs, -1, dtype=np.int64)
        self.blocks: list[sp.csr_matrix] = []
        self.no_failed: list[str] = []
        self.n_refs = 0
        self.table: sp.csr_matrix | None = None

    def add(self, passed: np.ndarray, failed: np.ndarray, block: sp.csr_matrix, draws: np.ndarray | None) -> None:
        """Rows ``block`` for the ``passed`` cells: one shared row (``draws=None``, every failed cell
        used) or one row per passed cell, drawn from ``failed`` at positions ``draws``."""
        self.blocks.append(block)
        if draws is None:
            self.ref_row[passed] = self.n_refs  # one shared reference for the whole group
            self.idx[passed, : failed.size] = failed
        else:
            self.ref_row[passed] = self.n_refs + np.arange(passed.size)  # one draw per passed cell
            self.idx[passed] = failed[draws]
        self.n_refs += block.shape[0]
        self.has_ref[passed] = True

    def finish(self) -> None:
        """Stack the rows into ``table`` (CSR float32, explicit zeros removed)."""
        if self.blocks:
            table = sp.vstack(self.blocks, format="csr", dtype=np.float32)
        else:
            table = sp.csr_matrix((0, self.n_genes), dtype=np.float32)
        self.table = sp.csr_matrix(table, dtype=np.float32)
        self.table.eliminate_zeros()


def _build_references(
    X, a: np.ndarray, groups: list[tuple[str, np.ndarray]], *, n_max: int, seed: int, max_block_mb: float
) -> _References:
    """Every group's references (one generator, drawn in the order of ``groups``)."""
    n_obs, n_genes = X.shape
    rng = np.random.default_rng(seed)
    refs = _References(n_obs, n_genes, n_max)
    failed_rows = FailedRows(X, np.flatnonzero(a == 1))
    for label, members in groups:  # loop over (perturbation, split) groups
        passed = members[a[members] == 0]
        failed = members[a[members] == 1]
        if passed.size == 0:
            continue
        if failed.size == 0:
            refs.no_failed.append(label)
            continue
        genes, dense = _kept_failed_counts(failed_rows[failed], min(n_max, failed.size), n_genes)
        if failed.size <= n_max:
            refs.add(passed, failed, _median_rows(dense, np.arange(failed.size)[None, :], genes, n_genes, 1), None)
        else:
            block_rows = max(1, int(max_block_mb * 2**20 // (4 * n_max * max(genes.size, 1))))
            draws = _draw_without_replacement(rng, passed.size, failed.size, n_max)
            refs.add(passed, failed, _median_rows(dense, draws, genes, n_genes, block_rows), draws)
    refs.finish()
    return refs


def _write_references(adata: AnnData, refs: _References, *, key_added: str, per_cell_layer: bool) -> None:
    """Write the table and rows (or the per-cell layer), the mask and the drawn cells into ``adata``."""
    if per_cell_layer:
        adata.layers[key_added] = _per_cell(refs.table, refs.ref_row)
        adata.uns.pop(table_key(key_added), None)
        if row_key(key_added) in adata.obs.columns:
            del adata.obs[row_key(key_added)]
    else:
        adata.uns[table_key(key_added)] = refs.table
        adata.obs[row_key(key_added)] = refs.ref_row
        if key_added in adata.layers:  # a stale per-cell layer of an earlier call
            del adata.layers[key_added]
    adata.obs[CF_MASK_KEY] = refs.has_ref
    adata.obsm[CF_INDEX_KEY] = refs.idx
