"""Shared pytest fixtures. Append new fixtures; keep each one small."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """Folder of the real data files: ``$CRADLEKIT_SHARED_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("CRADLEKIT_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_file():
    """Return a function ``name -> Path`` that skips the test when the file is absent."""

    def get(name: str) -> Path:
        path = shared_data_dir() / name
        if not path.is_file():
            pytest.skip(
                f"real data file {name!r} not found at {path}; set CRADLEKIT_SHARED_DATA to the "
                "folder holding it (see shared/data/SOURCES.md)"
            )
        return path

    return get


# --- QC (cradlekit.qc) -------------------------------------------------------------------------
QC_SPECIAL_GENES = [
    "MT-CO1", "MT-ND1", "MT-ATP6",            # mitochondrial
    "RPL13A", "RPS4X", "RPLP0", "RPS27A",     # ribosomal
    "HBB", "HBA1",                            # hemoglobin
    "HBEGF", "HBP1", "RPS6KA1", "MTSS1",      # decoys that must not match
]  # fmt: skip


@pytest.fixture
def make_qc_adata():
    """Factory of small synthetic raw-count AnnData (NB counts) with MT/RP/HB and decoy genes.

    ``make_qc_adata(n_cells=300, n_genes=200, seed=0, sparse=True, mito_scale=1.0)``.
    """
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    def make(n_cells=300, n_genes=200, seed=0, sparse=True, mito_scale=1.0, lib_scale=1.0):
        rng = np.random.default_rng(seed)
        names = QC_SPECIAL_GENES + [f"GENE{i}" for i in range(n_genes - len(QC_SPECIAL_GENES))]
        mu = rng.gamma(0.6, 1.0, size=len(names))
        mu[:3] *= 8.0 * mito_scale  # mitochondrial
        mu[3:7] *= 6.0  # ribosomal
        mu[7:9] *= 0.05  # hemoglobin: mostly zero
        lib = rng.lognormal(np.log(2000.0 * lib_scale), 0.35, size=n_cells)
        lam = lib[:, None] * mu[None, :] / mu.sum()
        X = rng.negative_binomial(4, 4.0 / (4.0 + lam)).astype(np.int64)
        adata = ad.AnnData(X=sp.csr_matrix(X) if sparse else X.astype(np.float32))
        adata.var_names = names
        adata.obs_names = [f"cell{i}" for i in range(n_cells)]
        adata.obs["batch"] = np.where(np.arange(n_cells) % 2 == 0, "b0", "b1")
        return adata

    return make


# --- data (cradlekit.data: manifest, download, readers) ----------------------------------------
@pytest.fixture
def isolated_data_env(tmp_path, monkeypatch):
    """A fresh download cache in ``tmp_path`` and no user data dirs; returns the cache path."""
    cache = tmp_path / "cradlekit_cache"
    monkeypatch.setenv("CRADLEKIT_CACHE", str(cache))
    monkeypatch.delenv("CRADLEKIT_DATA_DIRS", raising=False)
    return cache


@pytest.fixture
def cradlekit_log(monkeypatch, caplog):
    """``caplog`` at INFO on the ``cradlekit`` logger (propagation forced on, whatever a test changed)."""
    import logging

    from cradlekit._logging import logger

    monkeypatch.setattr(logger, "propagate", True)
    caplog.set_level(logging.INFO, logger="cradlekit")
    return caplog


# --- simulator, splits, counterfactual references (cradlekit.data) ----------------------------
NORMAN_SUBSET_FILE = "perturbench_devel_norman19_mcfaline23_counts500.h5ad"


@pytest.fixture(scope="session")
def norman19_subset(shared_data_file):
    """Norman 2019 part of the real PerturBench subset (3,375 cells × 500 genes, integer counts), with
    labels standardised into ``obs['perturbation']`` (control ``control``). Session-scoped: ``.copy()``
    before modifying."""
    import anndata as ad

    from cradlekit.data.perturbations import standardize_perturbations

    full = ad.read_h5ad(shared_data_file(NORMAN_SUBSET_FILE))
    adata = full[full.obs["dataset"] == "norman19"].copy()
    standardize_perturbations(adata, perturbation_key="condition", control_label="control")
    return adata


@pytest.fixture(scope="session")
def small_simulation():
    """A small :func:`cradlekit.data.simulate.simulate_perturbseq` dataset (3,000 cells × 300 genes,
    12 singles, 16 combinations). Session-scoped: ``.copy()`` before modifying."""
    from cradlekit.data.simulate import simulate_perturbseq

    return simulate_perturbseq(n_cells=3000, n_genes=300, true_ate_cells=200, seed=0)


@pytest.fixture(scope="module")
def single_thread():
    """Small networks train fastest on one thread (and are not slowed by a busy second core)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
