"""Doublet calls with scanpy's scrublet (``sc.pp.scrublet``), run on a copy of the raw counts.

scanpy's implementation is used (the ``scrublet`` package stays a dependency, but its plotting
breaks on numpy 2); it agrees closely with the original. All scrublet parameters keep their
defaults except the seed (``random_state``) and the neighbour search:

``use_approx_neighbors=None`` (default here) picks **exact** (sklearn brute force) neighbours for
up to :data:`EXACT_NEIGHBORS_MAX_CELLS` cells (per batch) and pynndescent above. Measured on
2 CPU cores, synthetic NB counts × 2,000 genes, one process per run (the 50k and 110k
runs shared the cores with other work, so they are upper bounds):

=========  ===============================  =====================================
cells      exact (first call / later call)  pynndescent (first call / later call)
=========  ===============================  =====================================
3,000      5.7 s / 0.7 s                    33 s / 3.9 s
20,000     14 s / 12 s                      69 s / 50 s
50,000     56 s                             214 s
110,000    425 s                            921 s
=========  ===============================  =====================================

The first call of a process pays numba compilation: ~5 s in scanpy's preprocessing, plus
~25-30 s for pynndescent. scanpy's own default (``None`` passed to scanpy) switches to
pynndescent once observed + simulated cells reach 4,096, i.e. from ~1,400 cells on.

Large batches are scored in random chunks. scrublet's neighbour graph has
``round(0.5 * sqrt(n))`` neighbours over the observed and twice as many simulated cells, so
its cost grows faster than quadratically with the batch size (110,000 cells: 425 s above).
scrublet is meant to run per sample (a 10x lane, typically under 20,000 cells), so a batch
larger than ``chunk_size`` cells (default :data:`SCRUBLET_CHUNK_CELLS`) is split into
near-equal, seeded random chunks that are scored independently, as separate lanes would be.
The chunk size and count are recorded in ``uns["qc"]["scrublet"]`` (the assignment follows
from the seed); ``chunk_size=None`` scores every batch whole.

Memory: batches and chunks are scored one at a time, each on a float32 CSR copy of its own rows
only (scores identical to scanpy's ``batch_key`` call, which first copies the whole matrix).
Inside one call scanpy densifies the z-scored observed and simulated cells (three times the
group's cells) over its highly variable genes in float64, several copies at once: for a
15,000-cell chunk with 4,348 highly variable genes its z-score step alone takes resident memory
from 2.6 to 9.5 GB, 7.9 GB above where scanpy started (about 120 bytes per cell and highly
variable gene; ``benchmarks/results/scrublet_chunk_profile_cpu.md``). On a simulated
full-Norman-size screen (111,255 × 19,018 in memory, 8 chunks) QC with scrublet peaked at
11.0 GB resident (15.2 GB before the per-group loop) and took ~8 min on one core
(``benchmarks/results/sparse_data_cpu.md``). A smaller ``chunk_size`` lowers the peak in
proportion.

Small gene panels: scanpy's scrublet keeps only its highly variable genes, which for a
panel of a few hundred already-selected genes can be fewer than its 30 principal components
(17 on the 500-gene Norman subset). When that happens the call is repeated with
``n_prin_comps`` lowered to one less than the number of genes kept; it is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from tqdm.auto import tqdm

from .._logging import logger
from .._rows import gather_rows
from .._validation import check_obs_key
from .metrics import _doublet_obs

__all__ = [
    "EXACT_NEIGHBORS_MAX_CELLS",
    "SCRUBLET_CHUNK_CELLS",
    "SCRUBLET_MIN_CELLS",
    "run_scrublet",
    "resolve_doublets",
]

#: Largest number of cells for which exact neighbours are used when ``use_approx_neighbors=None``.
EXACT_NEIGHBORS_MAX_CELLS = 200_000
#: scrublet's principal components (scanpy's default ``n_prin_comps``).
_N_PCS = 30
#: scrublet's PCA has 30 components, so each batch needs more cells than that.
SCRUBLET_MIN_CELLS = _N_PCS + 1
#: Default largest number of cells scored together (see the module docstring).
SCRUBLET_CHUNK_CELLS = 15_000
_CHUNK_KEY = "_scrublet_chunk"


def _chunk_labels(obs: pd.DataFrame, batch_key: str | None, chunk_size: int, seed: int) -> np.ndarray:
    """Seeded random chunk label per cell: batches over ``chunk_size`` cells are split evenly."""
    batch = obs[batch_key].astype(str).to_numpy() if batch_key else np.full(len(obs), "all", dtype=object)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(obs))
    shuffled = pd.Series(batch[order])
    rank = shuffled.groupby(shuffled, sort=False).cumcount().to_numpy()
    size = shuffled.map(shuffled.value_counts()).to_numpy()
    n_chunks = np.ceil(size / chunk_size).astype(int)
    labels = np.empty(len(obs), dtype=object)
    labels[order] = shuffled.to_numpy().astype(str) + ":" + (rank % n_chunks).astype(str)
    return labels


def _scrublet_gene_count(X: sp.csr_matrix) -> int:
    """Genes scanpy's scrublet keeps for its PCA (its gene filter, then highly variable genes)."""
    import scanpy as sc

    work = AnnData(X=X.copy())
    sc.pp.filter_genes(work, min_cells=3)
    sc.pp.filter_cells(work, min_genes=3)
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work)
    return int(work.var["highly_variable"].sum())


