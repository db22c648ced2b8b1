"""The steps of :func:`cradlekit.data.simulate_perturbseq`: perturbation effects, genes, cells, counts and
the ground-truth ATE, each drawing from the simulator's generator in a fixed order (the order is part
of the output: a seed gives the same data in every version)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations as _pairs

import numpy as np
import scipy.sparse as sp

from .._keys import CONTROL_LABEL
from .perturbations import canonical_label

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
#: Gene groups whose share of counts is set, and the artifact that boosts each.
QC_GROUPS = ("mt", "ribo", "hb")
_BOOSTED_GROUP = (("high_mito", "mt"), ("high_ribo", "ribo"), ("high_hb", "hb"))


def check_options(
    artifact_mix: Mapping[str, float] | None, *, artifact_rate: float, n_single: int, n_combinations: int,
    n_cell_states: int, n_null_targets: int,
) -> dict[str, float]:
    """The artifact mix (default :data:`DEFAULT_ARTIFACT_MIX`), after checking the simulator's options."""
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
    return mix


def log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def nb_counts(rng: np.random.Generator, rate: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Gamma–Poisson draws with mean ``rate`` and per-gene inverse dispersion ``theta`` (broadcast on columns)."""
    return rng.poisson(rng.gamma(theta, rate / theta))


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, in place."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


# ---------------------------------------------------------------------------------------- perturbations
@dataclass
class Perturbations:
    """Targets, combinations and every label's latent effect ``z_p`` (control first, then singles, then pairs)."""

    targets: list[str]
    combinations: list[str]
    masks: np.ndarray
    is_null: np.ndarray
    effects: np.ndarray
    interactions: np.ndarray
    labels: list[str]
    z_p: np.ndarray


def draw_perturbations(
    rng: np.random.Generator, *, n_single: int, n_combinations: int, latent_dim: int, effect_sparsity: float,
    effect_scale: float, interaction_scale: float, n_null_targets: int,
) -> Perturbations:
    """Sparse latent effects of the single targets (the last ``n_null_targets`` without any) and of the
    drawn pairs (the sum of their targets' effects plus an optional sparse interaction)."""
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
    combo_effects = effects[pair_idx[:, 0]] + effects[pair_idx[:, 1]] + interactions
    z_p = np.vstack([np.zeros((1, latent_dim)), effects, combo_effects])
    return Perturbations(targets=targets, combinations=combos, masks=masks, is_null=is_null, effects=effects,
                         interactions=interactions, labels=[CONTROL_LABEL, *targets, *combos], z_p=z_p)


# ------------------------------------------------------------------------------------------------ genes
@dataclass
class Genes:
    """The gene panel and the decoder: names, classes, baseline shares and logits, weights, dispersions."""

    names: np.ndarray
    classes: np.ndarray
    share: np.ndarray
    baseline: np.ndarray
    W: np.ndarray
    theta: np.ndarray

    def columns(self, group: str) -> np.ndarray:
        """Columns of the genes of class ``group``."""
        return np.flatnonzero(self.classes == group)

    def rates(self, z: np.ndarray) -> np.ndarray:
        """Softmax over genes of the decoder's logits for latents ``z`` (cells × D)."""
        return softmax_rows(z @ self.W + self.baseline)


def gene_panel(n_genes: int, targets: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def draw_genes(
    rng: np.random.Generator, *, n_genes: int, targets: list[str], latent_dim: int,
    group_fractions: Mapping[str, float], decoder_scale: float, qc_gene_coupling: float, dispersion_median: float,
) -> Genes:
    """The panel, baseline shares (``group_fractions`` of counts in the MT, ribosomal and hemoglobin
    genes), a random linear decoder (damped by ``qc_gene_coupling`` on those genes) and ``θ_g``."""
    names, classes = gene_panel(n_genes, targets, rng)
    share = np.exp(rng.normal(0.0, 1.2, n_genes))
    rest = 1.0 - sum(group_fractions.values())
    for cls in QC_GROUPS:  # loop over gene groups
        sel = classes == cls
        share[sel] *= group_fractions[cls] / share[sel].sum()
    other = ~np.isin(classes, list(group_fractions))
    share[other] *= rest / share[other].sum()
    W = rng.normal(0.0, decoder_scale / np.sqrt(latent_dim), (latent_dim, n_genes))
    W[:, ~other] *= qc_gene_coupling
    theta = np.exp(rng.normal(np.log(dispersion_median), 0.5, n_genes))
    return Genes(names=names, classes=classes, share=share, baseline=np.log(share), W=W, theta=theta)


# ------------------------------------------------------------------------------------------------ cells
@dataclass
class Cells:
    """Per cell: label code, basal state, library size, artifact type and strength, state; doublet partners."""

    codes: np.ndarray
    z_b: np.ndarray
    lib: np.ndarray
    art_type: np.ndarray
    strength: np.ndarray
    doublet: np.ndarray
    partner_code: np.ndarray
    partner_z: np.ndarray
    partner_lib: np.ndarray
    state: np.ndarray
    centres: np.ndarray
    n_artifacts: int

    @property
    def true_library_size(self) -> np.ndarray:
        """Expected total UMIs (a doublet's is the sum of both cells')."""
        true_lib = self.lib.copy()
        true_lib[self.doublet] += self.partner_lib
        return true_lib


def _label_codes(rng: np.random.Generator, n_cells: int, n_labels: int, control_weight: float) -> np.ndarray:
    """Each cell's label (0 = control, with ``control_weight`` shares; one share for every other label)."""
    weights = np.r_[control_weight, np.ones(n_labels - 1)]
    counts_per = np.floor(n_cells * weights / weights.sum()).astype(int)
    counts_per[rng.choice(n_labels, n_cells - counts_per.sum(), replace=False)] += 1
    return rng.permutation(np.repeat(np.arange(n_labels), counts_per))


def _artifacts(rng: np.random.Generator, n_cells: int, artifact_rate: float, mix: Mapping[str, float]):
    """``(type, strength, number of artifacts)``: the artifact type of every cell (index into
    :data:`ARTIFACT_TYPES`, types split by ``mix`` with largest remainders) and its fold factor."""
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
        strength[sel] = log_uniform(rng, lo, hi, sel.size)
    return art_type, strength, n_art


def draw_cells(
    rng: np.random.Generator, *, n_cells: int, n_labels: int, latent_dim: int, control_weight: float,
    library_size_median: float, library_size_sigma: float, artifact_rate: float, mix: Mapping[str, float],
    n_cell_states: int, state_separation: float,
) -> Cells:
    """Labels, basal states, library sizes (shrunk for ``low_umi``), artifacts and doublet partners;
    cell states are drawn last, so the stream of the default (one state) is unchanged."""
    codes = _label_codes(rng, n_cells, n_labels, control_weight)
    z_b = rng.standard_normal((n_cells, latent_dim))
    lib = library_size_median * np.exp(rng.normal(0.0, library_size_sigma, n_cells))
    art_type, strength, n_art = _artifacts(rng, n_cells, artifact_rate, mix)
    lib = np.where(art_type == ARTIFACT_TYPES.index("low_umi"), lib / strength, lib)
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
    return Cells(codes=codes, z_b=z_b, lib=lib, art_type=art_type, strength=strength, doublet=doublet,
                 partner_code=partner_code, partner_z=partner_z, partner_lib=partner_lib, state=state,
                 centres=centres, n_artifacts=n_art)


# ----------------------------------------------------------------------------------------------- counts
def _chunk_counts(
    rng: np.random.Generator, cells: Cells, genes: Genes, z_p: np.ndarray, start: int, stop: int
) -> np.ndarray:
    """Counts of cells ``start:stop``: QC-group boosts, NB draws, and each doublet's partner added."""
    logits = (cells.z_b[start:stop] + z_p[cells.codes[start:stop]]) @ genes.W + genes.baseline
    at = cells.art_type[start:stop]
    log_boost = np.log(cells.strength)
    for name, group in _BOOSTED_GROUP:  # 3 artifact groups
        rows = np.flatnonzero(at == ARTIFACT_TYPES.index(name))
        logits[np.ix_(rows, genes.columns(group))] += log_boost[start + rows, None]
    rate = softmax_rows(logits)
    rate *= cells.lib[start:stop, None]
    counts = nb_counts(rng, rate, genes.theta)
    del rate, logits
    d_sel = np.flatnonzero((cells.doublet >= start) & (cells.doublet < stop))
    if d_sel.size:
        p_rate = genes.rates(cells.partner_z[d_sel] + z_p[cells.partner_code[d_sel]])
        counts[cells.doublet[d_sel] - start] += nb_counts(rng, p_rate * cells.partner_lib[d_sel, None], genes.theta)
    return counts


def draw_counts(seed: int, cells: Cells, genes: Genes, z_p: np.ndarray, chunk_size: int) -> sp.csr_matrix:
    """The CSR int32 count matrix, ``chunk_size`` cells at a time, each chunk with its own seeded stream."""
    n_cells = cells.codes.size
    chunk_seeds = np.random.SeedSequence([seed, 1]).spawn(max(1, math.ceil(n_cells / chunk_size)))
    blocks = []
    for c, start in enumerate(range(0, n_cells, chunk_size)):  # loop over chunks of cells
        stop = min(start + chunk_size, n_cells)
        counts = _chunk_counts(np.random.default_rng(chunk_seeds[c]), cells, genes, z_p, start, stop)
        blocks.append(sp.csr_matrix(counts.astype(np.int32)))
        del counts
    return sp.vstack(blocks, format="csr", dtype=np.int32) if len(blocks) > 1 else blocks[0]


def true_ate(
    seed: int, genes: Genes, z_p: np.ndarray, *, n_cells: int, n_cell_states: int, centres: np.ndarray
) -> np.ndarray:
    """Expected ATE of artifact-free cells at library size 1e4 in ``log2(1e4·x/Σx + 1)`` (non-control
    labels × genes), by Monte Carlo with the same basal states and random stream for every label."""
    metric_means = np.empty((z_p.shape[0], genes.W.shape[1]))
    for k in range(z_p.shape[0]):  # loop over perturbations; identical stream each time (CRN)
        arng = np.random.default_rng([seed, 2])
        zs = arng.standard_normal((n_cells, z_p.shape[1]))
        if n_cell_states > 1:  # the same states for every perturbation (common random numbers)
            zs += centres[np.random.default_rng([seed, 3]).integers(0, n_cell_states, n_cells)]
        rate = genes.rates(zs + z_p[k]) * 1e4
        x = nb_counts(arng, rate, genes.theta)
        tot = np.maximum(x.sum(axis=1, keepdims=True), 1)
        metric_means[k] = np.log2(1e4 * x / tot + 1.0).mean(axis=0)
    return metric_means[1:] - metric_means[0]
