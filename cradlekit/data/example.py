"""A simulated screen written the way real own data often looks, to try the "own data" steps on.

:func:`write_example_screen` writes an ``.h5ad`` that is *not* in the cradlekit convention: the
perturbation column is ``guide`` with control ``non-targeting``, combinations are written in
either order (``B+A`` next to ``A+B``), the genes are a panel without mitochondrial genes, and the
full-transcriptome QC metrics are in ``obs`` as ``total_counts_full``, ``n_genes_full`` and
``pct_counts_mt_full`` - the layout of the README's "Your own data" section.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._keys import CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .simulate import simulate_perturbseq

__all__ = ["write_example_screen", "EXAMPLE_QC_METRICS"]

#: The ``qc_metrics`` of :func:`write_example_screen`'s file (scanpy metric -> obs column).
EXAMPLE_QC_METRICS = {
    "total_counts": "total_counts_full", "n_genes_by_counts": "n_genes_full", "pct_counts_mt": "pct_counts_mt_full",
}


def write_example_screen(
    path: str | os.PathLike, *, n_cells: int = 2000, n_genes: int = 200, n_combinations: int = 16, seed: int = 0
) -> Path:
    """Simulate a screen (:func:`~cradlekit.data.simulate_perturbseq`) and write it as "own data".

    Parameters
    ----------
    path
        The ``.h5ad`` file written.
    n_cells, n_genes, n_combinations, seed
        Passed to the simulator; the panel keeps every simulated gene except the ``MT-`` genes.
        ``n_combinations=0`` writes a single-perturbation screen (one target per cell).

    Returns
    -------
    pathlib.Path
        ``path``. The file has raw counts in ``X``; ``obs['guide']`` (control
        ``non-targeting``, about half the combinations written ``B+A``); ``obs``
        ``total_counts_full``, ``n_genes_full``, ``pct_counts_mt_full`` (computed on all simulated
        genes, before the MT genes were removed); the simulator's truth in ``uns['simulation']``.
    """
    from ..qc.metrics import compute_metrics

    full = simulate_perturbseq(n_cells=n_cells, n_genes=n_genes, n_combinations=n_combinations, seed=seed)
    metrics = compute_metrics(full, warn_missing=False).table
    rng = np.random.default_rng(seed)
    labels = full.obs[PERTURBATION_KEY].astype(str)
    flip = {u: "+".join(reversed(u.split("+"))) if "+" in u and rng.random() < 0.5 else u for u in labels.unique()}
    panel = full[:, ~full.var_names.str.upper().str.startswith("MT-")].copy()
    obs = panel.obs.drop(columns=[PERTURBATION_KEY])
    obs.insert(0, "guide", labels.map(flip).replace({CONTROL_LABEL: "non-targeting"}).to_numpy())
    for metric, column in EXAMPLE_QC_METRICS.items():
        obs[column] = metrics[metric].to_numpy()
    panel.obs = obs
    del panel.uns[UNS_KEY]  # own data carries no cradlekit set-up
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panel.write_h5ad(path)
    return path