def _batches(obs: pd.DataFrame, batch_key: str | None) -> dict[str, int]:
    if batch_key is None:
        return {"all": len(obs)}
    return {str(b): int(n) for b, n in obs[batch_key].value_counts(sort=False).items()}


def run_scrublet(
    adata: AnnData,
    *,
    counts=None,
    seed: int = 0,
    batch_key: str | None = None,
    use_approx_neighbors: bool | None = None,
    chunk_size: int | None = SCRUBLET_CHUNK_CELLS,
) -> tuple[pd.DataFrame, dict]:
    """Run ``sc.pp.scrublet`` on a float32 CSR copy of the counts; ``adata`` is not modified.

    Parameters
    ----------
    adata
        AnnData whose ``obs_names`` (and ``obs[batch_key]``) are used.
    counts
        Raw count matrix (cells × genes); ``None`` uses ``adata.X``.
    seed
        ``random_state`` of scrublet (doublet simulation, PCA, neighbours).
    batch_key
        ``obs`` column; scrublet runs separately within each batch (scanpy's ``batch_key``).
    use_approx_neighbors
        ``True``: pynndescent; ``False``: exact sklearn neighbours; ``None``: exact up to
        :data:`EXACT_NEIGHBORS_MAX_CELLS` cells (per batch), approximate above.
    chunk_size
        Batches larger than this are scored in seeded random chunks of at most this many
        cells (see the module docstring); ``None`` scores each batch whole.

    Returns
    -------
    calls : pandas.DataFrame
        ``doublet_score`` (float) and ``predicted_doublet`` (bool), indexed like ``adata.obs``.
    params : dict
        Parameters and thresholds, ready for ``adata.uns`` (no ``None`` values).

    Raises
    ------
    ValueError
        If a batch has too few cells for scrublet, or scrublet fails.
    """
    obs = pd.DataFrame(index=adata.obs_names.copy())
    if batch_key is not None:
        obs[batch_key] = check_obs_key(adata, batch_key, what="batch_key").to_numpy()
    sizes = _batches(obs, batch_key)
    small = {b: n for b, n in sizes.items() if n < SCRUBLET_MIN_CELLS}
    if small:
        raise ValueError(
            f"scrublet needs at least {SCRUBLET_MIN_CELLS} cells per batch (its PCA has {_N_PCS} "
            f"components); too small: {small}. Pass run_scrublet=False, or precomputed="
            "{'predicted_doublet': column}."
        )
    run_key = batch_key
    n_chunks = len(sizes)
    if chunk_size is not None and max(sizes.values()) > chunk_size:
        obs[_CHUNK_KEY] = _chunk_labels(obs, batch_key, int(chunk_size), seed)
        run_key = _CHUNK_KEY
        sizes = _batches(obs, run_key)
        n_chunks = len(sizes)
    largest = max(sizes.values())
    if use_approx_neighbors is None:
        approx = largest > EXACT_NEIGHBORS_MAX_CELLS
    else:
        approx = bool(use_approx_neighbors)
    X = adata.X if counts is None else counts
    logger.info(
        f"running scrublet on {adata.n_obs} cells (seed {seed}, "
        f"{'approximate' if approx else 'exact'} neighbours"
        f"{f', batch_key={batch_key!r}' if batch_key else ''}"
        f"{f', {n_chunks} random chunks of <= {chunk_size} cells' if run_key == _CHUNK_KEY else ''})"
    )
    # One group (batch or chunk) at a time, as scanpy's ``batch_key`` does (same groups, same order,
    # same seed per group, so the same scores), but holding only that group's rows: scanpy's batched
    # call first copies the whole matrix, and its per-group dense intermediates come on top.
    labels = obs[run_key].astype(str).to_numpy() if run_key is not None else None
    groups: list[str | None] = [None] if labels is None else [str(g) for g in np.unique(labels)]
    scores = np.full(adata.n_obs, np.nan)
    predicted = np.zeros(adata.n_obs, dtype=bool)
    thresholds: dict[str, float] = {}
    lowered: dict[str, int] = {}
    for group in tqdm(groups, desc="scrublet", unit="chunk" if run_key == _CHUNK_KEY else "batch",
                      disable=len(groups) < 2, leave=False):  # fmt: skip
        rows = np.arange(adata.n_obs) if labels is None else np.flatnonzero(labels == group)
        part = AnnData(X=sp.csr_matrix(gather_rows(X, rows), dtype=np.float32, copy=True))
        part.obs_names = rows.astype(str)
        n_pcs = _score_group(part, approx, seed, _N_PCS, adata.n_vars)
        if n_pcs < _N_PCS:
            lowered[group or "all"] = n_pcs
        scores[rows] = part.obs["doublet_score"].to_numpy(dtype=np.float64)
        predicted[rows] = part.obs["predicted_doublet"].to_numpy(dtype=bool)
        thresholds[group or "all"] = float(part.uns["scrublet"].get("threshold", np.nan))
        del part
    if lowered:
        logger.warning(
            f"scrublet keeps fewer highly variable genes of this {adata.n_vars}-gene panel than its {_N_PCS} "
            f"principal components in {len(lowered)} of {len(groups)} batch(es)/chunk(s); n_prin_comps was "
            f"lowered there to one less than the genes kept (down to {min(lowered.values())})"
        )
    n_pcs = min(lowered.values(), default=_N_PCS)
    calls = pd.DataFrame({"doublet_score": scores, "predicted_doublet": predicted}, index=adata.obs_names.copy())
    # scrublet leaves the threshold unset (and calls no doublet) where its score histogram has no
    # clear minimum; record NaN and say so rather than fail
    unset = [b for b, t in thresholds.items() if np.isnan(t)]
    if unset:
        logger.warning(
            f"scrublet found no automatic doublet threshold in {len(unset)} of {len(thresholds)} "
            f"batch(es)/chunk(s) ({unset[:5]}); it predicts no doublet there"
        )
    params = {
        "source": "scanpy.pp.scrublet",
        "random_state": int(seed),
        "batch_key": batch_key or "",
        "use_approx_neighbors": bool(approx),
        "sim_doublet_ratio": 2.0,
        "expected_doublet_rate": 0.05,
        "stdev_doublet_rate": 0.02,
        "n_prin_comps": int(n_pcs),
        "chunk_size": int(chunk_size) if chunk_size is not None else 0,
        "n_chunks": int(n_chunks),
        "threshold": thresholds,
        "n_predicted": int(calls["predicted_doublet"].sum()),
    }
    return calls, params


