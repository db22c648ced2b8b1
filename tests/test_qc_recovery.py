"""Statistical check: QC labels recover the simulator's injected artifacts; scrublet chunking; small panels."""

from __future__ import annotations

import numpy as np
import pytest

from cradlekit.data import load_dataset, simulate_perturbseq
from cradlekit.evaluate import artifact_recovery
from cradlekit.qc import label_artifacts
from cradlekit.qc.doublets import _chunk_labels


@pytest.fixture(scope="module")
def labelled_simulation():
    adata = simulate_perturbseq(n_cells=4000, n_genes=600, seed=0)
    label_artifacts(adata, seed=0)
    return adata


def test_qc_recovers_injected_artifacts(labelled_simulation):
    table = artifact_recovery(labelled_simulation)
    # Strong artifacts of the five MAD criteria are found at every k ...
    for kind in ("low_umi", "high_mito", "high_ribo", "high_hb"):
        assert (table[f"recall_{kind}"] > 0.8).all(), table[f"recall_{kind}"]
    # ... stricter k flags fewer clean cells, and 5 MAD is very precise.
    fpr = table["false_positive_rate"].to_numpy()
    assert fpr[0] >= fpr[1] >= fpr[2] and fpr[2] < 0.01
    assert table.loc[5, "precision"] > 0.95
    # A random labelling of the same size would have precision ~ the artifact rate (18 %).
    rate = labelled_simulation.obs["true_artifact"].mean()
    assert (table["precision"] > rate + 0.4).all()


def test_doublet_criterion_is_wired_in_but_blind_to_the_simulators_doublets(labelled_simulation):
    """The sixth criterion, measured. Known limitation of the simulator: its doublets sum two cells
    drawn from one continuous population (z_b ~ N(0, I), small perturbation effects), so scrublet
    cannot tell them from singlets. Measured on this data (144 doublets, 3,280 clean cells):
    scrublet calls 3 cells, 2 of the doublets (1.4 %) and 1 clean cell, and the recall of doublets
    by the QC label is 0.021 / 0.014 / 0.014 at k = 3 / 4 / 5, while the label flags 14.7 % of all
    cells at k = 4 (doublets have large libraries and pass the MAD criteria). The bound 0.1 fails as
    soon as scrublet finds 15 of the 144 doublets. Doublets of two distinct states are found: see
    test_simulated_cell_states_give_doublets_scrublet_finds below and
    test_evaluate_qcpr.py::test_scrublet_on_generated_cells_and_a_hand_count.
    """
    obs = labelled_simulation.obs
    table = artifact_recovery(labelled_simulation)
    truth = obs["true_artifact_type"].astype(str).to_numpy()
    called = obs["predicted_doublet"].to_numpy().astype(bool)
    record = labelled_simulation.uns["qc"]["scrublet"]
    assert record["ran"] and record["n_predicted"] == called.sum() > 0
    for k in (3, 4, 5):  # every scrublet call fails the cell at every k
        assert (obs[f"artifact_k{k}"].to_numpy()[called] == 1).all()
    recall_called = called[truth == "doublet"].mean()
    clean_rate = called[truth == "none"].mean()
    assert recall_called < 0.1 and clean_rate < 0.05
    assert (table["recall_doublet"] < 0.1).all(), table["recall_doublet"]


def test_uses_precomputed_metrics_recorded_by_the_loader(shared_data_file):
    shared_data_file("perturbench_devel_norman19_mcfaline23_counts500.h5ad")
    adata = load_dataset("norman_subset")
    with pytest.warns(UserWarning, match="mito"):
        label_artifacts(adata, seed=0)
    source = adata.uns["qc"]["metric_source"]
    assert "ncounts" in str(source["total_counts"]) and "ngenes" in str(source["n_genes_by_counts"])
    np.testing.assert_array_equal(adata.obs["total_counts"], adata.obs["ncounts"])
    # scrublet ran on the 500-gene panel despite it having fewer HVGs than 30 PCs
    assert adata.uns["qc"]["scrublet"]["ran"]
    assert 2 <= adata.uns["qc"]["scrublet"]["n_prin_comps"] < 30


def test_scrublet_chunks_are_balanced_seeded_and_respect_batches():
    import pandas as pd

    obs = pd.DataFrame({"lane": np.repeat(["a", "b"], [2500, 700])})
    labels = _chunk_labels(obs, "lane", 1000, seed=3)
    counts = pd.Series(labels).value_counts()
    assert set(counts.index) == {"a:0", "a:1", "a:2", "b:0"}
    assert counts[["a:0", "a:1", "a:2"]].max() - counts[["a:0", "a:1", "a:2"]].min() <= 1
    assert all(lab.startswith(lane) for lab, lane in zip(labels, obs["lane"], strict=True))
    assert (labels == _chunk_labels(obs, "lane", 1000, seed=3)).all()
    assert (labels != _chunk_labels(obs, "lane", 1000, seed=4)).any()


def test_label_artifacts_scores_large_data_in_chunks(labelled_simulation):
    adata = labelled_simulation.copy()
    label_artifacts(adata, seed=0, scrublet_chunk_size=1500)
    record = adata.uns["qc"]["scrublet"]
    assert record["n_chunks"] == 3 and len(record["threshold"]) == 3
    assert adata.obs["doublet_score"].notna().all()


def test_simulated_cell_states_give_doublets_scrublet_finds():
    """``n_cell_states=3``: basal states around three centres and every doublet the sum of two cells
    of different states (heterotypic), as in real data. Measured (3,000 cells x 600 genes, seed 0):
    scrublet calls 76 of the 108 doublets (70 %) and 0.45 % of the clean cells; calling cells at
    random at scrublet's overall rate (2.9 %) would find ~3 % of the doublets, so recall >= 0.5
    cannot come from chance. (At 4,000 cells, seeds 0-2: 79-88 %.)
    """
    adata = simulate_perturbseq(n_cells=3000, n_genes=600, n_cell_states=3, true_ate_cells=50, seed=0)
    assert sorted(adata.obs["true_cell_state"].unique()) == [0, 1, 2]
    label_artifacts(adata, seed=0)
    truth = adata.obs["true_artifact_type"].astype(str).to_numpy()
    called = adata.obs["predicted_doublet"].to_numpy().astype(bool)
    assert called[truth == "doublet"].mean() >= 0.5, called[truth == "doublet"].mean()
    assert called[truth == "none"].mean() <= 0.02, called[truth == "none"].mean()
    table = artifact_recovery(adata)
    assert (table["recall_doublet"] >= 0.5).all(), table["recall_doublet"]
