"""Fast two-dimensional embeddings that share one neighbour graph, stored in ``obsm`` for reuse.

:func:`embed_cells` normalises the cells as the paper does (:func:`cradlekit.evaluate.perturbseq_normalize`),
reduces them by PCA, finds the exact nearest neighbours once (brute force: a few thousand cells
take a fraction of a second) and optimises either a UMAP (``umap-learn``'s
``simplicial_set_embedding`` on that graph, PCA initialisation) or a t-SNE (``openTSNE`` on
affinities from the same neighbours, when installed; scikit-learn's otherwise). The result is written to
``adata.obsm["X_<method>"]`` with its settings in ``adata.uns["cradlekit_embeddings"]``: a second call with the
same settings returns it without recomputing.

:func:`embed_tsne` (Figure 4, the paper's route) is unchanged; this module is the interactive one.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from threadpoolctl import threadpool_limits

from .._logging import logger
from ..evaluate.log_normalize import perturbseq_normalize

__all__ = ["embed_cells", "place_cells", "warm_up_umap", "umap_is_warm", "EMBEDDINGS_UNS_KEY"]

#: ``uns`` entry holding the settings of each stored embedding (``{"X_umap": {...}}``).
EMBEDDINGS_UNS_KEY = "cradlekit_embeddings"
Method = Literal["umap", "tsne"]
_WARM = threading.Event()
_WARM_LOCK = threading.Lock()


def _settings(method: str, n_pcs: int, n_neighbors: int, seed: int, n_obs: int, layer: str | None) -> dict:
    return {"method": method, "n_pcs": int(n_pcs), "n_neighbors": int(n_neighbors), "seed": int(seed),
            "n_obs": int(n_obs), "layer": layer or "X"}  # fmt: skip


def embed_cells(
    adata: AnnData,
    *,
    method: Method = "umap",
    layer: str | None = None,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    seed: int = 0,
    key_added: str | None = None,
    check: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Two-dimensional UMAP or t-SNE of the cells, written to ``obsm`` and reused when asked again.

    Parameters
    ----------
    adata
        Cells × genes of counts (or expected expression) in ``X`` or ``layers[layer]``.
    method
        ``"umap"`` (fast: ~1 s for 3,000 cells once compiled) or ``"tsne"``.
    layer
        Layer with the values; ``None`` uses ``X``.
    n_pcs
        Principal components of the normalised cells (capped at ``min(cells, genes) - 1``).
    n_neighbors
        Neighbours of the UMAP graph; t-SNE uses ``3 × perplexity`` (perplexity ``n_neighbors``·2,
        capped at ``(cells - 1) / 3``) neighbours of the same PCA.
    seed
        Seed of the PCA solver and the optimisation.
    key_added
        ``obsm`` key (default ``"X_<method>"``).
    check
        Called between steps and during the optimisation; raise from it to stop (a widget's cancel).

    Returns
    -------
    pandas.DataFrame
        Columns ``x``, ``y`` indexed by ``obs_names``; the same values are in ``adata.obsm[key_added]``
        and the settings in ``adata.uns["cradlekit_embeddings"][key_added]``.

    Raises
    ------
    ValueError
        Fewer than 5 cells or an unknown method.
    """
    if method not in ("umap", "tsne"):
        raise ValueError(f"method must be 'umap' or 'tsne', got {method!r}")
    if adata.n_obs < 5:
        raise ValueError(f"an embedding needs at least 5 cells, got {adata.n_obs}")
    key = key_added or f"X_{method}"
    settings = _settings(method, n_pcs, n_neighbors, seed, adata.n_obs, layer)
    stored = adata.uns.get(EMBEDDINGS_UNS_KEY, {}).get(key)
    if key in adata.obsm and stored is not None and dict(stored) == settings:
        return pd.DataFrame(np.asarray(adata.obsm[key])[:, :2], index=adata.obs_names.copy(), columns=["x", "y"])
    check = check or (lambda: None)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1 if adata.n_obs <= 5000 else None):
        pcs = _pca(adata, layer, n_pcs, seed)
        check()
        if method == "umap":
            coords = _umap(pcs, n_neighbors, seed, check)
        else:
            coords = _tsne(pcs, n_neighbors, seed, check)
    adata.obsm[key] = coords.astype(np.float32)
    adata.uns.setdefault(EMBEDDINGS_UNS_KEY, {})[key] = settings
    logger.debug("embed_cells: %s of %d cells in %.2f s", method, adata.n_obs, time.perf_counter() - t0)
    return pd.DataFrame(coords, index=adata.obs_names.copy(), columns=["x", "y"])


