"""The items of issue 14, each driven programmatically: warnings inside the widget, quiet logs, the QCPR
headline, the library-size note, Start/Resume control flow, layout, per-group QC pass rates, gene views."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import cradlekit as ck
from cradlekit._keys import flag_key
from cradlekit.widgets import PerturbationExplorer, QCExplorer, TrainingController
from cradlekit.widgets._views import FigureImage

TINY = {"latent_dim": 4, "hidden_dim": 8, "batch_size": 128, "patience": 0}


@pytest.fixture(scope="module")
def prepared(single_thread):
    adata = ck.data.simulate_perturbseq(n_cells=400, n_genes=200, n_single=4, n_combinations=4,
                                        true_ate_cells=20, seed=0)  # fmt: skip
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    return adata


@pytest.fixture(scope="module")
def trained(prepared):
    model = ck.PerturbationModel(prepared, latent_dim=4, hidden_dim=8, num_particles=1)
    model.train(max_epochs=2, batch_size=128, progress_bar=False)
    return model


def test_new_labels_say_references_must_be_rebuilt_and_training_warns_in_the_widget(prepared, tmp_path, capfd):
    adata = prepared.copy()
    qc = QCExplorer(adata, k=3.5)
    assert qc.write_labels() == "artifact_k3p5"
    assert qc.message_level == "warning"
    assert "counterfactual_references(adata, artifact_key='artifact_k3p5')" in qc.message
    capfd.readouterr()
    tc = TrainingController(adata, checkpoint_dir=tmp_path, artifact_key="artifact_k3p5", max_epochs=1,
                            model_options={"num_particles": 1}, **TINY)  # fmt: skip
    assert tc.start() and tc.wait(60) and tc.status == "finished", tc.message
    assert "counterfactual references were built with artifact_key='artifact_k3'" in tc.message
    assert tc.message_level == "warning" and tc.message.startswith("Finished after epoch 1")
    err = capfd.readouterr().err
    assert "[cradlekit]" not in err  # neither the warning nor INFO lines reach the notebook's stderr
    assert any(line.startswith("INFO: trained 1 epochs") for line in tc.log)  # kept in the controller's log


def test_qc_pass_rates_per_perturbation_and_split(prepared):
    qc = QCExplorer(prepared)
    table = qc.group_table()
    obs = prepared.obs
    oracle = 100.0 * (1.0 - obs["artifact_k3"].astype(float)).groupby(obs["perturbation"].astype(str)).mean()
    assert np.allclose(table["pass %"].sort_index(), oracle.sort_index())
    assert list(table["pass %"]) == sorted(table["pass %"])  # most affected first
    crit = ["total_counts", "n_genes", "mito", "ribo", "hb", "doublet"]
    fails = pd.DataFrame({c: obs[flag_key(c, 3)].astype(float) for c in crit})
    worst = fails.groupby(obs["perturbation"].astype(str)).mean().idxmax(axis=1)
    assert (table["most failed"] == worst.reindex(table.index)).all()
    qc.sort_by, qc.ascending = "cells", False
    assert list(qc.group_table()["cells"]) == sorted(table["cells"], reverse=True)
    qc.group_by = "split"
    assert set(qc.group_table().index) == set(obs["split"].astype(str))
    view = qc.view
    view.group_by.value = "perturbation"
    assert "cradlekit-qc-group-table" in view.groups.value and "CEBPA" in view.groups.value
    assert view.slider.layout.width == "420px"  # the k slider is wide enough to aim at 1-10
    assert set(qc.tables()) == {"criteria", "per_perturbation"}


def test_negative_thresholds_are_explained(prepared):
    qc = QCExplorer(prepared, k=10.0)
    negative = [c for c in ("total_counts", "n_genes") if qc.thresholds[c] <= 0]
    assert negative, qc.thresholds  # median - 10 MAD of library size is below 0 here
    assert set(negative) <= set(qc.threshold_notes)
    assert "no cell can fail" in qc.view.table.value
    assert all(qc.counts[c]["n_fail"] == 0 for c in negative)


def test_perturbation_headline_per_criterion_and_doublet_statement(prepared, trained):
    pe = PerturbationExplorer(trained, prepared, perturbation="KLF1", n=60)
    table = pe.criteria
    gen = pe.generated[pe.generated.obs["perturbation"].astype(str) == "KLF1"]
    for c in ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet"):
        col = flag_key(c, 3)
        expected = 100.0 * (1 - gen.obs[col].astype(float).mean()) if col in gen.obs else 100.0
        assert table.loc[c, "generated pass %"] == pytest.approx(expected)
    mad_fail = np.zeros(gen.n_obs, dtype=bool)
    for c in ("total_counts", "n_genes", "mito", "ribo", "hb"):
        mad_fail |= gen.obs[flag_key(c, 3)].to_numpy(dtype=bool)
    assert pe.qc_pass["generated_mad"] == pytest.approx(1 - mad_fail.mean())
    assert pe.qc_pass["generated"] == pytest.approx(ck.qc.pass_fraction(gen, 3))
    data = prepared[prepared.obs["perturbation"] == "KLF1"]
    assert table.loc["all six (QCPR)", "data pass %"] == pytest.approx(100 * ck.qc.pass_fraction(data, 3))
    assert "Doublets" in pe.doublet_note
    summary = pe.view.summary.value
    assert "pass the five MAD criteria" in summary and "doublets" in summary
    assert "cradlekit-criteria-table" in pe.view.criteria.value


def test_library_size_follows_the_data_by_default_and_is_stated(prepared, trained):
    pe = PerturbationExplorer(trained, prepared, perturbation="KLF1", n=40, run_scrublet=False)
    median = float(np.median(np.asarray(prepared.X.sum(axis=1)).ravel()))
    assert pe.library_size == "data" and pe.result_library_size == pytest.approx(median)
    gen_totals = np.asarray(pe.generated.X.sum(axis=1)).ravel()
    assert abs(np.median(gen_totals) - median) < 0.2 * median  # counts drawn around the data's library size
    assert "doublets of the generated cells not called" in pe.view.summary.value
    assert f"library size {median:,.0f}" in pe.view.summary.value
    pe.library_size = "1e4"  # the paper's setting, still offered: every view says which
    assert pe.result_library_size == 1e4
    notes = [t.get_text() for ax in pe.static_figure().axes for t in ax.texts if t.get_gid() == "library_size_note"]
    assert notes == [f"generated cells: library size 10,000 (data median {median:,.0f})"]
    assert "library size 10,000" in pe.view.summary.value
    pe.gene = str(prepared.var_names[2])
    assert "library size 10,000" in pe.gene_figure().axes[0].get_title()


def test_gene_violins_data_vs_generated(prepared, trained):
    pe = PerturbationExplorer(trained, prepared, perturbation="KLF1", n=30, run_scrublet=False)
    with pytest.raises(ValueError, match="gene"):
        pe.gene_figure()
    pe.gene = str(prepared.var_names[2])
    fig = pe.gene_figure()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    n_ctrl = int((prepared.obs["perturbation"] == "control").sum())
    assert labels[0] == f"data control\n(n={n_ctrl})" and labels[-1] == "generated KLF1\n(n=30)"
    pe.export_dir = "unused"
    assert set(pe.tables()) == {"qc_criteria", "top_genes", "baselines"}


def test_start_again_asks_first_and_keeps_the_old_checkpoint(prepared, tmp_path):
    tc = TrainingController(prepared, checkpoint_dir=tmp_path, max_epochs=1, model_options={"num_particles": 1},
                            **TINY)  # fmt: skip
    assert tc.start() and tc.wait(60) and tc.status == "finished"
    first_model, first_ckpt = tc.model, tc.checkpoint_path
    pe = PerturbationExplorer(tc, prepared, auto_update=False, perturbation="KLF1", n=10)
    assert tc.resume() is False and "Nothing to resume: training finished at epoch 1" in tc.message
    view = tc.view
    view.start.click()  # first click: asks
    assert tc.model is first_model and tc.confirm_replace and "Replace model" in view.start.description
    assert "already trained" in tc.message
    view.start.click()  # second click: replaces, in a new folder
    assert tc.wait(60) and tc.status == "finished", tc.message
    assert tc.model is not first_model and pe.model is tc.model and not tc.confirm_replace
    assert first_ckpt.exists() and tc.checkpoint_path != first_ckpt and tc.checkpoint_path.exists()
    assert tc.previous_checkpoints == [str(first_ckpt)]


def test_figures_keep_their_size_and_the_empty_loss_plot_is_small(prepared, tmp_path):
    tc = TrainingController(prepared, checkpoint_dir=tmp_path, **TINY)
    fig = tc.static_figure()
    assert fig.get_figheight() < 1.0  # no large empty axes before the first epoch
    image = FigureImage(dpi=80)
    fig.set_size_inches(9.0, 3.2)
    image.show(fig)
    assert image.widget.layout.width == "720px"  # shown at its own size, not stretched by the layout
    import io

    from PIL import Image as PILImage

    assert PILImage.open(io.BytesIO(image.widget.value)).size == (1440, 512)  # 2x pixels: sharp


def test_busy_perturbation_can_be_cancelled(prepared, trained):
    pe = PerturbationExplorer(trained, prepared, perturbation="KLF1", n=20, run_scrublet=False)
    before = pe.generated
    view = pe.view
    view.n.value = 25  # from the widget: in a thread
    assert pe.busy and "generating 25 cells of KLF1" in pe.busy_title and view.button.disabled
    pe.cancel()
    assert not pe.busy and pe.n == 20 and pe.generated is before and "Cancelled" in pe.message
    assert pe.wait_task(60) and pe.generated is before
    time.sleep(0.05)
    assert not view.button.disabled