def _score_group(part: AnnData, approx: bool, seed: int, n_prin_comps: int, n_vars: int) -> int:
    """Run scrublet on one group in place; returns the number of principal components used.

    A panel whose highly variable genes are fewer than the components is retried with
    ``n_prin_comps`` lowered to one less than the genes kept.
    """
    try:
        _scrublet(part, approx, seed, n_prin_comps)
        return n_prin_comps
    except ValueError as err:
        n_genes = _scrublet_gene_count(part.X) if "n_components" in str(err) else 0
        if n_genes < 3:
            raise ValueError(f"scrublet failed on {part.n_obs} cells: {err}") from err
    n_prin_comps = min(n_prin_comps, n_genes - 1)
    try:
        _scrublet(part, approx, seed, n_prin_comps)
    except ValueError as err2:
        raise ValueError(f"scrublet failed on {part.n_obs} cells of {n_vars} genes: {err2}") from err2
    return n_prin_comps


def _scrublet(work: AnnData, approx: bool, seed: int, n_prin_comps: int) -> None:
    import scanpy as sc
    import torch

    threads = torch.get_num_threads()  # scanpy's neighbour search resets torch's thread count
    try:
        sc.pp.scrublet(
            work,
            use_approx_neighbors=approx,
            random_state=seed,
            verbose=False,
            n_prin_comps=n_prin_comps,
        )
    finally:
        torch.set_num_threads(threads)


