"""Counts derived from a log-normalised file: the Norman subset from PerturBench's upstream file."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from cradlekit.data.derive import counts_from_log1p, derive_perturbench_counts
from cradlekit.errors import InvalidCountsError

UPSTREAM = "sources/perturbench_devel.h5ad"
DERIVED = "perturbench_devel_norman19_mcfaline23_counts500.h5ad"


def test_counts_from_log1p_recovers_known_counts_including_a_smallest_count_of_two():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3.0, size=(40, 30)).astype(np.int64)
    counts[:, 0] = 1  # every cell but the last has a count of 1 ...
    counts[-1] = 0
    counts[-1, :4] = [2, 3, 7, 2]  # ... the last one's smallest is 2 (ratios 1.5, 3.5: multiplier 2)
    lib = counts.sum(axis=1, keepdims=True) + rng.integers(100, 5000, size=(40, 1))  # genes outside the panel
    X = np.log1p(counts / lib * 1e4)
    got, info = counts_from_log1p(sp.csr_matrix(X))
    np.testing.assert_array_equal(got.toarray(), counts)
    assert info["count_reconstruction_exact"].all()
    np.testing.assert_allclose(info["norm_lib_size_implied"], lib.ravel(), rtol=1e-9)


def test_counts_from_log1p_refuses_values_that_are_not_log_counts():
    X = sp.csr_matrix(np.array([[0.3, 0.5, 0.0], [0.1, 0.2, 0.7]]))
    with pytest.raises(InvalidCountsError, match="not integral"):
        counts_from_log1p(X)


def test_norman_subset_derived_from_upstream_equals_the_shipped_file(shared_data_file):
    upstream = ad.read_h5ad(shared_data_file(UPSTREAM))
    shipped = ad.read_h5ad(shared_data_file(DERIVED))
    derived = derive_perturbench_counts(upstream)
    assert derived.shape == shipped.shape == (5961, 500)
    assert (derived.obs_names == shipped.obs_names).all() and (derived.var_names == shipped.var_names).all()
    assert np.issubdtype(derived.X.dtype, np.integer) and (derived.X != shipped.X).nnz == 0
    assert (derived.layers["log1p_norm_original"] != shipped.layers["log1p_norm_original"]).nnz == 0
    assert derived.obs["count_reconstruction_exact"].all()
    np.testing.assert_array_equal(derived.obs["total_counts_hvg500"], shipped.obs["total_counts_hvg500"])
    np.testing.assert_allclose(derived.obs["norm_lib_size_implied"], shipped.obs["norm_lib_size_implied"], rtol=1e-12)
    assert derived.obs["count_reconstruction_maxdev"].max() < 1e-9
    # independent check (SOURCES.md): the implied library size is 0.982-0.997 x the full-transcriptome ncounts
    norman = derived.obs["dataset"] == "norman19"
    ratio = derived.obs.loc[norman, "norm_lib_size_implied"] / derived.obs.loc[norman, "ncounts"]
    assert 0.98 < ratio.min() and ratio.max() < 0.998


def test_norman_subset_and_pbmc_load_from_their_upstream_urls(shared_data_file, tmp_path, monkeypatch):
    """The manifest's upstream URLs, served locally from the upstream copies (same paths), give the data."""
    import dataclasses
    import functools
    import http.server
    import shutil
    import threading
    from urllib.parse import urlparse

    from cradlekit.data import get_entry, load_dataset

    monkeypatch.delenv("CRADLEKIT_DATA_DIRS", raising=False)
    monkeypatch.delenv("CRADLEKIT_SHARED_DATA", raising=False)
    root = tmp_path / "raw.githubusercontent.com"
    copies = {"norman_subset": shared_data_file(UPSTREAM),
              "pbmc_qc": shared_data_file("pbmc_10k_protein_v3_subset200_scvi_testdata.h5ad")}
    for name, copy in copies.items():
        target = root / urlparse(get_entry(name).url).path.lstrip("/")
        target.parent.mkdir(parents=True)
        shutil.copy(copy, target)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        local = f"http://127.0.0.1:{httpd.server_address[1]}"
        loaded = {}
        for name in copies:
            entry = get_entry(name)
            assert entry.url.startswith("https://raw.githubusercontent.com/")
            # the same URL path on a local server, and no local copies: the download path is used
            entry = dataclasses.replace(entry, url=local + urlparse(entry.url).path, search_dirs=())
            loaded[name] = load_dataset(entry, cache_dir=tmp_path / "cache", subset="all" if entry.subset else None)
    finally:
        httpd.shutdown()
        httpd.server_close()
    downloaded = {p.name for p in (tmp_path / "cache").rglob("*.h5ad")}
    assert {"perturbench_devel.h5ad", "pbmc_10k_protein_v3_subset200_scvi_testdata.h5ad"} <= downloaded
    shipped = ad.read_h5ad(shared_data_file(DERIVED))
    norman = loaded["norman_subset"]
    assert norman.shape == (5961, 500) and (norman.X != shipped.X).nnz == 0
    assert str(tmp_path / "cache") in norman.uns["cradlekit"]["dataset"]["path"]
    assert norman.uns["cradlekit"]["dataset"]["checksum"] == f"sha256:{get_entry('norman_subset').sha256}"
    assert loaded["pbmc_qc"].shape == (200, 16727)
