"""Simulated Perturb-seq screens of any size, written to an h5ad in chunks (never densified whole).

The counts only need the *shape* of a real screen for memory and throughput measurements: a
sparse cells x genes matrix with a chosen number of detected genes per cell (heavy-tailed
per-gene detection, Poisson counts on detected genes), Norman-like labels (controls, singles
and pairs), perturbation effects on a few genes each, and ~15 % artifact cells (half the
detected genes, 6x mitochondrial counts) that cradlekit's QC can find. Mitochondrial,
ribosomal and hemoglobin genes carry their usual symbols.

The file is written with anndata's own machinery (``anndata.io.write_elem`` and the on-disk
sparse dataset's ``append``), one chunk of cells at a time.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import sparse_dataset, write_elem

MT = [f"MT-{g}" for g in ("ND1", "ND2", "CO1", "CO2", "ATP8", "ATP6", "CO3", "ND3", "ND4L", "ND4", "ND5", "ND6", "CYB")]
RIBO = [f"RPL{i}" for i in range(3, 40)] + [f"RPS{i}" for i in range(2, 30)]
HB = ["HBB", "HBA1", "HBA2", "HBD", "HBG1", "HBG2"]


def _labels(n_cells: int, n_single: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    targets = [f"TGT{j}" for j in range(n_single)]
    pairs = set()
    while len(pairs) < n_pairs:
        a, b = sorted(rng.choice(n_single, 2, replace=False))
        pairs.add(f"{targets[a]}+{targets[b]}")
    names = ["control", *targets, *sorted(pairs)]
    weights = np.r_[0.08, np.full(n_single, 0.5 / n_single), np.full(n_pairs, 0.42 / n_pairs)]
    return rng.choice(len(names), size=n_cells, p=weights / weights.sum()), names


def write_screen(
    path: str | Path,
    *,
    n_cells: int,
    n_genes: int,
    genes_per_cell: float,
    n_single: int = 105,
    n_pairs: int = 131,
    artifact_fraction: float = 0.15,
    seed: int = 0,
    chunk: int = 2000,
) -> Path:
    """Write a simulated screen to ``path`` (h5ad, CSR float32 counts) and return the path."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    special = [*MT, *RIBO, *HB]
    var = pd.DataFrame(index=pd.Index([*special, *(f"GENE{i}" for i in range(n_genes - len(special)))]))
    p = rng.beta(0.3, 2.0, size=n_genes)
    p[: len(MT) + len(RIBO)] = rng.uniform(0.7, 0.95, len(MT) + len(RIBO))  # mito and ribosomal: widely detected
    p = np.clip(p * genes_per_cell / p.sum(), 0, 0.98).astype(np.float32)
    lam = (0.5 + 4.0 * p).astype(np.float32)
    codes, names = _labels(n_cells, n_single, n_pairs, rng)
    effect_genes = rng.integers(len(special), n_genes, size=(n_single, 30))
    artifact = rng.random(n_cells) < artifact_fraction
    obs = pd.DataFrame(
        {"perturbation": pd.Categorical.from_codes(codes, names), "true_artifact": artifact},
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    target_of = {t: j for j, t in enumerate(names[1 : n_single + 1])}
    pert_targets = [[target_of[t] for t in name.split("+")] if name != "control" else [] for name in names]
    mt = np.arange(len(MT))
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        write_elem(f, "obs", obs)
        write_elem(f, "var", var)
        write_elem(
            f, "uns", {"cradlekit": {"perturbation_key": "perturbation", "control_label": "control", "combo_sep": "+"}}
        )
        X = None
        for start in range(0, n_cells, chunk):  # one chunk of cells at a time
            stop = min(start + chunk, n_cells)
            prob = np.broadcast_to(p, (stop - start, n_genes)).copy()
            for i, c in enumerate(codes[start:stop]):
                for t in pert_targets[c]:
                    prob[i, effect_genes[t]] = np.minimum(prob[i, effect_genes[t]] * 3.0 + 0.05, 0.98)
            prob[artifact[start:stop]] *= 0.5
            block = sp.csr_matrix(rng.random(prob.shape, dtype=np.float32) < prob, dtype=np.float32)
            block.data = (1 + rng.poisson(lam[block.indices])).astype(np.float32)
            rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
            boost = artifact[start:stop][rows] & np.isin(block.indices, mt)
            block.data[boost] *= 6.0
            block.indices = block.indices.astype(np.int32)
            block.indptr = block.indptr.astype(np.int64)
            if X is None:
                write_elem(f, "X", block)
                X = sparse_dataset(f["X"])
            else:
                X.append(block)
    return path


def read_backed(path: str | Path) -> ad.AnnData:
    """The screen as a backed AnnData (``X`` stays on disk)."""
    return ad.read_h5ad(path, backed="r")
