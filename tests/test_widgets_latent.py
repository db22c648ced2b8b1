"""LatentExplorer: embeddings of observed and generated cells, colourings, genes, hover, lasso, busy state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import cradlekit as ck
from cradlekit.widgets import LatentExplorer
from cradlekit.widgets._messages import NO_MODEL

# UMAP's first call compiles numba code for ~20 s (tests/test_pl_embed.py covers it); wait=True: the first
# embedding is computed before the constructor returns (a notebook gets it in the background instead)
TSNE = {"method": "tsne", "wait": True}


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
    import cradlekit.widgets._latent_compute as latent

    calls = []
    real = latent.embed_cells
    monkeypatch.setattr(latent, "embed_cells", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    first = LatentExplorer(adata, max_cells=200, seed=1, place_rest=False, **TSNE)
    again = LatentExplorer(adata, max_cells=200, seed=1, place_rest=False, **TSNE)
    assert len(calls) == 1 and again.embedding.equals(first.embedding) and len(again.embedding) == 200
    assert np.isnan(adata.obsm["X_cradlekit_tsne"]).any(axis=1).sum() == adata.n_obs - 200  # not embedded: NaN
    assert "seeded subsample of 200 of the 400" in first.coverage_note and "only these 200" in first.coverage_note


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_a_subsample_is_stated_and_every_other_cell_placed(setup):
    """max_cells embeds a subsample; the rest are placed at their nearest embedded cells, so a lasso covers all."""
    adata, _ = setup
    dup = adata[np.r_[0:400, 0:100]].copy()  # cells 400-499 repeat cells 0-99 exactly
    dup.obs_names = [*adata.obs_names, *[f"copy{i}" for i in range(100)]]
    le = LatentExplorer(dup, max_cells=300, seed=2, **TSNE)
    assert len(le.embedding) == 500 and np.isfinite(le.embedding.to_numpy()).all()
    info = dup.uns["cradlekit_embeddings"]["X_cradlekit_tsne"]
    assert info["n_embedded"] == 300 and info["n_placed"] == 200
    note = le.coverage_note
    assert "subsample of 300 of the 500" in note and "other 200 are placed" in note and "every cell" in note
    assert le.title.startswith("t-SNE of 500 data cells")
    # the oracle: a placed copy of an embedded cell has distance 0 to it and lands on it
    rows = np.sort(np.random.default_rng(2).choice(500, size=300, replace=False))
    embedded = set(dup.obs_names[rows])
    pairs = [(str(adata.obs_names[i]), f"copy{i}") for i in range(100)
             if adata.obs_names[i] in embedded and f"copy{i}" not in embedded]  # fmt: skip
    assert pairs
    xy = le.embedding
    for original, copy in pairs:
        assert np.allclose(xy.loc[copy], xy.loc[original], atol=1e-3), (original, copy)
    # a lasso around everything names all 500 cells, placed ones included
    lo, hi = xy.min().to_numpy() - 1, xy.max().to_numpy() + 1
    assert len(le.cells_in_polygon([(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])])) == 500


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


def test_construction_returns_at_once_with_a_busy_state(setup, monkeypatch):
    """In a notebook the first embedding runs in the background: the cell returns, the widget says what is coming."""
    import threading

    import cradlekit.widgets._latent_compute as latent

    adata, _ = setup
    gate = threading.Event()
    real = latent.embed_cells
    monkeypatch.setattr(latent, "embed_cells", lambda *a, **kw: gate.wait(60) and real(*a, **kw))
    le = LatentExplorer(adata, method="tsne", max_cells=150, seed=5)  # not wait=True: the notebook's way
    assert le.busy and le.busy_title.startswith("t-SNE of data cells") and le.embedding.empty
    view = le.view
    assert "<progress" in view.busy.value and view.cancel.layout.display == "" and view.color_by.disabled
    gate.set()
    assert le.wait_task(60) and not le.busy and len(le.embedding) == adata.n_obs
    assert not view.color_by.disabled and "subsample of 150" in view.coverage.value
    gate.clear()
    le2 = LatentExplorer(adata, method="tsne", max_cells=140, seed=5)
    assert le2.busy and le2.cancel() and not le2.busy and "Cancelled" in le2.message
    gate.set()
    assert le2.wait_task(60) and le2.embedding.empty  # the cancelled result is thrown away
    assert le2.static_figure()  # a placeholder, no traceback


def test_colour_by_any_obs_column_categorical_or_continuous(setup):
    adata, _ = setup
    cells = adata.copy()
    cells.obs["batch"] = np.arange(cells.n_obs) % 3  # integers: categories
    le = LatentExplorer(cells, **TSNE)
    assert {"batch", "total_counts", "perturbation"} <= set(le.color_options)
    view = le.view
    view.column.value = "batch"  # the widget's "or obs column" menu
    assert le.wait_task(30) and le.color_by == "batch" and not le.continuous
    assert le.categories == ["0", "1", "2"] and view.color_by.value is None  # no preset button stays pressed
    view.column.value = "total_counts"  # continuous: a colour bar, no categories
    assert le.wait_task(30) and le.continuous and le.categories == []
    assert np.allclose(le._labels, cells.obs.loc[le.embedding.index, "total_counts"])
    fig = le.static_figure()
    assert fig.axes[1].get_ylabel() == "total_counts"  # the colour bar names the column
    info = le.cell_info(str(le.embedding.index[0]))
    assert float(info["total_counts"]) == pytest.approx(cells.obs["total_counts"].iloc[0], rel=1e-3)
    view.color_by.value = "split"
    assert le.wait_task(30) and le.color_by == "split" and view.column.value == "—"
    le.color_by = "not_a_column"
    assert "obs['not_a_column'] not found" in le.message and le.message_level == "error"


def test_gene_search_is_type_ahead_and_keeps_the_data_spelling(setup):
    adata, _ = setup
    le = LatentExplorer(adata, color_by="perturbation", **TSNE)
    view = le.view
    gene = str(adata.var_names[5])
    view.gene.value = gene[:-1].lower()  # a keystroke (continuous_update): suggestions, no colouring yet
    assert gene in view.gene.options and le.color_by == "perturbation"
    assert view.gene.continuous_update
    view.gene.value = gene.lower()  # the whole name, typed in lower case: colours at once
    assert le.wait_task(30) and le.color_by == "gene" and le.gene == gene
    assert le.title.endswith(f"{gene} expression")


def test_selection_message_stays_and_a_name_arriving_after_write_is_used(setup):
    adata, _ = setup
    cells = adata.copy()
    le = LatentExplorer(cells, color_by="selection", **TSNE)
    view = le.view
    xy = le.embedding.to_numpy()
    x0, x1 = np.quantile(xy[:, 0], [0.1, 0.9])
    y0, y1 = np.quantile(xy[:, 1], [0.1, 0.9])
    view._on_lasso([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    n = len(view.lasso)
    assert n > 0 and view.name.continuous_update is False  # the name is sent before the click reaches Python
    view.write.click()  # the pasted name has not arrived yet
    assert "it is written as soon as it has a name" in le.message and "cradlekit_selection" not in cells.obs
    view.name.value = "core"  # ... and now it has
    assert (cells.obs["cradlekit_selection"] == "core").sum() == n
    assert le.message == f"Wrote {n} cells as 'core' to data obs['cradlekit_selection']."  # kept after the redraw
    assert "core" in le.categories


def test_hover_is_cleared_when_the_cells_change_and_the_lasso_draws_an_outline(setup):
    from matplotlib.backend_bases import MouseEvent

    adata, model = setup
    le = LatentExplorer(adata, model=model, n_per_perturbation=5, **TSNE)
    view = le.view
    if view.canvas is None:
        pytest.skip("needs ipympl for the interactive canvas")
    assert view._selector.useblit is False  # ipympl draws the outline on full redraws only
    ax = view._selector.ax
    ax.get_xlim(), ax.get_ylim()  # the autoscaled limits (matplotlib sets them at the first draw)
    (x0, y0), (x1, y1) = ax.transData.transform(le.embedding[["x", "y"]].quantile([0.3, 0.7]).to_numpy())
    canvas = view.canvas
    canvas.callbacks.process("button_press_event", MouseEvent("button_press_event", canvas, x0, y0, button=1))
    for x, y in ((x1, y0), (x1, y1)):
        canvas.callbacks.process("motion_notify_event", MouseEvent("motion_notify_event", canvas, x, y, button=1))
    line = view._selector._selection_artist
    assert line.get_visible() and len(line.get_xydata()) == 3  # the outline follows the pointer during the drag
    view.hover.value = "<b>cell</b>: cell000001"
    view.source.value = "generated"
    assert le.wait_task(60) and le.source == "generated" and "hover a cell" in view.hover.value
    assert "Generated at library size" in le.coverage_note and "the data's median" in le.coverage_note
    lib = float(np.median(np.asarray(adata.X.sum(axis=1)).ravel()))
    assert abs(np.median(np.asarray(le.generated.X.sum(axis=1)).ravel()) - lib) < 0.3 * lib


def test_a_data_column_colouring_survives_a_switch_to_generated_cells(setup):
    adata, model = setup
    le = LatentExplorer(adata, model=model, n_per_perturbation=5, color_by="total_counts", **TSNE)
    assert le.continuous and le.title.endswith("by total_counts")
    le.source = "generated"  # generated cells have no QC metrics in obs: coloured by perturbation, said so
    assert le.message_level != "error" and "have no obs['total_counts']" in le.message
    assert not le.continuous and le.title.endswith("by perturbation") and le.color_by == "total_counts"
    assert set(le.categories) == set(le.generated.obs["perturbation"].astype(str))
    le.source = "data"  # the choice comes back with the cells that have the column
    assert le.continuous and le.title.endswith("by total_counts") and le.message == ""
