"""Each artifact's effect on genes (issue 19): the simulator's true effects against an independent
computation, and the figure (one panel per artifact, the truth beside the matching criterion)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cradlekit import pl
from cradlekit.data import simulate_perturbseq, true_clean_frequencies
from cradlekit.evaluate import gene_classes, true_artifact_effects


@pytest.fixture(scope="module")
def screen():
    adata = simulate_perturbseq(n_cells=1200, n_genes=150, true_ate_cells=20, seed=1)
    adata.obs["artifact_k3"] = adata.obs["true_artifact"].astype(np.uint8)  # QC stand-in: the true artifacts
    return adata


def test_true_effects_boost_exactly_their_gene_group(screen):
    truth = true_artifact_effects(screen, k=3, max_cells=10_000)
    assert list(truth.index) == ["low_umi", "high_mito", "high_ribo", "high_hb"]
    np.testing.assert_allclose(truth.loc["low_umi"], 0.0, atol=1e-12)  # depth, not composition
    classes = screen.var["gene_class"].astype(str).to_numpy()
    cells = np.flatnonzero(screen.obs["true_artifact_type"].astype(str).eq("high_mito").to_numpy())
    clean = true_clean_frequencies(screen, cells)
    boosted = clean * np.where(classes == "mt", screen.obs["true_artifact_strength"].to_numpy()[cells, None], 1.0)
    boosted /= boosted.sum(1, keepdims=True)
    by_hand = (np.log2(1e4 * boosted + 1) - np.log2(1e4 * clean + 1)).mean(0)
    np.testing.assert_allclose(truth.loc["high_mito"].to_numpy(), by_hand, rtol=1e-10)
    assert (truth.loc["high_mito"][classes == "mt"] > 0).all() and (truth.loc["high_mito"][classes != "mt"] < 0).all()


def test_gene_classes_follow_the_qc_gene_sets():
    out = gene_classes(["MT-CO1", "RPL13A", "RPS6KA1", "HBB", "HBEGF", "KLF1"])
    assert out.tolist() == ["mt", "ribo", "other", "hb", "other", "other"]


def test_figure_has_a_panel_per_artifact_and_the_truth_beside_its_criterion(screen):
    truth = true_artifact_effects(screen, k=3)
    effects = pd.DataFrame(0.5 * truth.loc[["high_mito", "high_hb"]].to_numpy(), columns=screen.var_names,
                           index=["mito", "hb"])
    effects.loc["doublet"] = 0.1
    fig = pl.artifact_effects(effects, truth=truth, gene_class=screen.var["gene_class"].astype(str), top=2)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Mitochondrial %", "Hemoglobin %", "Doublets"]
    rings = [sum(c.get_facecolors().size == 0 for c in ax.collections) for ax in axes]
    assert rings[0] > 0 and rings[1] > 0 and rings[2] == 0  # doublets have no truth
    assert len(axes[0].texts) == 2
    with pytest.raises(ValueError, match="no artifact effects"):
        pl.artifact_effects(effects.iloc[:0])
