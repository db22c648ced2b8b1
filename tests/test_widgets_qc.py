"""QCExplorer driven programmatically (no kernel): traits, counts, view links, write-back, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets

import cradlekit as ck
from cradlekit.qc.thresholds import mad_threshold
from cradlekit.widgets import QCExplorer
from cradlekit.widgets._messages import NO_QC_LABELS


def _sim(seed: int = 0):
    return ck.data.simulate_perturbseq(n_cells=500, n_genes=200, n_single=4, n_combinations=4,
                                       true_ate_cells=20, seed=seed)  # fmt: skip


@pytest.fixture(scope="module")
def labelled():
    adata = _sim()
    ck.qc.label_artifacts(adata)
    return adata


def test_without_qc_labels_the_widget_says_so(labelled):
    adata = _sim()
    qc = QCExplorer(adata)
    assert not qc.ready and qc.message == NO_QC_LABELS and qc.message_level == "warning"
    assert qc.counts == {} and qc.n_pass == 0
    assert "label_artifacts" in qc.view.message.value  # shown in the widget, as text
    assert qc.view.image.widget.value  # a placeholder figure, no traceback
    assert qc.write_labels() is None and qc.message == NO_QC_LABELS
    qc.k = 4  # still no error
    with pytest.warns(UserWarning, match="doublet"):
        ck.qc.label_artifacts(adata, run_scrublet=False)  # doublet criterion skipped
    qc.refresh()
    assert qc.ready and qc.message == "" and qc.skipped == ["doublet"]
    assert qc.counts["doublet"] == {"n_pass": adata.n_obs, "n_fail": 0}
    assert "Total:" in qc.view.total.value and qc.view.message.value == ""


@pytest.mark.parametrize("k", [3, 4, 5])
def test_counts_at_stored_k_equal_qc_summary(labelled, k):
    qc = QCExplorer(labelled, k=k)
    summary = ck.qc.qc_summary(labelled)
    for criterion in ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet", "any"):
        assert qc.counts[criterion]["n_pass"] == summary.loc[criterion, f"k{k}_n_pass"], criterion
        assert qc.counts[criterion]["n_fail"] == summary.loc[criterion, f"k{k}_n_fail"], criterion
    assert qc.n_pass == summary.loc["any", f"k{k}_n_pass"] == int((labelled.obs[f"artifact_k{k}"] == 0).sum())
    stored = labelled.uns["qc"]["thresholds"][f"k{k}"]
    assert qc.thresholds["mito"] == pytest.approx(stored["mito"]["upper"])
    assert qc.thresholds["total_counts"] == pytest.approx(stored["total_counts"]["lower"])
    assert np.isnan(qc.thresholds["doublet"])


def test_free_k_updates_counts_live(labelled):
    qc = QCExplorer(labelled)
    seen = []
    qc.observe(lambda ch: seen.append(ch["new"]), names="n_pass")
    passes = []
    for k in (1.5, 3.0, 3.5, 4.0, 7.25):
        qc.k = k
        passes.append(qc.n_pass)
        stats = labelled.uns["qc"]["stats"]["ribo"]
        assert qc.thresholds["ribo"] == pytest.approx(mad_threshold(stats["median"], stats["scale"], k, "upper"))
        assert qc.counts["any"]["n_pass"] + qc.counts["any"]["n_fail"] == labelled.n_obs
    assert passes == sorted(passes) and passes[0] < passes[-1]  # larger k, fewer failures
    assert len(seen) >= 2  # observers fired on the way
    assert qc.artifact_key == "artifact_k7p25"
    with pytest.raises(traitlets.TraitError):
        qc.k = -1.0


def test_view_is_linked_to_the_controller(labelled):
    qc = QCExplorer(labelled)
    view = qc.view
    assert qc.widget is view.root
    view.slider.value = 4.5
    assert qc.k == 4.5 and view.preset.value is None
    assert f"<span class='cradlekit-qc-npass'>{qc.n_pass}</span>" in view.total.value and "k = 4.5" in view.total.value
    view.preset.value = 5.0
    assert qc.k == 5.0 and view.slider.value == 5.0
    qc.k = 3.0
    assert view.preset.value == 3.0
    assert view.image.widget.value[:4] == b"\x89PNG"
    assert "all (a_i = 0)" in view.table.value
    bundle = qc._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_write_labels_for_a_free_k(labelled):
    adata = labelled.copy()
    before_k3 = adata.obs["artifact_k3"].to_numpy().copy()
    scrublet = dict(adata.uns["qc"]["scrublet"])
    qc = QCExplorer(adata)
    qc.k = 3.5
    key = qc.write_labels()
    assert key == qc.written_key == "artifact_k3p5"
    assert int((adata.obs[key] == 0).sum()) == qc.n_pass
    assert "Wrote obs['artifact_k3p5']" in qc.message
    # a threshold that cannot fail any cell is reported in the same message, as a warning (issue 11)
    cannot_fail = "cannot fail any cell" in qc.message
    assert qc.message_level == ("warning" if cannot_fail else "info")
    summary = ck.qc.qc_summary(adata)
    assert summary.loc["any", "k3p5_n_pass"] == qc.n_pass
    assert summary.loc["mito", "k3p5_n_pass"] == qc.counts["mito"]["n_pass"]
    np.testing.assert_array_equal(adata.obs["artifact_k3"].to_numpy(), before_k3)
    assert sorted(np.asarray(adata.uns["qc"]["ks"]).tolist()) == [3.0, 3.5, 4.0, 5.0]
    assert adata.uns["qc"]["scrublet"]["threshold"] == scrublet["threshold"]  # the scrublet record is kept
    assert qc.write_labels() == "artifact_k3p5"  # stored already: nothing recomputed


def test_write_labels_reuses_precomputed_metrics():
    adata = _sim(seed=1)
    rng = np.random.default_rng(0)
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    adata.obs["ncounts"] = totals + rng.integers(0, 500, adata.n_obs)  # "full transcriptome" totals
    with pytest.warns(UserWarning, match="doublet"):
        ck.qc.label_artifacts(adata, precomputed={"total_counts": "ncounts"}, run_scrublet=False)
    qc = QCExplorer(adata, k=4.25)
    assert qc.write_labels() == "artifact_k4p25"
    assert qc.message.startswith("Wrote"), qc.message  # the preview matched the written labels
    # the metrics still come from the precomputed column, as in the user's call
    assert "ncounts" in adata.uns["qc"]["metric_source"]["total_counts"]
    np.testing.assert_array_equal(adata.obs["total_counts"].to_numpy(), adata.obs["ncounts"].to_numpy())
    written = adata.uns["qc"]["thresholds"]["k4p25"]["total_counts"]["lower"]
    assert written == pytest.approx(qc.thresholds["total_counts"])


def test_missing_metric_column_gives_a_message(labelled):
    adata = labelled.copy()
    del adata.obs["pct_counts_ribo"]
    qc = QCExplorer(adata)
    assert not qc.ready
    assert "pct_counts_ribo" in qc.message and "label_artifacts" in qc.message and qc.message_level == "error"
    assert "Traceback" not in qc.view.message.value


def test_static_figure_has_threshold_lines_and_regions(labelled):
    qc = QCExplorer(labelled, k=4)
    fig = qc.static_figure()
    gids = [a.get_gid() for ax in fig.axes for a in ax.get_children()]
    assert gids.count("threshold") == 5 and gids.count("pass_region") == 5 and gids.count("fail_region") == 5
    assert "k = 4" in fig._suptitle.get_text()
