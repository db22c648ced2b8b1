"""cradlekit.pl.embed.embed_cells: UMAP and t-SNE on one exact neighbour graph, stored in obsm and reused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

import cradlekit as ck
from cradlekit.evaluate import perturbseq_normalize
from cradlekit.pl.embed import EMBEDDINGS_UNS_KEY, embed_cells


def _neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each cell's k nearest neighbours in ``a`` that are also among them in ``b``."""
    ia = NearestNeighbors(n_neighbors=k + 1).fit(a).kneighbors(a, return_distance=False)[:, 1:]
    ib = NearestNeighbors(n_neighbors=k + 1).fit(b).kneighbors(b, return_distance=False)[:, 1:]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ia, ib, strict=True)]))


@pytest.fixture(scope="module")
def cells(single_thread):
    return ck.data.simulate_perturbseq(n_cells=600, n_genes=200, n_single=4, n_combinations=4,
                                       true_ate_cells=20, seed=0)  # fmt: skip


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_embedding_keeps_neighbourhoods_and_is_stored(cells, method):
    adata = cells.copy()
    emb = embed_cells(adata, method=method, seed=0)
    assert emb.shape == (adata.n_obs, 2) and list(emb.index) == list(adata.obs_names)
    assert np.isfinite(emb.to_numpy()).all()
    X = perturbseq_normalize(adata, zero_total="zero")
    X = X.toarray() if hasattr(X, "toarray") else X
    from sklearn.decomposition import PCA

    pcs = PCA(30, random_state=0).fit_transform(X)
    kept = _neighbour_overlap(pcs, emb.to_numpy())
    shuffled = _neighbour_overlap(pcs, np.random.default_rng(0).permutation(emb.to_numpy()))
    assert kept > 0.1 and kept > 5 * shuffled, (kept, shuffled)  # chance is k / n = 0.017: far above it
    key = f"X_{method}"
    assert np.allclose(adata.obsm[key], emb.to_numpy(), atol=1e-5)
    assert adata.uns[EMBEDDINGS_UNS_KEY][key]["method"] == method
    adata.obsm[key][:] = 0.0  # a stored embedding with the same settings is returned, not recomputed
    assert (embed_cells(adata, method=method, seed=0).to_numpy() == 0).all()
    assert not (embed_cells(adata, method=method, seed=1).to_numpy() == 0).all()  # other settings: recomputed


def test_bad_input(cells):
    with pytest.raises(ValueError, match="method"):
        embed_cells(cells, method="pca")
    with pytest.raises(ValueError, match="at least 5 cells"):
        embed_cells(cells[:3].copy())


def test_umap_warm_up_imports_umap_in_its_own_thread(monkeypatch):
    """Importing umap-learn compiles pynndescent's numba code (~5-15 s on two cores): a LatentExplorer's
    constructor calls warm_up_umap, so the import must happen in the warm-up thread, not the caller's."""
    import importlib.abc
    import importlib.util
    import sys
    import threading
    import types

    from cradlekit.pl import embed

    importing: list[str] = []

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """Hands out a stand-in ``umap`` (nothing compiled) and records the thread that imports it."""

        def find_spec(self, name, path, target=None):
            return importlib.util.spec_from_loader(name, self) if name == "umap" else None

        def create_module(self, spec):
            importing.append(threading.current_thread().name)
            return types.ModuleType("umap")

        def exec_module(self, module):
            pass

    real = sys.modules.pop("umap", None)
    try:
        monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
        monkeypatch.setattr(embed, "_WARM", threading.Event())
        monkeypatch.setattr(embed, "_umap", lambda *args: embed._WARM.set())
        thread = embed.warm_up_umap()
        assert thread is not None and thread.name == "cradlekit-umap-warmup"
        thread.join(30)
    finally:
        sys.modules.pop("umap", None)
        if real is not None:
            sys.modules["umap"] = real
    assert importing == ["cradlekit-umap-warmup"] and embed.umap_is_warm()
