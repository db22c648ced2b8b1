"""Fresh artifact-free cells from a simulated screen's true generative process.

:func:`~cradlekit.data.simulate_perturbseq` records its truth in ``uns['simulation']`` (decoder,
gene baseline, perturbation effects) and ``var['true_inverse_dispersion']``. From it,
:func:`simulate_clean_cells` draws new cells exactly as the simulator draws a clean cell, at a
chosen library size: what a perfect generative model of artifact-free cells would produce. Their
QC pass rate under the data's thresholds is the ceiling of a model's QCPR, which QC-passed data
cells are not: they passed those thresholds by selection, while truly clean cells fail them at
the rate the thresholds' tails allow.

:func:`true_clean_frequencies` gives each observed cell's clean expected expression: the gene
frequencies of its own basal state and perturbation before its artifact was injected, computed on
demand from ``obsm['true_basal']`` and ``uns['simulation']`` (nothing cells x genes is stored).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import PERTURBATION_KEY, UNS_KEY
from ..errors import MissingKeyError
from .perturbations import canonical_label, parse_perturbation

__all__ = ["simulate_clean_cells", "true_clean_frequencies"]


def simulate_clean_cells(
    adata: AnnData,
    perturbations: Sequence[str],
    *,
    n: int = 100,
    library_size: float = 1e4,
    seed: int = 0,
) -> AnnData:
    """Draw ``n`` artifact-free cells per perturbation from the simulator's true process.

    Parameters
    ----------
    adata
        A screen from :func:`~cradlekit.data.simulate_perturbseq` (after an h5ad round trip too).
    perturbations
        Labels to draw (the control label gives control cells).
    n
        Cells per perturbation.
    library_size
        Expected total count of every cell (generated cells use 1e4).
    seed
        Seed of the draws.

    Returns
    -------
    AnnData
        Integer counts (CSR), ``obs[perturbation_key]`` and the genes of ``adata``; ``uns['cradlekit']``
        copied so that QC functions find the keys.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        ``adata`` is not a simulated screen, or a label is not one of its perturbations.
    ValueError
        The screen has several cell states (their centres are not recorded) or ``n < 1``.
    """
    sim = adata.uns.get("simulation")
    if not isinstance(sim, dict) or "decoder_weight" not in sim or "true_inverse_dispersion" not in adata.var:
        raise MissingKeyError("simulate_clean_cells needs a screen from cradlekit.data.simulate_perturbseq "
                              "(uns['simulation'] and var['true_inverse_dispersion'])")
    params = sim.get("params", {})
    if int(params.get("n_cell_states", 1)) > 1:
        raise ValueError("simulate_clean_cells supports screens with one cell state (n_cell_states=1)")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    meta = adata.uns.get(UNS_KEY, {})
    key = meta.get("perturbation_key", PERTURBATION_KEY)
    control = meta.get("control_label", "control")
    labels = [str(p) for p in np.asarray(sim["perturbations"]).astype(str)]
    index = {canonical_label(parse_perturbation(p, control_label=control), control_label=control): i
             for i, p in enumerate(labels)}
    wanted = [canonical_label(parse_perturbation(str(p), control_label=control), control_label=control)
              for p in perturbations]
    unknown = [p for p in wanted if p not in index]
    if unknown:
        raise MissingKeyError(f"not perturbations of this simulated screen: {unknown[:10]}")
    W = np.asarray(sim["decoder_weight"], dtype=np.float64)
    baseline = np.asarray(sim["gene_logit_baseline"], dtype=np.float64)
    z_p = np.asarray(sim["perturbation_effects"], dtype=np.float64)
    simulated_genes = pd.Index(np.asarray(sim.get("true_ate_genes", adata.var_names)).astype(str))
    if len(simulated_genes) != W.shape[1]:
        simulated_genes = pd.Index(adata.var_names.astype(str))
    columns = simulated_genes.get_indexer(adata.var_names.astype(str))
    if (columns < 0).any() or len(simulated_genes) != W.shape[1]:
        raise MissingKeyError("simulate_clean_cells: the screen's genes are not among the simulated genes")
    # a screen written on a panel (a subset of the simulated genes): expression over the panel,
    # renormalised to the library size, as generated cells on that panel are
    theta = adata.var["true_inverse_dispersion"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng([int(seed), 7])
    blocks, obs_labels = [], []
    for p in wanted:
        z = rng.standard_normal((int(n), W.shape[0])) + z_p[index[p]]
        logits = z @ W + baseline
        logits -= logits.max(axis=1, keepdims=True)
        rate = np.exp(logits)[:, columns]
        rate *= float(library_size) / rate.sum(axis=1, keepdims=True)
        blocks.append(sp.csr_matrix(rng.poisson(rng.gamma(theta, rate / theta)).astype(np.int32)))
        obs_labels += [p] * int(n)
    obs = pd.DataFrame({key: pd.Categorical(obs_labels)}, index=[f"truth{i:06d}" for i in range(len(obs_labels))])
    out = AnnData(X=sp.vstack(blocks, format="csr"), obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
    out.uns[UNS_KEY] = dict(meta)
    out.uns["generation"] = {"source": "simulator truth", "library_size": float(library_size), "values": "counts"}
    return out


def _truth(adata: AnnData) -> dict:
    sim = adata.uns.get("simulation")
    if not isinstance(sim, dict) or "decoder_weight" not in sim or "true_basal" not in adata.obsm:
        raise MissingKeyError("the truth of a cell needs a screen from cradlekit.data.simulate_perturbseq "
                              "(uns['simulation'] and obsm['true_basal'])")
    return sim


def true_clean_frequencies(adata: AnnData, cells=None) -> np.ndarray:
    """Each cell's clean expected gene frequencies: ``softmax(W^T (z_b + z_p) + baseline)`` before its artifact.

    For a simulated cell with basal state ``z_b`` (``obsm['true_basal']``) and perturbation effect
    ``z_p`` (``uns['simulation']['perturbation_effects']`` of its label) this is the expected share of
    each gene in its counts had no artifact been injected: a low-UMI cell keeps its composition (only
    its depth shrank), a mitochondrial, ribosomal or hemoglobin outlier loses the boost of that gene
    group, and a doublet is its own cell without the partner's counts. Multiply by a library size for
    expected counts.

    Parameters
    ----------
    adata
        A screen from :func:`~cradlekit.data.simulate_perturbseq` (any subset of its cells, also
        after an h5ad round trip; labels in ``obs[perturbation_key]``).
    cells
        Positions, a boolean mask or obs names of the cells (``None``: all; mind memory, the result
        is dense ``cells x genes`` float64).

    Returns
    -------
    numpy.ndarray
        ``(n_cells, n_genes)`` float64, genes in ``adata.var_names`` order, rows summing to 1
        (renormalised over the genes of ``adata`` when it holds a subset of the simulated ones).

    Raises
    ------
    cradlekit.errors.MissingKeyError
        ``adata`` is not a simulated screen, or a cell's label is not one of its perturbations.
    """
    sim = _truth(adata)
    meta = adata.uns.get(UNS_KEY, {})
    key = meta.get("perturbation_key", PERTURBATION_KEY)
    if cells is None:
        rows = np.arange(adata.n_obs)
    else:
        arr = np.asarray(cells)
        rows = (np.flatnonzero(arr) if arr.dtype == bool else
                adata.obs_names.get_indexer(arr.astype(str)) if arr.dtype.kind in "OUS" else arr.astype(np.int64))
        if (rows < 0).any():
            raise MissingKeyError(f"{int((rows < 0).sum())} cell names not in adata.obs_names")
    labels = [str(p) for p in np.asarray(sim["perturbations"]).astype(str)]
    index = {p: i for i, p in enumerate(labels)}
    obs_labels = adata.obs[key].astype(str).to_numpy()[rows]
    unknown = sorted(set(obs_labels) - set(index))
    if unknown:
        raise MissingKeyError(f"labels that are not perturbations of this simulated screen: {unknown[:10]}")
    W = np.asarray(sim["decoder_weight"], dtype=np.float64)
    genes = np.asarray(sim.get("true_ate_genes", adata.var_names)).astype(str)
    order = pd.Index(genes).get_indexer(adata.var_names.astype(str))
    if (order < 0).any():
        raise MissingKeyError("adata has genes the simulation does not know")
    z = np.asarray(adata.obsm["true_basal"], dtype=np.float64)[rows]
    z = z + np.asarray(sim["perturbation_effects"], dtype=np.float64)[[index[p] for p in obs_labels]]
    logits = z @ W + np.asarray(sim["gene_logit_baseline"], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    freq = np.exp(logits)
    freq /= freq.sum(axis=1, keepdims=True)
    return freq[:, order] / freq[:, order].sum(axis=1, keepdims=True)
