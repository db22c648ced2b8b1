"""A Perturb-seq simulator with known ground truth.

The generative process mirrors the latent structure CRADLE-VAE assumes (see SPEC §3), so a trained
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

import math
from collections.abc import Mapping
from itertools import combinations as _pairs

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._keys import COMBO_SEP, CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .._logging import logger
from .perturbations import canonical_label

__all__ = ["simulate_perturbseq", "true_ate_frame", "ARTIFACT_TYPES", "DEFAULT_ARTIFACT_MIX"]

ARTIFACT_TYPES = ("none", "low_umi", "high_mito", "high_ribo", "high_hb", "doublet")
DEFAULT_ARTIFACT_MIX = {"low_umi": 0.3, "high_mito": 0.25, "high_ribo": 0.15, "high_hb": 0.1, "doublet": 0.2}
#: Fold range (log-uniform) of each artifact: library shrink for ``low_umi``, gene-group rate boost otherwise.
ARTIFACT_STRENGTH = {
    "low_umi": (4.0, 25.0), "high_mito": (1.6, 12.0), "high_ribo": (1.3, 4.0), "high_hb": (8.0, 400.0),
}

MT_GENES = ("MT-ND1", "MT-ND2", "MT-CO1", "MT-CO2", "MT-ATP8", "MT-ATP6", "MT-CO3", "MT-ND3", "MT-ND4L",
            "MT-ND4", "MT-ND5", "MT-ND6", "MT-CYB")
RIBO_GENES = tuple(
    [f"RPL{s}" for s in ("3 4 5 6 7 7A 8 9 10 10A 11 12 13 13A 14 15 17 18 18A 19 21 22 22L1 23 23A 24 26 27 "
                         "27A 28 29 30 31 32 34 35 35A 36 36A 36AL 37 37A 38 39 41 P0 P1 P2").split()]
    + [f"RPS{s}" for s in ("2 3 3A 4X 4Y1 5 6 7 8 9 10 11 12 13 14 15 15A 16 17 18 19 20 21 23 24 25 26 27 "
                           "27A 27L 28 29 A").split()]
)
HB_GENES = ("HBA1", "HBA2", "HBB", "HBD", "HBE1", "HBG1", "HBG2", "HBM", "HBQ1", "HBZ")
DECOY_GENES = ("HBEGF", "HBP1", "HBS1L", "RPS6KA1", "RPS6KB1")
_TARGET_POOL = ("KLF1", "CEBPA", "CEBPB", "CEBPE", "SPI1", "GATA1", "TAL1", "MAP2K3", "MAP2K6", "MAPK1", "TGFBR2",
                "SGK1", "FOXO4", "CBL", "CNN1", "SET", "PTPN12", "PTPN9", "ZBTB10", "BPGM", "SAMD1", "RUNX1T1",
                "ETS2", "JUN", "IRF1", "DUSP9", "ELMSR", "IKZF3", "LHX1", "FOXA1", "FOXA3", "HOXB9", "FOXL2",
                "TBX3", "TBX2", "COL2A1", "CDKN1A", "CDKN1B", "CDKN1C", "PRDM1", "POU3F2", "SNAI1", "ZNF318",
                "UBASH3B", "NCL", "OSR2", "BAK1", "EGR1", "ARRDC3", "CSRNP1")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _gene_panel(n_genes: int, targets: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gene symbols and their class (mt, ribo, hb, decoy, target, other), in a shuffled order."""
    special = [
        (MT_GENES, "mt"), (RIBO_GENES, "ribo"), (HB_GENES, "hb"), (DECOY_GENES, "decoy"), (targets, "target"),
    ]
    names = [g for genes, _ in special for g in genes]
    classes = [c for genes, c in special for _ in genes]
    n_fill = n_genes - len(names)
    if n_fill < 20:
        raise ValueError(f"n_genes={n_genes} is too small: {len(names)} named genes need at least {len(names) + 20}")
    width = max(4, len(str(n_fill)))
    names += [f"GENE{i:0{width}d}" for i in range(1, n_fill + 1)]
    classes += ["other"] * n_fill
    order = rng.permutation(n_genes)
    return np.asarray(names, dtype=object)[order], np.asarray(classes, dtype=object)[order]


