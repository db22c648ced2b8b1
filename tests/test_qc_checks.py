"""QC warnings: thresholds that cannot fail, metrics on a gene panel, per-batch thresholds."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest

from cradlekit.qc import label_artifacts


def _messages(record) -> str:
    return " | ".join(str(w.message) for w in record)


def _label(adata, **kwargs) -> str:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        label_artifacts(adata, run_scrublet=False, **kwargs)
    return _messages(record)


def _raw_mad(x) -> tuple[float, float]:
    med = float(np.median(x))
    return med, float(np.median(np.abs(x - med)))


def test_a_threshold_below_zero_is_reported_as_unable_to_fail(make_qc_adata, tmp_path):
    adata = make_qc_adata(n_cells=400, n_genes=200, seed=0)
    # a mixed population: full-transcriptome totals of 150 or ~6000, so median - 3 MAD < 0
    rng = np.random.default_rng(0)
    adata.obs["total_full"] = np.where(np.arange(400) % 2 == 0, 150.0, rng.normal(6000, 300, 400)).round()
    med, mad = _raw_mad(adata.obs["total_full"].to_numpy())
    assert med - 3 * mad < 0  # the oracle: this rule cannot fail a cell
    text = _label(adata, precomputed={"total_counts": "total_full"})
    assert "cannot fail any cell" in text and "total_counts at k=3" in text
    assert "total_counts" in list(adata.uns["qc"]["cannot_fail"]["k3"])
    assert not adata.obs["qc_fail_total_counts_k3"].any()
    adata.write_h5ad(tmp_path / "a.h5ad")  # the record survives h5ad
    assert "total_counts" in list(ad.read_h5ad(tmp_path / "a.h5ad").uns["qc"]["cannot_fail"]["k3"])
    homogeneous = make_qc_adata(n_cells=400, n_genes=200, seed=1)
    homogeneous.obs["total_full"] = rng.normal(6000, 300, 400).round()
    text = _label(homogeneous, precomputed={"total_counts": "total_full"})
    assert "total_counts at k=3" not in text and "k3" not in homogeneous.uns["qc"]["cannot_fail"]


def test_panel_metrics_warn_unless_full_transcriptome_metrics_are_given(make_qc_adata):
    adata = make_qc_adata(n_cells=300, n_genes=200, seed=0)  # 200 genes, 3 of the 13 MT genes
    text = _label(adata.copy())
    assert "cover only 200 genes" in text and "only 3 of the 13 mitochondrial genes" in text
    totals = np.asarray(adata.X.sum(1)).ravel() * 20.0
    adata.obs["total_full"], adata.obs["genes_full"] = totals, np.full(adata.n_obs, 3000.0)
    adata.obs["mt_full"] = np.random.default_rng(0).uniform(1, 8, adata.n_obs)
    text = _label(adata, precomputed={"total_counts": "total_full", "n_genes_by_counts": "genes_full",
                                      "pct_counts_mt": "mt_full"})
    assert "computed from the genes in adata" not in text


def test_batches_with_different_depth_warn_and_can_have_their_own_thresholds(make_qc_adata):
    deep = make_qc_adata(n_cells=300, n_genes=200, seed=0)
    shallow = make_qc_adata(n_cells=300, n_genes=200, seed=1, lib_scale=0.2)
    adata = ad.concat({"deep": deep, "shallow": shallow}, label="lane", index_unique="-")
    text = _label(adata.copy(), batch_key="lane")
    assert "differ strongly between batches" in text and "total_counts" in text
    labelled = adata.copy()
    _label(labelled, batch_key="lane", batch_thresholds=True)
    record = labelled.uns["qc"]["batches"]
    assert record["per_batch_thresholds"] and "total_counts" in list(record["differ_strongly"])
    total = labelled.obs["total_counts"].to_numpy()
    lane = labelled.obs["lane"].astype(str).to_numpy()
    expected = np.zeros(len(total), dtype=bool)
    for batch in ("deep", "shallow"):  # oracle: median - 3 raw MAD within each lane
        med, mad = _raw_mad(total[lane == batch])
        expected[lane == batch] = total[lane == batch] < med - 3 * mad
        assert record["batches"][batch]["thresholds"]["k3"]["total_counts"]["lower"] == pytest.approx(med - 3 * mad)
    np.testing.assert_array_equal(labelled.obs["qc_fail_total_counts_k3"].to_numpy(), expected)
    assert (labelled.obs["artifact_k3"].to_numpy(bool) >= expected).all()
    # pooled thresholds (the paper's rule) are still the default and still recorded
    pooled = adata.copy()
    _label(pooled, batch_key="lane")
    assert (
        labelled.uns["qc"]["thresholds"]["k3"]["total_counts"]["lower"]
        == pooled.uns["qc"]["thresholds"]["k3"]["total_counts"]["lower"]
    )
    assert not np.array_equal(pooled.obs["qc_fail_total_counts_k3"].to_numpy(), expected)
    # homogeneous batches (cells alternately assigned) raise no warning
    assert "differ strongly" not in _label(deep.copy(), batch_key="batch")
    with pytest.raises(ValueError, match="batch_thresholds=True needs batch_key"):
        label_artifacts(deep.copy(), run_scrublet=False, batch_key=None, batch_thresholds=True)


def test_scrublet_on_a_small_panel_warns_and_qc_outputs_name_each_metric_source(make_qc_adata):
    from cradlekit.qc import qc_thresholds

    adata = make_qc_adata(n_cells=300, n_genes=200, seed=2)
    adata.obs["total_full"] = np.asarray(adata.X.sum(axis=1)).ravel() * 40.0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        label_artifacts(adata, precomputed={"total_counts": "total_full"}, run_scrublet=True)
    text = _messages(record)
    n = int(adata.obs["predicted_doublet"].sum())
    assert f"scrublet called {n} doublets" in text and "panel of only 200 genes" in text
    table = qc_thresholds(adata)  # where each thresholded metric came from
    assert table.loc["total_counts", "source"] == "obs['total_full']"
    assert table.loc["n_genes", "source"] == "computed from adata.X (200 genes)"
    assert table.loc["mito", "source"].startswith("computed from adata.X (3 MT- genes)")
    # precomputed doublet calls: no warning (scrublet did not run on the panel)
    again = make_qc_adata(n_cells=300, n_genes=200, seed=2)
    again.obs["doublet_full"] = False
    text = _label(again, precomputed={"predicted_doublet": "doublet_full"})
    assert "scrublet called" not in text


def test_describe_metric_sources_names_obs_panel_and_skipped_metrics():
    from cradlekit.qc.checks import describe_metric_sources

    line = describe_metric_sources({"total_counts": "obs['total_counts_full']",
                                    "n_genes_by_counts": "computed from adata.X (299 genes)",
                                    "pct_counts_mt": "skipped (no MT- genes)"}, n_genes=299)  # fmt: skip
    assert line == ("QC metrics from obs: total_counts = obs['total_counts_full']; from the 299 genes in the counts: "
                    "n_genes_by_counts; skipped: pct_counts_mt")  # fmt: skip
