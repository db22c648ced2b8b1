"""label_artifacts: real PBMC counts checked by hand, obs/uns fields, options and bad input."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

import cradlekit
from cradlekit._keys import CRITERIA, artifact_key, flag_key
from cradlekit.errors import InvalidCountsError, MissingKeyError
from cradlekit.qc import label_artifacts, qc_summary, qc_thresholds

PBMC = "pbmc_10k_protein_v3_subset200_scvi_testdata.h5ad"
NORMAN = "perturbench_devel_norman19_mcfaline23_counts500.h5ad"
pytestmark = pytest.mark.filterwarnings("ignore:Element .* without encoding metadata")
HB = ["HBA1", "HBA2", "HBB", "HBD", "HBE1", "HBG1", "HBG2", "HBM", "HBQ1", "HBZ"]


def _hand_fail_counts(values, k, side):
    """Median ± k·raw MAD by hand; MAD == 0 -> median |dev| of the off-median cells."""
    med = np.median(values)
    dev = np.abs(values - med)
    scale = np.median(dev)
    if scale == 0 and (dev > 0).any():
        scale = np.median(dev[dev > 0])
    if side == "lower":
        return int((values < med - k * scale).sum())
    return int((values > med + k * scale).sum())


@pytest.fixture(scope="module")
def pbmc_labelled(shared_data_file):
    raw = ad.read_h5ad(shared_data_file(PBMC))
    labelled = raw.copy()
    label_artifacts(labelled, seed=0)
    return raw, labelled


def test_pbmc_matches_scanpy_and_hand_computed_thresholds(pbmc_labelled):
    raw, adata = pbmc_labelled
    ref = raw.copy()
    names = ref.var_names.to_series()
    ref.var["mt"] = names.str.startswith("MT-").to_numpy()
    ribo = names.str.startswith(("RPS", "RPL")) & ~names.str.startswith("RPS6K")
    ref.var["ribo"] = (ribo & ~names.str.contains("-") & (names != "RPS19BP1")).to_numpy()
    ref.var["hb"] = names.isin(HB).to_numpy()
    assert (ref.var["mt"].sum(), ref.var["ribo"].sum(), ref.var["hb"].sum()) == (13, 83, 4)
    qc, _ = sc.pp.calculate_qc_metrics(ref, qc_vars=["mt", "ribo", "hb"], percent_top=None)
    for metric in ("total_counts", "n_genes_by_counts", "pct_counts_mt", "pct_counts_ribo",
                   "pct_counts_hb"):  # fmt: skip
        np.testing.assert_allclose(adata.obs[metric], qc[metric], rtol=1e-6)
    sc.pp.scrublet(ref, random_state=0, use_approx_neighbors=False, verbose=False)
    np.testing.assert_allclose(adata.obs["doublet_score"], ref.obs["doublet_score"])
    columns = {"total_counts": ("total_counts", "lower"), "n_genes": ("n_genes_by_counts", "lower"),
               "mito": ("pct_counts_mt", "upper"), "ribo": ("pct_counts_ribo", "upper"),
               "hb": ("pct_counts_hb", "upper")}  # fmt: skip
    n_any_fail = 0
    for k in (3, 4, 5):
        for criterion, (metric, side) in columns.items():
            expected = _hand_fail_counts(qc[metric].to_numpy(np.float64), k, side)
            assert int(adata.obs[flag_key(criterion, k)].sum()) == expected, (criterion, k)
        n_doublets = int(ref.obs["predicted_doublet"].sum())
        assert int(adata.obs[flag_key("doublet", k)].sum()) == n_doublets
        n_any_fail += int(adata.obs[artifact_key(k)].sum())
    assert n_any_fail > 0  # the fixture does exercise failures
    assert adata.uns["qc"]["stats"]["hb"]["scale_kind"] == "mad_off_median"
    assert adata.uns["qc"]["gene_sets"]["hb"]["n_genes"] == 4
    np.testing.assert_array_equal(raw.X, adata.X)  # counts untouched


def test_obs_fields_and_summary(pbmc_labelled):
    _, adata = pbmc_labelled
    for k in (3, 4, 5):
        flags = np.column_stack([adata.obs[flag_key(c, k)].to_numpy() for c in CRITERIA])
        assert flags.dtype == bool
        a = adata.obs[artifact_key(k)]
        assert a.dtype == np.uint8
        np.testing.assert_array_equal(a.to_numpy(), flags.any(axis=1).astype(np.uint8))
    # larger k never fails more cells
    assert (adata.obs["artifact_k5"] <= adata.obs["artifact_k3"]).all()
    summary = qc_summary(adata)
    assert list(summary.index) == [*CRITERIA, "any"]
    assert summary.loc["mito", "k3_n_fail"] == adata.obs["qc_fail_mito_k3"].sum()
    assert summary.loc["any", "k3_n_pass"] == (adata.obs["artifact_k3"] == 0).sum()
    assert not summary["skipped"].any()


def test_uns_thresholds_layout(pbmc_labelled):
    _, adata = pbmc_labelled
    qc = adata.uns["qc"]
    np.testing.assert_array_equal(qc["ks"], [3.0, 4.0, 5.0])
    s = qc["stats"]["total_counts"]
    assert qc["thresholds"]["k4"]["total_counts"] == {"lower": s["median"] - 4 * s["mad"]}
    s = qc["stats"]["mito"]
    assert qc["thresholds"]["k3"]["mito"] == {"upper": s["median"] + 3 * s["mad"]}
    assert qc["scrublet"]["random_state"] == 0 and qc["scrublet"]["use_approx_neighbors"] is False
    assert list(qc["skipped"]) == []
    table = qc_thresholds(adata)
    assert list(table.index) == ["total_counts", "n_genes", "mito", "ribo", "hb"]
    assert table.loc["total_counts", "k4"] == qc["thresholds"]["k4"]["total_counts"]["lower"]
    assert table.loc["mito", "k3"] == qc["thresholds"]["k3"]["mito"]["upper"]
    assert table.loc["mito", "fails"] == "above" and table.loc["n_genes", "fails"] == "below"
    assert table.loc["mito", "metric"] == "pct_counts_mt" and not table["skipped"].any()


@pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped:UserWarning")
def test_norman_precomputed_and_skipped_criteria(shared_data_file):
    adata = ad.read_h5ad(shared_data_file(NORMAN))[:400].copy()
    with pytest.warns(UserWarning, match="'mito'.*'ribo'"):
        label_artifacts(
            adata,
            precomputed={"total_counts": "ncounts", "n_genes_by_counts": "ngenes"},
            run_scrublet=False,
            ks=(3, 3.5),
        )
    qc = adata.uns["qc"]
    assert sorted(qc["skipped"]) == ["doublet", "mito", "ribo"]
    assert np.isnan(qc["thresholds"]["k3p5"]["mito"]["upper"])
    assert qc["metric_source"]["total_counts"] == "obs['ncounts']"
    assert qc["stats"]["total_counts"]["median"] == np.median(adata.obs["ncounts"])
    assert qc["gene_sets"]["hb"]["n_genes"] == 3  # HBG2, HBE1, HBZ; not HBEGF
    assert not adata.obs["qc_fail_mito_k3p5"].any() and not adata.obs["qc_fail_doublet_k3"].any()
    assert "predicted_doublet" not in adata.obs
    summary = qc_summary(adata)
    assert summary.loc["ribo", "skipped"] and not summary.loc["hb", "skipped"]
    table = qc_thresholds(adata)
    assert table.loc["ribo", "skipped"] and np.isnan(table.loc["ribo", "k3p5"])
    assert table.loc["total_counts", "median"] == np.median(adata.obs["ncounts"])


def test_sparse_input_stays_sparse_and_unchanged(make_qc_adata):
    adata = make_qc_adata(n_cells=120)
    before = adata.X.copy()
    label_artifacts(adata, seed=1)
    assert sp.issparse(adata.X) and adata.X.format == "csr" and adata.X.dtype == before.dtype
    assert (adata.X != before).nnz == 0
    assert adata.uns["qc"]["scrublet"]["ran"] and "doublet_score" in adata.obs


@pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped:UserWarning")
def test_copy_leaves_input_alone_and_layer(make_qc_adata):
    adata = make_qc_adata(n_cells=60)
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))  # normalised X must be ignored
    out = label_artifacts(adata, layer="counts", run_scrublet=False, copy=True)
    assert out is not adata and "artifact_k3" in out.obs and "artifact_k3" not in adata.obs
    assert out.uns["qc"]["counts"] == "adata.layers['counts']"
    np.testing.assert_allclose(out.obs["total_counts"], adata.layers["counts"].sum(axis=1).A1)


def test_doublet_sources(make_qc_adata, monkeypatch):
    adata = make_qc_adata(n_cells=60)
    adata.obs["my_doublets"] = np.arange(adata.n_obs) < 5

    def no_scrublet(*args, **kwargs):
        raise AssertionError("scrublet must not run")

    monkeypatch.setattr(sc.pp, "scrublet", no_scrublet)
    label_artifacts(adata, precomputed={"predicted_doublet": "my_doublets"})
    assert adata.obs["qc_fail_doublet_k4"].sum() == 5
    assert adata.obs["artifact_k4"][:5].eq(1).all()
    assert adata.uns["qc"]["scrublet"]["source"] == "obs['my_doublets']"
    # run_scrublet=False reuses an existing obs['predicted_doublet'] (written above)
    label_artifacts(adata, run_scrublet=False)
    assert adata.obs["qc_fail_doublet_k3"].sum() == 5
    del adata.obs["predicted_doublet"]
    with pytest.warns(UserWarning, match="'doublet' skipped"):
        label_artifacts(adata, run_scrublet=False)
    assert "doublet" in list(adata.uns["qc"]["skipped"])


def test_scrublet_batch_key_passed_through(make_qc_adata):
    adata = make_qc_adata(n_cells=100)
    label_artifacts(adata, batch_key="batch", seed=0)
    assert set(adata.uns["qc"]["scrublet"]["threshold"]) == {"b0", "b1"}
    assert adata.uns["qc"]["scrublet"]["batch_key"] == "batch"
    with pytest.raises(MissingKeyError, match="batch_key 'lane' not found"):
        label_artifacts(adata, batch_key="lane")
    with pytest.raises(ValueError, match="at least 31 cells per batch"):
        label_artifacts(adata[:40].copy(), batch_key="batch")


@pytest.mark.parametrize("chunk_size", [None, 70])
def test_scrublet_per_group_equals_scanpys_batch_key_call(make_qc_adata, chunk_size):
    # run_scrublet scores one batch (or random chunk) at a time to hold only that group's rows; the
    # scores must be exactly those of scanpy's own batch_key call over the same groups
    from cradlekit.qc.doublets import _CHUNK_KEY, _chunk_labels, run_scrublet

    adata = make_qc_adata(n_cells=240, seed=3)
    calls, params = run_scrublet(adata, seed=2, batch_key="batch", use_approx_neighbors=False, chunk_size=chunk_size)
    ref = adata.copy()
    ref.X = ref.X.astype(np.float32)
    key = "batch"
    if chunk_size is not None:
        ref.obs[_CHUNK_KEY] = _chunk_labels(ref.obs, "batch", chunk_size, 2)
        key = _CHUNK_KEY
    sc.pp.scrublet(ref, batch_key=key, random_state=2, use_approx_neighbors=False, verbose=False)
    np.testing.assert_array_equal(calls["doublet_score"].to_numpy(), ref.obs["doublet_score"].to_numpy())
    np.testing.assert_array_equal(calls["predicted_doublet"].to_numpy(), ref.obs["predicted_doublet"].to_numpy())
    assert params["n_chunks"] == (2 if chunk_size is None else 4)
    expected = {str(b): r.get("threshold", np.nan) for b, r in ref.uns["scrublet"]["batches"].items()}
    assert params["threshold"] == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda X: X + 0.5, "non-integer values"),
        (lambda X: X - 10, "negative values"),
        (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 3, np.nan, X), "1 NaN"),
    ],
)
def test_invalid_counts_rejected(make_qc_adata, edit, match):
    adata = make_qc_adata(n_cells=40, sparse=False)
    adata.X = edit(adata.X).astype(np.float32)
    with pytest.raises(InvalidCountsError, match=match):
        label_artifacts(adata, run_scrublet=False)
    assert "artifact_k3" not in adata.obs


def test_missing_keys_rejected(make_qc_adata):
    adata = make_qc_adata(n_cells=40)
    with pytest.raises(MissingKeyError, match="layer 'counts' not found"):
        label_artifacts(adata, layer="counts", run_scrublet=False)
    with pytest.raises(MissingKeyError, match="precomputed column for 'n_genes_by_counts'"):
        label_artifacts(adata, precomputed={"n_genes_by_counts": "ngenes"}, run_scrublet=False)
    with pytest.raises(ValueError, match="positive finite"):
        label_artifacts(adata, ks=(0,), run_scrublet=False)
    assert cradlekit.qc.label_artifacts is label_artifacts


def test_h5ad_round_trip_of_uns(make_qc_adata, tmp_path):
    adata = make_qc_adata(n_cells=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        label_artifacts(adata, run_scrublet=False, ks=(3, 4.5))
    path = tmp_path / "qc.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    for label in ("k3", "k4p5"):
        for criterion, thr in adata.uns["qc"]["thresholds"][label].items():
            for side, value in thr.items():
                np.testing.assert_equal(back.uns["qc"]["thresholds"][label][criterion][side], value)
    assert back.uns["qc"]["stats"]["hb"] == adata.uns["qc"]["stats"]["hb"]
    assert list(back.uns["qc"]["skipped"]) == ["doublet"]
    assert back.obs["artifact_k4p5"].dtype == np.uint8
    assert qc_summary(back).equals(qc_summary(adata))


def test_relabelling_replaces_old_label_columns(make_qc_adata):
    adata = make_qc_adata(n_cells=60)
    adata.obs["calls"] = False
    label_artifacts(adata, ks=(3, 3.5), precomputed={"predicted_doublet": "calls"})
    assert "artifact_k3p5" in adata.obs and "qc_fail_hb_k3p5" in adata.obs
    label_artifacts(adata, ks=(4,), precomputed={"predicted_doublet": "calls"})
    qc_columns = [c for c in adata.obs if c.startswith(("qc_fail_", "artifact_k"))]
    assert sorted(qc_columns) == sorted([flag_key(c, 4) for c in CRITERIA] + ["artifact_k4"])


def test_non_symbol_var_names_warn_which_criteria_are_skipped(make_qc_adata):
    adata = make_qc_adata(n_cells=200, n_genes=100)
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    with pytest.warns(UserWarning, match=r"'mito'.*'ribo'.*'hb'"):
        label_artifacts(adata, run_scrublet=False)
    assert {"mito", "ribo", "hb"} <= set(adata.uns["qc"]["skipped"])
    assert not adata.obs["qc_fail_mito_k3"].any()
    # the count criteria still work
    assert np.isfinite(adata.uns["qc"]["thresholds"]["k3"]["total_counts"]["lower"])


def test_dense_2d_float_counts_error_names_a_value():
    from cradlekit._validation import check_raw_counts
    from cradlekit.errors import InvalidCountsError

    X = np.ones((3, 4), dtype=np.float32)
    X[2, 1] = 0.5
    with pytest.raises(InvalidCountsError, match=r"non-integer values \(e.g. 0.5\)"):
        check_raw_counts(X)
