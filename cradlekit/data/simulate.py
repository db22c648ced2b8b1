"""A Perturb-seq simulator with known ground truth.

The generative process mirrors the latent structure CRADLE-VAE assumes (the paper's Eq. (5)), so a trained
model can be checked against the truth:

* basal state ``z_b ~ N(0, I_D)`` per cell (``N(c_s, I_D)`` around the centre of the cell's state ``s`` with
  ``n_cell_states > 1``);
* each single target ``t`` has a sparse latent effect ``e_t ⊙ m_t`` (``m_t ~ Bernoulli``, ``e_t ~ Normal``);
  a combination's effect is the sum of its targets' effects plus an optional interaction (default 0);
* decoder: a fixed random linear map plus gene baseline, softmax over genes, rate = library size × softmax;
* counts ~ negative binomial (Gamma–Poisson) with one inverse dispersion per gene;
* technical artifacts injected into a known subset of cells (low UMI / broken cells, high mitochondrial,
  ribosomal or hemoglobin fraction, doublets), labelled per cell. A doublet adds a second cell's counts;
  with ``n_cell_states > 1`` the partner is of another state (a heterotypic doublet, which scrublet can
  find). With one state (the default) doublets sum two draws of one continuous population and scrublet
  finds almost none of them (measured: 2 of 144 on 4,000 cells; see ``tests/test_qc_recovery.py``).

Target genes are part of the gene panel but carry no separate on-target effect: every perturbation
effect goes through the latent space, so CRADLE-VAE's generative model can represent it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import COMBO_SEP, CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .._logging import logger
from ._simulation_steps import (  # the gene lists and artifact strengths stay importable from here
    ARTIFACT_STRENGTH,  # noqa: F401
    ARTIFACT_TYPES,
    DECOY_GENES,  # noqa: F401
    DEFAULT_ARTIFACT_MIX,
    HB_GENES,  # noqa: F401
    MT_GENES,  # noqa: F401
    RIBO_GENES,  # noqa: F401
    Cells,
    Genes,
    Perturbations,
    check_options,
    draw_cells,
    draw_counts,
    draw_genes,
    draw_perturbations,
    true_ate,
)

__all__ = ["simulate_perturbseq", "true_ate_frame", "ARTIFACT_TYPES", "DEFAULT_ARTIFACT_MIX"]


def simulate_perturbseq(
    *,
    n_cells: int = 5000,
    n_genes: int = 1000,
    n_single: int = 12,
    n_combinations: int = 16,
    latent_dim: int = 10,
    n_cell_states: int = 1,
    state_separation: float = 3.0,
    effect_sparsity: float = 0.25,
    effect_scale: float = 1.0,
    interaction_scale: float = 0.0,
    n_null_targets: int = 1,
    decoder_scale: float = 0.5,
    qc_gene_coupling: float = 0.2,
    mito_fraction: float = 0.05,
    ribo_fraction: float = 0.2,
    hb_fraction: float = 2e-4,
    library_size_median: float = 3000.0,
    library_size_sigma: float = 0.3,
    dispersion_median: float = 8.0,
    control_weight: float = 3.0,
    artifact_rate: float = 0.18,
    artifact_mix: Mapping[str, float] | None = None,
    true_ate_cells: int = 1000,
    seed: int = 0,
    chunk_size: int = 8192,
) -> AnnData:
    """Simulate raw Perturb-seq UMI counts with known perturbation effects and artifact labels.

    Parameters
    ----------
    n_cells, n_genes
        Matrix shape. ``n_genes`` must leave room for the 109 named genes (13 ``MT-``, 81 ``RPS``/``RPL``,
        10 hemoglobin, 5 decoys: HBEGF, HBP1, HBS1L, RPS6KA1, RPS6KB1) plus the targets and 20 filler
        genes (``GENE0001`` …). Genes are listed in a seeded random order.
    n_single, n_combinations
        Number of single targets and of two-target combinations (distinct pairs of the singles).
    latent_dim
        Dimension ``D`` of the basal and perturbation latents.
    n_cell_states, state_separation
        Discrete basal cell states: state centres ``c_s ~ N(0, state_separation² I_D)``, each cell in a
        uniformly drawn state with ``z_b ~ N(c_s, I_D)``, and every doublet the sum of two cells of
        different states. ``true_ate`` averages over the states. 1 (default): one population centred at 0.
    effect_sparsity
        Probability that a latent dimension is affected by a target (each non-null target affects ≥ 1).
    effect_scale
        Standard deviation of the non-zero latent effects.
    interaction_scale
        Standard deviation of a sparse extra latent term per combination; 0 makes combinations exactly additive.
    n_null_targets
        Number of targets (the last ones) with no effect at all — a negative control for effect recovery.
    decoder_scale
        Standard deviation of a gene's logit across basal states (decoder weights ~ N(0, scale²/D)).
    qc_gene_coupling
        Factor on the decoder weights of MT, ribosomal and hemoglobin genes, so that biology moves the QC
        fractions little and the injected artifacts dominate them.
    mito_fraction, ribo_fraction, hb_fraction
        Baseline share of counts in MT, ribosomal and hemoglobin genes of a clean cell.
    library_size_median, library_size_sigma
        Log-normal library sizes (expected total UMIs) of clean cells.
    dispersion_median
        Median per-gene inverse dispersion ``θ_g`` (log-normal across genes, σ = 0.5).
    control_weight
        Control cells relative to each perturbation (controls get ``control_weight`` shares, others one).
    artifact_rate
        Fraction of cells given an artifact.
    artifact_mix
        Relative frequency of each artifact type (keys from ``low_umi, high_mito, high_ribo, high_hb,
        doublet``); default :data:`DEFAULT_ARTIFACT_MIX`. Strengths are drawn log-uniformly from
        :data:`ARTIFACT_STRENGTH`, so a fraction of artifacts is too mild for a 3–5 MAD QC.
    true_ate_cells
        Clean cells simulated per perturbation (common random numbers) to compute ``true_ate``.
    seed
        Seed of every random draw. Output is a deterministic function of all arguments (incl. ``chunk_size``).
    chunk_size
        Cells generated at once; bounds memory (about 5 × chunk_size × n_genes × 8 bytes).

    Returns
    -------
    AnnData with

    ``X``
        CSR matrix of int32 raw counts.
    ``obs['perturbation']``
        Canonical labels (``control``, ``A``, ``A+B``), registered in ``uns['cradlekit']``.
    ``obs['true_artifact']``, ``obs['true_artifact_type']``, ``obs['true_artifact_strength']``
        Artifact truth: a flag, the type (one of :data:`ARTIFACT_TYPES`) and its fold factor (library
        shrink for ``low_umi``, rate boost of the gene group otherwise; 1 for none and doublets).
    ``obs['true_library_size']``
        Expected total UMIs of the cell (after low-UMI shrinkage; a doublet's is the sum of both cells').
    ``obsm['true_basal']``, ``obs['true_cell_state']``
        The basal state ``z_b`` (float32, cells × D); the state index (only with ``n_cell_states > 1``).
    ``var['gene_class']``, ``var['true_baseline']``, ``var['true_inverse_dispersion']``
        Gene class (mt, ribo, hb, decoy, target, other), baseline share and ``θ_g``.
    ``uns['simulation']``
        ``params``; ``targets``, ``target_effects`` (targets × D, zero where masked), ``target_masks``,
        ``target_is_null``; ``combinations``, ``combination_interactions``; ``perturbations`` and
        ``perturbation_effects`` (every label's ``z_p``); ``decoder_weight`` (D × genes),
        ``gene_logit_baseline``; ``true_ate`` (non-control perturbations × genes), ``true_ate_perturbations``,
        ``true_ate_genes``, ``true_ate_method``. ``true_ate`` is the expected ATE of artifact-free cells at
        library size 1e4 in the metric space ``log2(1e4·x/Σx + 1)``, by Monte Carlo: ``true_ate_cells``
        NB-sampled cells per perturbation with the **same** basal states and random stream for every
        perturbation (common random numbers), so targets without effect get exactly 0.
        See :func:`true_ate_frame`.
    """
    mix = check_options(artifact_mix, artifact_rate=artifact_rate, n_single=n_single, n_combinations=n_combinations,
                        n_cell_states=n_cell_states, n_null_targets=n_null_targets)
    rng = np.random.default_rng(seed)
    perts = draw_perturbations(rng, n_single=n_single, n_combinations=n_combinations, latent_dim=latent_dim,
                               effect_sparsity=effect_sparsity, effect_scale=effect_scale,
                               interaction_scale=interaction_scale, n_null_targets=n_null_targets)
    genes = draw_genes(rng, n_genes=n_genes, targets=perts.targets, latent_dim=latent_dim,
                       group_fractions={"mt": mito_fraction, "ribo": ribo_fraction, "hb": hb_fraction},
                       decoder_scale=decoder_scale, qc_gene_coupling=qc_gene_coupling,
                       dispersion_median=dispersion_median)
    cells = draw_cells(rng, n_cells=n_cells, n_labels=len(perts.labels), latent_dim=latent_dim,
                       control_weight=control_weight, library_size_median=library_size_median,
                       library_size_sigma=library_size_sigma, artifact_rate=artifact_rate, mix=mix,
                       n_cell_states=n_cell_states, state_separation=state_separation)
    X = draw_counts(seed, cells, genes, perts.z_p, chunk_size)
    ate = true_ate(seed, genes, perts.z_p, n_cells=true_ate_cells, n_cell_states=n_cell_states,
                   centres=cells.centres)
    adata = _assemble(X, perts, genes, cells, ate, n_cell_states=n_cell_states)
    adata.uns["simulation"]["params"] = dict(
        n_cells=n_cells, n_genes=n_genes, n_single=n_single, n_combinations=n_combinations, latent_dim=latent_dim,
        n_cell_states=n_cell_states, state_separation=state_separation, effect_sparsity=effect_sparsity,
        effect_scale=effect_scale, interaction_scale=interaction_scale,
        n_null_targets=n_null_targets, decoder_scale=decoder_scale, qc_gene_coupling=qc_gene_coupling,
        mito_fraction=mito_fraction, ribo_fraction=ribo_fraction, hb_fraction=hb_fraction,
        library_size_median=library_size_median, library_size_sigma=library_size_sigma,
        dispersion_median=dispersion_median, control_weight=control_weight, artifact_rate=artifact_rate,
        artifact_mix={k: float(v) for k, v in mix.items()}, true_ate_cells=true_ate_cells, seed=seed,
        chunk_size=chunk_size,
    )
    n_art = cells.n_artifacts
    logger.info(
        "simulated %d cells × %d genes: %d singles, %d combinations, %d artifacts (%.1f%%)",
        n_cells, n_genes, n_single, n_combinations, n_art, 100 * n_art / max(n_cells, 1),
    )
    return adata


def _assemble(X, perts: Perturbations, genes: Genes, cells: Cells, ate: np.ndarray, *, n_cell_states: int) -> AnnData:
    """The AnnData of the simulation: counts, truth in ``obs``/``var``/``obsm`` and ``uns['simulation']``
    (without ``params``)."""
    labels = perts.labels
    obs = pd.DataFrame(
        {
            PERTURBATION_KEY: pd.Categorical(np.asarray(labels, dtype=object)[cells.codes], categories=labels),
            "true_artifact": cells.art_type > 0,
            "true_artifact_type": pd.Categorical(
                np.asarray(ARTIFACT_TYPES, dtype=object)[cells.art_type], categories=ARTIFACT_TYPES
            ),
            "true_artifact_strength": cells.strength,
            "true_library_size": cells.true_library_size,
        },
        index=pd.Index([f"cell{i:06d}" for i in range(cells.codes.size)]),
    )
    var = pd.DataFrame(
        {"gene_class": pd.Categorical(genes.classes), "true_baseline": genes.share,
         "true_inverse_dispersion": genes.theta},
        index=pd.Index(genes.names.astype(str)),
    )
    adata = AnnData(X=X, obs=obs, var=var)
    adata.obsm["true_basal"] = cells.z_b.astype(np.float32)
    if n_cell_states > 1:
        adata.obs["true_cell_state"] = pd.Categorical(cells.state)
    adata.uns[UNS_KEY] = {
        "perturbation_key": PERTURBATION_KEY, "control_label": CONTROL_LABEL, "combo_sep": COMBO_SEP,
        "whole_transcriptome": True,  # every simulated gene is here: QC metrics on X are the full ones
    }
    adata.uns["simulation"] = {
        "params": {},
        "targets": np.asarray(perts.targets, dtype=str),
        "target_effects": perts.effects,
        "target_masks": perts.masks,
        "target_is_null": perts.is_null,
        "combinations": np.asarray(perts.combinations, dtype=str),
        "combination_interactions": perts.interactions,
        "perturbations": np.asarray(labels, dtype=str),
        "perturbation_effects": perts.z_p,
        "decoder_weight": genes.W,
        "gene_logit_baseline": genes.baseline,
        "true_ate": ate,
        "true_ate_perturbations": np.asarray(labels[1:], dtype=str),
        "true_ate_genes": np.asarray(adata.var_names, dtype=str),
        "true_ate_method": "monte_carlo_common_random_numbers",
    }
    return adata


def true_ate_frame(adata: AnnData) -> pd.DataFrame:
    """The simulator's ground-truth ATE as a DataFrame (perturbations × genes).

    Parameters
    ----------
    adata
        Output of :func:`simulate_perturbseq` (possibly after an h5ad round trip).

    Returns
    -------
    DataFrame indexed by ``uns['simulation']['true_ate_perturbations']`` with gene columns.
    """
    sim = adata.uns["simulation"]
    return pd.DataFrame(
        np.asarray(sim["true_ate"]),
        index=pd.Index(np.asarray(sim["true_ate_perturbations"]).astype(str), name="perturbation"),
        columns=pd.Index(np.asarray(sim["true_ate_genes"]).astype(str)),
    )
