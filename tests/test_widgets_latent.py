"""LatentExplorer: embeddings of observed and generated cells, colourings, genes, hover, lasso, busy state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import cradlekit as ck
from cradlekit.widgets import LatentExplorer
from cradlekit.widgets._messages import NO_MODEL

TSNE = {"method": "tsne"}  # UMAP's first call compiles numba code for ~20 s; tests/test_pl_embed.py covers it


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


def test_data_cells_by_artifact_perturbation_group_and_split(setup):
    adata, _ = setup
    le = LatentExplorer(adata, **TSNE)
    assert le.message == "" and le.embedding.shape == (adata.n_obs, 2)
    assert list(le.embedding.index) == list(adata.obs_names)
    n_art = int(adata.obs["artifact_k3"].sum())
    assert set(le.categories) == {"clean (a_i = 0)", "artifact (a_i = 1)"}
    assert pd.Series(le._labels).value_counts()["artifact (a_i = 1)"] == n_art
    # stored in obsm (NaN-free for all embedded cells) and reused by the next explorer
    stored = np.asarray(adata.obsm["X_cradlekit_tsne"])
    assert np.allclose(stored, le.embedding.to_numpy())
    emb = le.embedding
    le.color_by = "perturbation"
    assert le.embedding.equals(emb)  # colouring reuses the stored embedding
    assert set(le.categories) == set(adata.obs["perturbation"].astype(str))
    le.color_by = "group"
    assert set(le.categories) == {"control", "single", "combination"}
    le.groups = "norman"
    assert "pro-growth" in le.categories  # KLF1 is a Norman pro-growth perturbation
    le.color_by = "split"
    assert set(le.categories) == set(adata.obs["split"].astype(str))


def test_embedding_is_reused_from_obsm(setup, monkeypatch):
    adata, _ = setup
    import cradlekit.widgets.latent as latent

    calls = []
    real = latent.embed_cells
    monkeypatch.setattr(latent, "embed_cells", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    first = LatentExplorer(adata, max_cells=200, seed=1, **TSNE)
    again = LatentExplorer(adata, max_cells=200, seed=1, **TSNE)
    assert len(calls) == 1 and again.embedding.equals(first.embedding) and len(again.embedding) == 200
    assert np.isnan(adata.obsm["X_cradlekit_tsne"]).any(axis=1).sum() == adata.n_obs - 200  # not embedded: NaN


def test_gene_colour_hover_lasso_and_named_selection(setup):
    adata, _ = setup
    le = LatentExplorer(adata, color_by="perturbation", **TSNE)
    gene = str(adata.var_names[5])
    assert le.find_genes(gene.lower())[0] == gene.upper() or gene in le.find_genes(gene)
    le.gene = gene
    le.color_by = "gene"
    X = np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=float)
    expected = np.log2(1e4 * X[:, 5] / X.sum(axis=1) + 1.0)  # the paper's normalisation, by hand
    assert np.allclose(le._labels.astype(float), expected)
    assert le.categories == [] and "expression" in le.title
    fig = le.static_figure()
    assert any("log2" in ax.get_ylabel() for ax in fig.axes)  # the colour bar

    cell = str(adata.obs_names[7])
    info = le.cell_info(cell)
    assert info["cell"] == cell and info["perturbation"] == str(adata.obs["perturbation"].iloc[7])
    assert info["split"] == str(adata.obs["split"].iloc[7])
    assert info["QC"] == ("fails QC (a_i = 1)" if adata.obs["artifact_k3"].iloc[7] else "passes QC (a_i = 0)")

    xy = le.embedding.to_numpy()
    x0, x1 = np.quantile(xy[:, 0], [0.2, 0.6])
    y0, y1 = np.quantile(xy[:, 1], [0.2, 0.6])
    inside = le.cells_in_polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    oracle = le.embedding.index[(xy[:, 0] > x0) & (xy[:, 0] < x1) & (xy[:, 1] > y0) & (xy[:, 1] < y1)]
    assert set(inside) == set(oracle) and inside
    assert le.select_cells(inside, name="lower left") == len(inside)
    col = adata.obs["cradlekit_selection"]
    assert (col == "lower left").sum() == len(inside) and set(col.cat.categories) == {"lower left", "unselected"}
    le.color_by = "selection"
    assert set(le.categories) == {"lower left", "unselected"}
    assert le.select_cells([], name="x") == 0 and "Nothing selected" in le.message
    assert le.select_cells(inside, name=" ") == 0 and "name" in le.message
    del adata.obs["cradlekit_selection"]


def test_many_categories_get_distinct_colours_and_a_full_legend(small_simulation, single_thread):
    adata = small_simulation[:600].copy()
    le = LatentExplorer(adata, color_by="perturbation", **TSNE)
    n = len(le.categories)
    assert n >= 25 and le.selected == le.categories  # every perturbation shown (top_n = 40)
    fig = le.static_figure()
    ax = fig.axes[0]
    colors = {tuple(c) for c in ax.collections[0].get_facecolors().round(4)}
    assert len(colors) == n  # one colour per perturbation: no repeats
    FigureCanvasAgg(fig).draw()
    legend = fig.axes[1].get_legend()
    assert len(legend.get_texts()) == n
    fig_box, leg_box = fig.bbox, legend.get_window_extent()
    assert leg_box.x1 <= fig_box.x1 + 1 and leg_box.y0 >= fig_box.y0 - 1 and leg_box.y1 <= fig_box.y1 + 1
    box = ax.get_window_extent()
    assert 0.85 < box.width / box.height < 1.15  # square: not squashed into a strip by the legend


def test_category_list_shrinking_keeps_the_selection_widget_consistent(setup):
    adata, _ = setup
    le = LatentExplorer(adata, color_by="perturbation", **TSNE)
    view = le.view
    assert len(view.select.options) == len(le.categories) > 2
    for colour in ("artifact", "group", "perturbation", "split"):
        view.color_by.value = colour
        assert le.color_by == colour
        assert tuple(view.select.options) == tuple(le.categories)
        assert all(0 <= i < len(view.select.options) for i in view.select.index)
        assert set(view.select.value) == set(le.selected)


def test_generated_cells_busy_state_and_cancel(setup):
    adata, model = setup
    le = LatentExplorer(adata, source="generated", **TSNE)
    assert le.message.endswith(NO_MODEL) and le.embedding.empty
    assert le.static_figure()  # a placeholder, no traceback

    le = LatentExplorer(adata, model=model, n_per_perturbation=10, **TSNE)
    view = le.view
    data_embedding = le.embedding
    view.source.value = "generated"  # from the widget: a background thread, the view says what is coming
    assert le.busy and le.busy_title == "t-SNE of generated cells by artifact"
    assert "<progress" in view.busy.value and "t-SNE of generated cells" in view.busy.value
    assert view.cancel.layout.display == "" and view.source.disabled and view.color_by.disabled
    assert le.embedding.empty  # the old plot is not shown under the new title
    le.cancel()
    assert not le.busy and le.source == "data" and le.message.startswith("Cancelled: t-SNE of generated cells")
    assert le.embedding.equals(data_embedding) and not view.source.disabled and view.cancel.layout.display == "none"
    assert le.wait_task(60)
    assert le.source == "data" and le.embedding.equals(data_embedding)  # the cancelled result is thrown away

    view.source.value = "generated"
    assert le.wait_task(60) and not le.busy and le.message == "", le.message
    labels = set(adata.obs["perturbation"].astype(str))
    assert le.embedding.shape == (2 * 10 * len(labels), 2)
    assert "X_cradlekit_tsne" in le.generated.obsm
    assert pd.Series(le._labels).value_counts().to_dict() == {"artifact off": 10 * len(labels),
                                                             "artifact on": 10 * len(labels)}  # fmt: skip
    info = le.cell_info(str(le.embedding.index[0]))
    assert info["QC"] in ("artifact on", "artifact off")


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_missing_labels_and_duplicate_names(setup):
    adata, _ = setup
    bare = adata.copy()
    del bare.obs["artifact_k3"]
    le = LatentExplorer(bare, **TSNE)
    assert "artifact_k3" in le.message and "label_artifacts" in le.message
    le.color_by = "perturbation"  # other colourings still work
    assert le.message == "" and not le.embedding.empty
    dup = adata[np.r_[0:10, 0:10]].copy()
    le = LatentExplorer(dup, color_by="perturbation", **TSNE)
    assert "obs_names_make_unique" in le.message


def test_export_figure_and_table(setup, tmp_path):
    adata, _ = setup
    le = LatentExplorer(adata, color_by="perturbation", export_dir=str(tmp_path), **TSNE)
    png, = le.export("figure.png")
    pdf, = le.export("figure.pdf")
    csv, = le.export("tables.csv")
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    table = pd.read_csv(csv, index_col=0)
    assert list(table.index) == list(le.embedding.index) and (table["perturbation"] == le._labels).all()
    le.view.exports["png"].click()  # the button: a download link and the path in the message
    assert "download=" in le.view.export_link.value and str(tmp_path) in le.message
