"""The widgets on a biologist's own screen (issue 21): a gene panel with full-transcriptome QC metrics in obs.

Driven programmatically: the QC basis of each comparison is named (and both shown where they
differ), the QC table groups by any categorical column, exports keep their files, the training
controller's advice matches what its buttons do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import cradlekit as ck
from cradlekit._keys import flag_key
from cradlekit.widgets import PerturbationExplorer, QCExplorer, TrainingController

TINY = {"latent_dim": 4, "hidden_dim": 8, "batch_size": 128, "patience": 0}


@pytest.fixture(scope="module")
def screen(tmp_path_factory, single_thread):
    """The example own-layout screen: 180-gene panel without MT genes, full-transcriptome metrics in obs."""
    path = ck.data.write_example_screen(tmp_path_factory.mktemp("screen") / "screen.h5ad", n_cells=900, n_genes=180,
                                        seed=4)  # fmt: skip
    adata = ck.data.load_dataset(path, perturbation_key="guide", control_label="non-targeting",
                                 qc_metrics=ck.data.EXAMPLE_QC_METRICS)  # fmt: skip
    adata.obs["batch"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 3 == 0, "lane1", "lane2"))
    with pytest.warns(UserWarning, match="panel of only"):  # scrublet on a 171-gene panel
        ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    return adata


@pytest.fixture(scope="module")
def model(screen):
    m = ck.PerturbationModel(screen, latent_dim=4, hidden_dim=8, num_particles=1)
    m.train(max_epochs=2, batch_size=128, progress_bar=False)
    return m


def test_qc_explorer_names_its_basis_and_shows_both_side_by_side(screen):
    qc = QCExplorer(screen)
    assert qc.bases == ["reference", "panel"] and qc.basis == "reference"
    assert "total_counts = obs['total_counts_full']" in qc.basis_note
    assert f"from the {screen.n_vars} genes in the counts: pct_counts_ribo" in qc.basis_note
    fig = qc.static_figure()
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert "total_counts = obs['total_counts_full']" in labels  # not a bare "total_counts"
    assert "pct_counts_mt = obs['pct_counts_mt_full']" in labels
    # the panel basis: metrics recomputed on the genes in the counts, against the panel thresholds
    both = qc.bases_table()
    panel = screen.uns["qc"]["panel"]["thresholds"]["k3"]
    assert both.loc["total_counts", "threshold (panel)"] == pytest.approx(panel["total_counts"]["lower"])
    assert both.loc["total_counts", "threshold (reference)"] == pytest.approx(
        screen.uns["qc"]["thresholds"]["k3"]["total_counts"]["lower"])
    panel_totals = np.asarray(screen.X.sum(axis=1)).ravel()
    assert both.loc["total_counts", "pass (panel)"] == int((panel_totals >= panel["total_counts"]["lower"]).sum())
    assert both.loc["total_counts", "pass (reference)"] == int((~screen.obs[flag_key("total_counts", 3)]).sum())
    view = qc.view
    assert "threshold (panel)" in view.table.value and "QC basis" in view.basis_note.value
    view.basis.value = "panel"
    assert qc.basis == "panel" and qc.skipped[0] == "mito"  # no MT gene in the panel
    assert qc.n_pass == both.loc["any", "pass (panel)"]
    xlabels = [ax.get_xlabel() for ax in qc.static_figure().axes]
    assert f"total_counts (from {screen.n_vars} genes)" in xlabels
    assert set(qc.tables()) == {"criteria", "bases", "per_perturbation"}
    qc.basis = "reference"


def test_qc_table_groups_by_any_categorical_column(screen):
    qc = QCExplorer(screen)
    options = qc.group_options
    assert {"perturbation", "split", "guide", "batch"} <= set(options)
    assert "total_counts_full" not in options  # continuous: not a grouping
    qc.view.group_by.value = "batch"
    table = qc.group_table()
    obs = screen.obs
    oracle = 100.0 * (1.0 - obs["artifact_k3"].astype(float)).groupby(obs["batch"].astype(str)).mean()
    assert list(table.index.sort_values()) == ["lane1", "lane2"]
    assert np.allclose(table["pass %"].sort_index(), oracle.sort_index())
    assert "lane1" in qc.view.groups.value and set(qc.tables()) == {"criteria", "bases", "per_batch"}


def test_perturbation_explorer_judges_both_sets_on_one_stated_basis(screen, model):
    label = "KLF1"
    pe = PerturbationExplorer(model, screen, perturbation=label, n=40, run_scrublet=False)
    assert pe.basis == "panel" and pe.generated.uns["qc"]["basis"] == "panel"
    assert f"QC basis: the {screen.n_vars} genes in the counts" in pe.basis_note
    # the data's column is on the generated cells' basis (panel metrics, panel thresholds) ...
    from cradlekit.pl.qc_violins import panel_view

    in_data = (screen.obs["perturbation"] == label).to_numpy()
    on_panel = panel_view(screen, 3.0)[in_data]
    assert pe.qc_pass["data"] == pytest.approx(ck.qc.pass_fraction(on_panel, 3))
    rate = 100 * (1 - on_panel.obs[flag_key("total_counts", 3)].mean())
    assert pe.criteria.loc["total_counts", "data pass %"] == pytest.approx(rate)
    # ... and the data's own labels (full-transcriptome metrics) beside it, named
    own = screen[in_data]
    assert pe.qc_pass["data_labels"] == pytest.approx(ck.qc.pass_fraction(own, 3))
    assert "data pass % (data's labels)" in pe.criteria.columns
    view = pe.view
    summary = view.summary.value
    assert f"on the same {screen.n_vars}-gene basis" in summary and "on its own QC labels" in summary
    assert "cradlekit-perturbation-basis" in view.basis._dom_classes and "QC basis" in view.basis.value
    assert f"on the {screen.n_vars}-gene panel (both sets)" in pe.static_figure()._suptitle.get_text()


def test_no_broken_image_before_the_first_figure_and_exports_never_overwrite(screen, model, tmp_path):
    pe = PerturbationExplorer(model, screen, n=20, run_scrublet=False, export_dir=str(tmp_path))
    view = pe.view
    assert view.gene_image.widget.layout.display == "none"  # nothing to show yet: no broken-image icon
    pe.perturbation = "KLF1"
    first = pe.export("figure.png")[0]
    second = pe.export("figure.png")[0]
    assert first.name == "perturbationexplorer_KLF1_k3_artifact-off_figure.png"
    assert second.name == "perturbationexplorer_KLF1_k3_artifact-off_figure_2.png" and first.exists()
    csvs = pe.export("tables.csv")
    text = csvs[1].read_text()  # top genes: 6 significant digits, not 17
    values = [v for line in text.splitlines()[1:] for v in line.split(",")[1:] if v]
    assert values and all(len(v.split("e")[0].lstrip("-").replace(".", "").lstrip("0")) <= 6 for v in values), text


def test_training_advice_matches_the_buttons_and_epochs_are_whole(screen, tmp_path):
    tc = TrainingController(screen, checkpoint_dir=tmp_path, max_epochs=2, model_options={"num_particles": 1}, **TINY)
    assert tc.start() and tc.wait(60) and tc.status == "finished"
    assert tc.start() is False  # a trained model: asks before replacing
    assert "Resume to continue" not in tc.message and "raise max epochs" in tc.message
    assert tc.resume() is False and "Nothing to resume" in tc.message  # ... and Resume agrees
    tc.max_epochs = 3
    assert tc.start() is False and "or Resume to continue it" in tc.message  # now Resume can continue it
    fig = tc.static_figure()
    FigureCanvasAgg(fig).draw()
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no 0.5 epochs


def test_perturbation_gene_search_is_type_ahead(screen, model):
    pe = PerturbationExplorer(model, screen, perturbation="KLF1", n=20, run_scrublet=False)
    view = pe.view
    gene = "GENE0012"
    assert gene in screen.var_names and view.gene.continuous_update
    view.gene.value = "gene001"  # a keystroke: suggestions, nothing drawn yet
    assert gene in view.gene.options and pe.gene == "" and view.gene_image.widget.layout.display == "none"
    view.gene.value = "gene0012"  # complete (any case): drawn, titled with the data's spelling
    assert pe.gene == gene and view.gene_image.widget.layout.display == ""
    assert pe.gene_figure().axes[0].get_title().startswith(f"{gene}: data")
