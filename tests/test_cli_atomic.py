"""Every file the CLI writes goes through a temporary file and a rename (issue 12): interrupting
``cradlekit qc data.h5ad data.h5ad`` while it writes leaves the input intact."""

from __future__ import annotations

import anndata as ad
import pytest

from cradlekit.cli import main


def test_qc_in_place_interrupted_while_writing_keeps_the_input(tmp_path, make_qc_adata, monkeypatch):
    path = tmp_path / "data.h5ad"
    make_qc_adata(n_cells=200, n_genes=100).write_h5ad(path)
    before = path.read_bytes()
    real = ad.AnnData.write_h5ad

    def killed_midway(self, filename, *args, **kwargs):  # the process dies with half a file written
        real(self, filename, *args, **kwargs)
        with open(filename, "r+b") as fh:
            fh.truncate(len(before) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(ad.AnnData, "write_h5ad", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        main(["qc", str(path), str(path), "--no-scrublet"])
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad"]
    monkeypatch.setattr(ad.AnnData, "write_h5ad", real)
    assert main(["qc", str(path), str(path), "--no-scrublet"]) == 0  # in place, completed
    assert "artifact_k3" in ad.read_h5ad(path).obs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5ad"]  # no temporary file left
