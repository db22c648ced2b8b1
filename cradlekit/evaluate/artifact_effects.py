"""What each artifact latent does to genes, and (on the simulator) what each injected artifact did.

:func:`artifact_gene_effects` generates cells of one perturbation twice from the same draws of the
basal and perturbation latents, once artifact-free (Algorithm 3) and once with one artifact switched
on, and averages the difference of their expected expression in the metric space
``log2(1e4 p + 1)``: the model's picture of that artifact, gene by gene. A per-criterion model
(``artifact_latent="per_criterion"``) gives one row per QC criterion; the paper's single ``u`` one row.

:func:`true_artifact_effects` is the same quantity for the artifacts that a simulated screen
injected, computed from its truth for the QC-failed cells of each type: the clean frequencies of
each cell, and the same frequencies with its own boost of the mitochondrial, ribosomal or
hemoglobin genes. A low-UMI artifact changes depth, not composition (a row of zeros); a doublet's
partner is not recorded, so doublets have no row.

:func:`gene_classes` names the gene group of every gene (``mt``, ``ribo``, ``hb``, ``other``) for
the plots.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import artifact_key as _artifact_key
from ..data.simulate_truth import true_clean_frequencies

__all__ = ["artifact_gene_effects", "true_artifact_effects", "gene_classes", "CRITERION_OF_ARTIFACT"]

#: The QC criterion that each simulated artifact type is meant to fail.
CRITERION_OF_ARTIFACT = {"low_umi": "total_counts", "high_mito": "mito", "high_ribo": "ribo", "high_hb": "hb",
                         "doublet": "doublet"}
_BOOSTED = {"high_mito": "mt", "high_ribo": "ribo", "high_hb": "hb"}


def _log_metric(values: np.ndarray) -> np.ndarray:
    total = values.sum(axis=1, keepdims=True)
    return np.log2(1e4 * values / np.where(total > 0, total, 1.0) + 1.0)


def artifact_gene_effects(
    model: Any, perturbation: str | None = None, *, n: int = 500, seed: int = 0, criteria: list[str] | None = None,
) -> pd.DataFrame:
    """Mean change of each gene when one artifact latent is switched on, for cells of one perturbation.

    Parameters
    ----------
    model
        A trained CRADLE-VAE :class:`~cradlekit.PerturbationModel`.
    perturbation
        The cells' perturbation (``None``: the control label).
    n
        Generated cells (the same draws of ``z_b`` and ``z_p`` with the artifact off and on).
    seed
        Seed of the draws.
    criteria
        Per-criterion models: the criteria to show (``None``: every criterion with a latent).

    Returns
    -------
    pandas.DataFrame
        One row per criterion (``"artifact"`` for the single ``u``), one column per gene: the mean
        over cells of ``log2(1e4 p_on + 1) - log2(1e4 p_off + 1)``.

    Raises
    ------
    ValueError
        The model has no artifact latent, or criteria it has no latent for.
    """
    if not getattr(model.module, "has_artifact", False):
        raise ValueError(f"{type(model.module).__name__} has no artifact latent")
    label = model.registry["control_label"] if perturbation is None else str(perturbation)
    have = list(getattr(model.module, "artifact_criteria", ()))
    rows = list(criteria) if criteria is not None else have
    unknown = sorted(set(rows) - set(have))
    if unknown:
        raise ValueError(f"no artifact latent for {unknown}; the model has {have or 'one artifact latent u'}")
    kwargs = {"n": int(n), "seed": int(seed), "batch_size": int(n)}  # one chunk: the same z draws off and on
    off = _log_metric(np.asarray(model.predict_mean([label], **kwargs).X, dtype=np.float64))
    effects = {}
    for row in rows or ["artifact"]:
        on_kwargs = {"artifacts": [row]} if have else {"artifact": True}
        on = _log_metric(np.asarray(model.predict_mean([label], **kwargs, **on_kwargs).X, dtype=np.float64))
        effects[row] = (on - off).mean(axis=0)
    out = pd.DataFrame(effects, index=pd.Index(model.registry["genes"], name="gene")).T
    out.index.name = "artifact"
    return out


def true_artifact_effects(adata: AnnData, *, k: float = 3, max_cells: int = 500, seed: int = 0) -> pd.DataFrame:
    """The composition effect of each simulated artifact type on genes, for its QC-failed cells.

    Parameters
    ----------
    adata
        A screen from :func:`~cradlekit.data.simulate_perturbseq`, labelled by QC.
    k
        The QC multiple whose failed cells are used (``artifact_k<k>``).
    max_cells
        At most this many cells of each type (a seeded sample).
    seed
        Seed of the sample.

    Returns
    -------
    pandas.DataFrame
        One row per artifact type with a composition effect (``low_umi``, ``high_mito``,
        ``high_ribo``, ``high_hb`` among the failed cells), one column per gene, in the space of
        :func:`artifact_gene_effects`.
    """
    failed = adata.obs[_artifact_key(k)].astype(int).to_numpy() == 1
    types = adata.obs["true_artifact_type"].astype(str).to_numpy()
    strength = adata.obs["true_artifact_strength"].to_numpy(dtype=np.float64)
    classes = adata.var["gene_class"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    out = {}
    for kind in ("low_umi", "high_mito", "high_ribo", "high_hb"):
        cells = np.flatnonzero(failed & (types == kind))
        if cells.size == 0:
            continue
        cells = np.sort(rng.choice(cells, min(cells.size, int(max_cells)), replace=False))
        clean = true_clean_frequencies(adata, cells)
        boosted = clean.copy()
        if kind in _BOOSTED:
            boosted[:, classes == _BOOSTED[kind]] *= strength[cells, None]
        out[kind] = (_log_metric(boosted) - _log_metric(clean)).mean(axis=0)
    frame = pd.DataFrame(out, index=pd.Index(adata.var_names.astype(str), name="gene")).T
    frame.index.name = "artifact"
    return frame


def gene_classes(genes: Any) -> pd.Series:
    """``mt``, ``ribo``, ``hb`` or ``other`` for each gene symbol (the QC gene sets)."""
    from ..qc.genes import hb_mask, mito_mask, ribo_mask

    symbols = pd.Index([str(g) for g in genes])
    out = np.full(len(symbols), "other", dtype=object)
    out[ribo_mask(symbols)] = "ribo"
    out[hb_mask(symbols)] = "hb"
    out[mito_mask(symbols)] = "mt"
    return pd.Series(out, index=symbols, name="gene_class")