def resolve_doublets(
    adata: AnnData,
    *,
    counts=None,
    precomputed: pd.DataFrame | None = None,
    precomputed_column: str | None = None,
    run: bool = True,
    seed: int = 0,
    batch_key: str | None = None,
    use_approx_neighbors: bool | None = None,
    chunk_size: int | None = SCRUBLET_CHUNK_CELLS,
) -> tuple[pd.DataFrame | None, dict]:
    """Doublet calls from (in order) a precomputed column, scrublet, or an existing ``obs``.

    Parameters
    ----------
    adata
        The AnnData being labelled.
    counts
        Raw counts for scrublet (``None``: ``adata.X``).
    precomputed
        Calls already read from ``obs`` (see :func:`cradlekit.qc.metrics.compute_metrics`).
    precomputed_column
        Name of the ``obs`` column they came from (for the record).
    run
        Run scrublet when no precomputed calls are given.
    seed, batch_key, use_approx_neighbors, chunk_size
        Passed to :func:`run_scrublet`.

    Returns
    -------
    calls : pandas.DataFrame or None
        ``predicted_doublet`` (and ``doublet_score`` when known); ``None`` when the doublet
        criterion is skipped (``run=False`` and no ``predicted_doublet`` in ``obs``).
    params : dict
        What was done, for ``uns['qc']['scrublet']``.
    """
    if precomputed is not None:
        return precomputed, {"source": f"obs[{precomputed_column!r}]", "ran": False}
    if run:
        calls, params = run_scrublet(
            adata, counts=counts, seed=seed, batch_key=batch_key,
            use_approx_neighbors=use_approx_neighbors, chunk_size=chunk_size,
        )  # fmt: skip
        params["ran"] = True
        return calls, params
    if "predicted_doublet" in adata.obs.columns:
        existing: Mapping[str, str] = {"predicted_doublet": "predicted_doublet"}
        if "doublet_score" in adata.obs.columns:
            existing = {**existing, "doublet_score": "doublet_score"}
        logger.info("run_scrublet=False: using the existing obs['predicted_doublet']")
        calls = _doublet_obs(adata, dict(existing))
        return calls, {"source": "obs['predicted_doublet']", "ran": False}
    return None, {"source": "skipped", "ran": False}
