"""LatentExplorer: embeddings of observed and generated cells, colourings, group selection, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cradlekit as ck
from cradlekit.widgets import LatentExplorer
from cradlekit.widgets._messages import NO_MODEL


@pytest.fixture(scope="module")
def setup(single_thread):
    adata = ck.data.simulate_perturbseq(n_cells=400, n_genes=200, n_single=4, n_combinations=4,
                                        true_ate_cells=20, seed=0)  # fmt: skip
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    model = ck.PerturbationModel(adata, latent_dim=4, hidden_dim=8, num_particles=1)
    model.train(max_epochs=2, batch_size=128, progress_bar=False)
    return adata, model


def test_data_cells_by_artifact_perturbation_and_group(setup):
    adata, _ = setup
    le = LatentExplorer(adata)
    assert le.message == "" and le.embedding.shape == (adata.n_obs, 2)
    assert list(le.embedding.index) == list(adata.obs_names)
    n_art = int(adata.obs["artifact_k3"].sum())
    assert set(le.categories) == {"clean (a_i = 0)", "artifact (a_i = 1)"}
    assert le.selected == le.categories
    counts = pd.Series(le._labels).value_counts()
    assert counts["artifact (a_i = 1)"] == n_art

    emb = le.embedding
    le.color_by = "perturbation"
    assert le.embedding is emb  # colouring does not recompute the embedding
    assert set(le.categories) == set(adata.obs["perturbation"].astype(str))
    le.color_by = "group"
    assert set(le.categories) == {"control", "single", "combination"}
    le.groups = "norman"
    assert "pro-growth" in le.categories  # KLF1 is a Norman pro-growth perturbation
    le.groups = {"KLF1": "mine"}
    assert set(le.categories) <= {"mine", "control", "other"} and "mine" in le.categories


def test_group_selection_and_view(setup):
    adata, _ = setup
    le = LatentExplorer(adata, color_by="group")
    view = le.view
    assert set(view.select.options) == set(le.categories)
    view.select.value = ("single",)
    assert le.selected == ["single"]
    fig = le.static_figure()
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["single", "other / not selected"]
    view.none.click()
    assert le.selected == [] and le.message.startswith("Nothing selected")
    assert "Nothing selected" in view.message.value
    view.all.click()
    assert le.selected == le.categories and le.message == ""
    view.color_by.value = "artifact"
    assert le.color_by == "artifact" and set(view.select.options) == set(le.categories)
    assert view.image.widget.value[:4] == b"\x89PNG"


def test_generated_cells_need_a_trained_model(setup):
    adata, model = setup
    le = LatentExplorer(adata, source="generated")
    assert le.message.endswith(NO_MODEL) and le.embedding.empty
    assert le.static_figure()  # a placeholder, no traceback

    le = LatentExplorer(adata, model=model, source="generated", n_per_perturbation=10)
    labels = set(adata.obs["perturbation"].astype(str))  # every label is generatable here
    assert le.message == "" and le.embedding.shape == (2 * 10 * len(labels), 2)
    assert le.categories == ["artifact off", "artifact on"] or le.categories == ["artifact on", "artifact off"]
    counts = pd.Series(le._labels).value_counts()
    assert counts["artifact on"] == counts["artifact off"] == 10 * len(labels)
    le.color_by = "perturbation"
    assert set(le.categories) == labels
    le.source = "data"
    assert le.embedding.shape == (adata.n_obs, 2)


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_missing_labels_and_duplicate_names(setup):
    adata, _ = setup
    bare = adata.copy()
    del bare.obs["artifact_k3"]
    le = LatentExplorer(bare)
    assert "artifact_k3" in le.message and "label_artifacts" in le.message
    le.color_by = "perturbation"  # other colourings still work
    assert le.message == "" and not le.embedding.empty
    dup = adata[np.r_[0:10, 0:10]].copy()
    le = LatentExplorer(dup, color_by="perturbation")
    assert "obs_names_make_unique" in le.message


def test_umap_on_a_subsample(setup, monkeypatch):
    """The UMAP path (PCA of the normalised cells, seeded subsample); umap-learn itself is replaced by a
    stand-in, since its first call spends ~30 s compiling with numba."""
    import sys
    import types

    calls = []

    class FakeUMAP:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def fit_transform(self, X):
            calls.append(X.shape)
            return np.asarray(X)[:, :2]

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    adata, _ = setup
    le = LatentExplorer(adata, color_by="perturbation")
    tsne = le.embedding
    le.max_cells = 200
    le.method = "umap"
    assert le.message == "" and le.embedding.shape == (200, 2) and le.embedding.index.isin(adata.obs_names).all()
    assert calls[0] == {"n_neighbors": 15, "random_state": 0} and calls[1][0] == 200
    assert set(le.categories) <= set(adata.obs["perturbation"].astype(str))
    le.method = "tsne"  # cached per (source, method) until max_cells/seed change
    assert le.embedding.shape == (200, 2) and le.embedding is not tsne