def _pca(adata: AnnData, layer: str | None, n_pcs: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    X = perturbseq_normalize(adata, layer=layer, zero_total="zero", dtype=np.float32)
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    n_comp = max(1, min(n_pcs, X.shape[0] - 1, X.shape[1] - 1))
    if X.shape[1] <= 1:
        return X.astype(np.float64)
    return PCA(n_components=n_comp, svd_solver="randomized", random_state=seed).fit_transform(X).astype(np.float64)


def _knn(pcs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours (self first) of every cell: ``(indices, distances)``, each ``(n, k)``."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, pcs.shape[0])
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(pcs).kneighbors(pcs)
    return idx.astype(np.int64), dist.astype(np.float32)


def _init(pcs: np.ndarray, seed: int, scale: float) -> np.ndarray:
    """First two PCs, rescaled to standard deviation ``scale`` along the first (PCA initialisation)."""
    init = np.zeros((pcs.shape[0], 2))
    m = min(2, pcs.shape[1])
    init[:, :m] = pcs[:, :m]
    if m < 2:
        init[:, 1] = np.random.default_rng(seed).normal(size=pcs.shape[0])
    sd = init[:, 0].std() or 1.0
    return init / sd * scale


def _umap(pcs: np.ndarray, n_neighbors: int, seed: int, check) -> np.ndarray:
    try:
        from umap.umap_ import fuzzy_simplicial_set, simplicial_set_embedding
    except ImportError as err:  # pragma: no cover - umap-learn comes with scanpy's extras
        raise ValueError("UMAP needs the umap-learn package (pip install umap-learn); t-SNE works without it") \
            from err
    n = pcs.shape[0]
    k = max(2, min(n_neighbors, n - 1))
    idx, dist = _knn(pcs, k)
    check()
    graph, _, _ = fuzzy_simplicial_set(pcs, k, seed, "euclidean", knn_indices=idx, knn_dists=dist)
    check()
    init = _init(pcs, seed, 1.0)  # umap rescales an array initialisation to [0, 10]
    coords, _ = simplicial_set_embedding(
        pcs, graph, 2, 1.0, 1.576943460405378, 0.8950608781227859, 1.0, 5, 200 if n <= 10_000 else 0, init,
        np.random.RandomState(seed), "euclidean", {}, False, {}, False,
    )  # fmt: skip
    _WARM.set()
    return np.asarray(coords, dtype=np.float64)


def _tsne(pcs: np.ndarray, n_neighbors: int, seed: int, check) -> np.ndarray:
    n = pcs.shape[0]
    perplexity = min(2.0 * n_neighbors, (n - 1) / 3.0)
    try:
        from openTSNE import TSNEEmbedding
        from openTSNE.affinity import PrecomputedAffinities
    except ImportError:  # scikit-learn's exact-perplexity t-SNE (slower, not cancellable mid-way)
        from sklearn.manifold import TSNE

        return TSNE(perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(pcs)
    from sklearn.manifold._t_sne import _joint_probabilities_nn

    k = min(n - 1, int(3 * perplexity) + 1)
    idx, dist = _knn(pcs, k + 1)
    distances = sp.csr_matrix(
        (dist[:, 1:].ravel().astype(np.float64) ** 2, idx[:, 1:].ravel(), np.arange(0, n * k + 1, k)), shape=(n, n)
    )
    P = _joint_probabilities_nn(distances, perplexity, 0)
    check()

    def callback(iteration, error, embedding):
        check()  # raising stops openTSNE between iterations

    # PCA initialisation and the n/12 learning rate converge in fewer iterations than openTSNE's defaults
    # (250 + 500). One thread: on a shared 2-core machine a second one spin-waits (CPU time doubled).
    emb = TSNEEmbedding(_init(pcs, seed, 1e-4), PrecomputedAffinities(P, normalize=False),
                        negative_gradient_method="bh", n_jobs=1, random_state=seed,
                        callbacks=callback, callbacks_every_iters=25, learning_rate=max(n / 12.0, 50.0))  # fmt: skip
    emb = emb.optimize(n_iter=100, exaggeration=12.0, momentum=0.5)
    emb = emb.optimize(n_iter=275, momentum=0.8)
    return np.asarray(emb, dtype=np.float64)


def place_cells(
    adata: AnnData,
    embedded: np.ndarray,
    coords: np.ndarray,
    *,
    layer: str | None = None,
    n_pcs: int = 30,
    n_neighbors: int = 10,
    seed: int = 0,
    check: Callable[[], None] | None = None,
    chunk: int = 5000,
) -> np.ndarray:
    """Place every cell of ``adata`` on an embedding computed for some of them (the fast path for many cells).

    The cells are normalised as in :func:`embed_cells`; a PCA is fitted on the embedded cells and
    applied to all; each other cell is put at the mean of its ``n_neighbors`` nearest embedded
    cells (in that PCA space), weighted by inverse distance, the way UMAP initialises new points.
    Embedded cells keep their coordinates. A placed cell sits inside the neighbourhood of cells it
    resembles, but the optimisation never saw it: a placement, not an embedding.

    Parameters
    ----------
    adata
        All cells (counts in ``X`` or ``layers[layer]``).
    embedded
        Row positions of the embedded cells.
    coords
        Their ``(len(embedded), 2)`` coordinates.
    layer, n_pcs, seed
        As in :func:`embed_cells` (the same PCA settings).
    n_neighbors
        Embedded neighbours averaged per placed cell.
    check
        Called between chunks; raise from it to stop.
    chunk
        Rows normalised and projected at a time (bounds the dense memory).

    Returns
    -------
    numpy.ndarray
        ``(n_obs, 2)`` coordinates of every cell.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    check = check or (lambda: None)
    embedded = np.asarray(embedded, dtype=np.int64)
    out = np.empty((adata.n_obs, 2), dtype=np.float64)
    out[embedded] = np.asarray(coords, dtype=np.float64)
    rest = np.setdiff1d(np.arange(adata.n_obs), embedded)
    if rest.size == 0:
        return out

    def normalised(rows: np.ndarray) -> np.ndarray:
        part = adata[rows]
        X = perturbseq_normalize(part, layer=layer, zero_total="zero", dtype=np.float32)
        return X.toarray() if sp.issparse(X) else np.asarray(X)

    with threadpool_limits(limits=1 if adata.n_obs <= 20000 else None):
        ref = normalised(embedded)
        n_comp = max(1, min(n_pcs, ref.shape[0] - 1, ref.shape[1] - 1))
        pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=seed).fit(ref)
        index = NearestNeighbors(n_neighbors=min(n_neighbors, embedded.size), algorithm="brute").fit(pca.transform(ref))
        for start in range(0, rest.size, chunk):
            check()
            rows = rest[start : start + chunk]
            dist, idx = index.kneighbors(pca.transform(normalised(rows)))
            w = 1.0 / (dist + 1e-6)
            out[rows] = (w[:, :, None] * out[embedded][idx]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    return out


def umap_is_warm() -> bool:
    """Whether umap-learn's numba code is compiled in this process (the next UMAP is fast)."""
    return _WARM.is_set()


def warm_up_umap(*, wait: bool = False) -> threading.Thread | None:
    """Import umap-learn and compile its numba functions on 40 random points, in a background thread.

    The first UMAP of a process otherwise spends ~10-20 s compiling (and importing umap-learn alone
    compiles pynndescent's numba code, ~5-15 s on two cores); a widget calls this when it is created,
    so that its constructor returns at once and its first embedding is fast. Returns the thread
    (``None`` when already warm or umap-learn is absent).
    """
    if _WARM.is_set():
        return None
    if importlib.util.find_spec("umap") is None:  # pragma: no cover - looks for it without importing it
        return None

    def run():
        with _WARM_LOCK:
            if _WARM.is_set():
                return
            rng = np.random.default_rng(0)
            try:
                import umap  # noqa: F401 - the slow import, here rather than in the caller's thread

                _umap(rng.normal(size=(40, 5)), 5, 0, lambda: None)
            except Exception:  # noqa: BLE001 - warming up is best effort
                logger.debug("umap warm-up failed", exc_info=True)

    thread = threading.Thread(target=run, name="cradlekit-umap-warmup", daemon=True)
    thread.start()
    if wait:
        thread.join()
    return thread