def _nb_counts(rng: np.random.Generator, rate: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Gamma–Poisson draws with mean ``rate`` and per-gene inverse dispersion ``theta`` (broadcast on columns)."""
    return rng.poisson(rng.gamma(theta, rate / theta))


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


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
    mix = dict(DEFAULT_ARTIFACT_MIX if artifact_mix is None else artifact_mix)
    unknown = set(mix) - set(ARTIFACT_TYPES[1:])
    if unknown or any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"artifact_mix must map {ARTIFACT_TYPES[1:]} to non-negative weights, got {mix}")
    if not 0 <= artifact_rate < 1:
        raise ValueError(f"artifact_rate must be in [0, 1), got {artifact_rate}")
    if n_combinations > math.comb(n_single, 2):
        raise ValueError(
            f"n_combinations={n_combinations} exceeds the {math.comb(n_single, 2)} pairs of {n_single} targets"
        )
    if n_cell_states < 1:
        raise ValueError(f"n_cell_states must be >= 1, got {n_cell_states}")
    if not 0 <= n_null_targets <= n_single:
        raise ValueError(f"n_null_targets must be in [0, n_single], got {n_null_targets}")
    rng = np.random.default_rng(seed)

    # --- perturbations and their latent effects -------------------------------------------------
    targets = list(_TARGET_POOL[:n_single]) + [f"TARGET{i:03d}" for i in range(len(_TARGET_POOL), n_single)]
    pair_idx = np.array(list(_pairs(range(n_single), 2)), dtype=int).reshape(-1, 2)
    pair_idx = pair_idx[np.sort(rng.choice(len(pair_idx), n_combinations, replace=False))]
    combos = [canonical_label([targets[i], targets[j]]) for i, j in pair_idx]
    masks = rng.random((n_single, latent_dim)) < effect_sparsity
    empty = ~masks.any(axis=1)
    masks[np.flatnonzero(empty), rng.integers(0, latent_dim, empty.sum())] = True
    is_null = np.arange(n_single) >= n_single - n_null_targets
    masks[is_null] = False
    effects = masks * rng.normal(0.0, effect_scale, (n_single, latent_dim))
    interactions = np.zeros((n_combinations, latent_dim))
    if interaction_scale > 0:
        interactions = (rng.random(interactions.shape) < effect_sparsity) * rng.normal(
            0.0, interaction_scale, interactions.shape
        )
    labels = [CONTROL_LABEL, *targets, *combos]
    combo_effects = effects[pair_idx[:, 0]] + effects[pair_idx[:, 1]] + interactions
    z_p = np.vstack([np.zeros((1, latent_dim)), effects, combo_effects])

    # --- genes: names, baseline shares, decoder ----------------------------------------------------
    gene_names, gene_class = _gene_panel(n_genes, targets, rng)
    share = np.exp(rng.normal(0.0, 1.2, n_genes))
    group_total = {"mt": mito_fraction, "ribo": ribo_fraction, "hb": hb_fraction}
    rest = 1.0 - sum(group_total.values())
    for cls in ("mt", "ribo", "hb"):  # loop over gene groups
        sel = gene_class == cls
        share[sel] *= group_total[cls] / share[sel].sum()
    other = ~np.isin(gene_class, list(group_total))
    share[other] *= rest / share[other].sum()
    baseline = np.log(share)
    W = rng.normal(0.0, decoder_scale / np.sqrt(latent_dim), (latent_dim, n_genes))
    W[:, ~other] *= qc_gene_coupling
    theta = np.exp(rng.normal(np.log(dispersion_median), 0.5, n_genes))
    cols = {c: np.flatnonzero(gene_class == c) for c in ("mt", "ribo", "hb")}

    # --- cells: labels, basal states, library sizes, artifacts -------------------------------------
    weights = np.r_[control_weight, np.ones(len(labels) - 1)]
    counts_per = np.floor(n_cells * weights / weights.sum()).astype(int)
    counts_per[rng.choice(len(labels), n_cells - counts_per.sum(), replace=False)] += 1
    codes = rng.permutation(np.repeat(np.arange(len(labels)), counts_per))
    z_b = rng.standard_normal((n_cells, latent_dim))
    lib = library_size_median * np.exp(rng.normal(0.0, library_size_sigma, n_cells))
    kinds = list(mix)
    n_art = int(round(artifact_rate * n_cells))
    probs = np.array([mix[k] for k in kinds]) / sum(mix.values())
    per_kind = np.floor(n_art * probs).astype(int)
    per_kind[np.argsort(-(n_art * probs - per_kind))[: n_art - per_kind.sum()]] += 1
    art_type = np.zeros(n_cells, dtype=np.int8)
    art_cells = rng.permutation(n_cells)[:n_art]
    art_type[art_cells] = np.repeat([ARTIFACT_TYPES.index(k) for k in kinds], per_kind)
    strength = np.ones(n_cells)
    for name, (lo, hi) in ARTIFACT_STRENGTH.items():  # loop over artifact types
        sel = np.flatnonzero(art_type == ARTIFACT_TYPES.index(name))
        strength[sel] = _log_uniform(rng, lo, hi, sel.size)
    lib = np.where(art_type == ARTIFACT_TYPES.index("low_umi"), lib / strength, lib)
    log_boost = np.log(strength)
    doublet = np.flatnonzero(art_type == ARTIFACT_TYPES.index("doublet"))
    partner_code = codes[rng.integers(0, n_cells, doublet.size)]
    partner_z = rng.standard_normal((doublet.size, latent_dim))
    partner_lib = library_size_median * np.exp(rng.normal(0.0, library_size_sigma, doublet.size))
    state = np.zeros(n_cells, dtype=np.int64)
    centres = np.zeros((1, latent_dim))
    if n_cell_states > 1:  # drawn last: the default (one state) stream is unchanged
        centres = rng.normal(0.0, state_separation, (n_cell_states, latent_dim))
        state = rng.integers(0, n_cell_states, n_cells)
        z_b += centres[state]
        partner_z += centres[(state[doublet] + rng.integers(1, n_cell_states, doublet.size)) % n_cell_states]
    true_lib = lib.copy()
    true_lib[doublet] += partner_lib

    # --- counts, chunk by chunk ----------------------------------------------------------------------
    chunk_seeds = np.random.SeedSequence([seed, 1]).spawn(max(1, math.ceil(n_cells / chunk_size)))
    blocks = []
    for c, start in enumerate(range(0, n_cells, chunk_size)):  # loop over chunks of cells
        stop = min(start + chunk_size, n_cells)
        crng = np.random.default_rng(chunk_seeds[c])
        logits = (z_b[start:stop] + z_p[codes[start:stop]]) @ W + baseline
        at = art_type[start:stop]
        for name, group in (("high_mito", "mt"), ("high_ribo", "ribo"), ("high_hb", "hb")):  # 3 artifact groups
            rows = np.flatnonzero(at == ARTIFACT_TYPES.index(name))
            logits[np.ix_(rows, cols[group])] += log_boost[start + rows, None]
        rate = _softmax_rows(logits)
        rate *= lib[start:stop, None]
        counts = _nb_counts(crng, rate, theta)
        del rate, logits
        d_sel = np.flatnonzero((doublet >= start) & (doublet < stop))
        if d_sel.size:
            p_rate = _softmax_rows((partner_z[d_sel] + z_p[partner_code[d_sel]]) @ W + baseline)
            counts[doublet[d_sel] - start] += _nb_counts(crng, p_rate * partner_lib[d_sel, None], theta)
        blocks.append(sp.csr_matrix(counts.astype(np.int32)))
        del counts
    X = sp.vstack(blocks, format="csr", dtype=np.int32) if len(blocks) > 1 else blocks[0]

    # --- ground-truth ATE ------------------------------------------------------------------------------
    metric_means = np.empty((len(labels), n_genes))
    for k in range(len(labels)):  # loop over perturbations; identical stream each time (CRN)
        arng = np.random.default_rng([seed, 2])
        zs = arng.standard_normal((true_ate_cells, latent_dim))
        if n_cell_states > 1:  # the same states for every perturbation (common random numbers)
            zs += centres[np.random.default_rng([seed, 3]).integers(0, n_cell_states, true_ate_cells)]
        rate = _softmax_rows((zs + z_p[k]) @ W + baseline) * 1e4
        x = _nb_counts(arng, rate, theta)
        tot = np.maximum(x.sum(axis=1, keepdims=True), 1)
        metric_means[k] = np.log2(1e4 * x / tot + 1.0).mean(axis=0)
    true_ate = metric_means[1:] - metric_means[0]

    obs = pd.DataFrame(
        {
            PERTURBATION_KEY: pd.Categorical(np.asarray(labels, dtype=object)[codes], categories=labels),
            "true_artifact": art_type > 0,
            "true_artifact_type": pd.Categorical(
                np.asarray(ARTIFACT_TYPES, dtype=object)[art_type], categories=ARTIFACT_TYPES
            ),
            "true_artifact_strength": strength,
            "true_library_size": true_lib,
        },
        index=pd.Index([f"cell{i:06d}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(
        {"gene_class": pd.Categorical(gene_class), "true_baseline": share, "true_inverse_dispersion": theta},
        index=pd.Index(gene_names.astype(str)),
    )
    adata = AnnData(X=X, obs=obs, var=var)
    adata.obsm["true_basal"] = z_b.astype(np.float32)
    if n_cell_states > 1:
        adata.obs["true_cell_state"] = pd.Categorical(state)
    adata.uns[UNS_KEY] = {
        "perturbation_key": PERTURBATION_KEY, "control_label": CONTROL_LABEL, "combo_sep": COMBO_SEP,
        "whole_transcriptome": True,  # every simulated gene is here: QC metrics on X are the full ones
    }
    params = dict(
        n_cells=n_cells, n_genes=n_genes, n_single=n_single, n_combinations=n_combinations, latent_dim=latent_dim,
        n_cell_states=n_cell_states, state_separation=state_separation, effect_sparsity=effect_sparsity, effect_scale=effect_scale, interaction_scale=interaction_scale,
        n_null_targets=n_null_targets, decoder_scale=decoder_scale, qc_gene_coupling=qc_gene_coupling,
        mito_fraction=mito_fraction, ribo_fraction=ribo_fraction, hb_fraction=hb_fraction,
        library_size_median=library_size_median, library_size_sigma=library_size_sigma,
        dispersion_median=dispersion_median, control_weight=control_weight, artifact_rate=artifact_rate,
        artifact_mix={k: float(v) for k, v in mix.items()}, true_ate_cells=true_ate_cells, seed=seed,
        chunk_size=chunk_size,
    )
    adata.uns["simulation"] = {
        "params": params,
        "targets": np.asarray(targets, dtype=str),
        "target_effects": effects,
        "target_masks": masks,
        "target_is_null": is_null,
        "combinations": np.asarray(combos, dtype=str),
        "combination_interactions": interactions,
        "perturbations": np.asarray(labels, dtype=str),
        "perturbation_effects": z_p,
        "decoder_weight": W,
        "gene_logit_baseline": baseline,
        "true_ate": true_ate,
        "true_ate_perturbations": np.asarray(labels[1:], dtype=str),
        "true_ate_genes": np.asarray(adata.var_names, dtype=str),
        "true_ate_method": "monte_carlo_common_random_numbers",
    }
    logger.info(
        "simulated %d cells × %d genes: %d singles, %d combinations, %d artifacts (%.1f%%)",
        n_cells, n_genes, n_single, n_combinations, n_art, 100 * n_art / max(n_cells, 1),
    )
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
