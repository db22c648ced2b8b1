"""The README's main job (``cradlekit demo``) on a small simulated screen, and ``cradlekit qc``."""

from __future__ import annotations

import anndata as ad

from cradlekit.cli import main


def test_demo_writes_labelled_data_and_summary(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n-cells", "1500", "--n-genes", "300", "--epochs", "2"]) == 0
    adata = ad.read_h5ad(tmp_path / "demo.h5ad")
    assert {"artifact_k3", "artifact_k4", "artifact_k5", "split", "cf_has_reference"} <= set(adata.obs)
    assert set(adata.obs["split"].unique()) == {"train", "val", "test"}
    assert "cf_reference_table" in adata.uns and "cf_reference_row" in adata.obs
    summary = (tmp_path / "summary.md").read_text()
    for section in ("QC fail counts", "Recovery of injected artifacts", "Split", "Held-out combinations",
                    "The default model beside the conditional VAE", "held-out ATE-ρ (truth)", "QCPR ceiling"):
        assert section in summary
    section = summary.split("The default model beside the conditional VAE", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    labels = [line.split("|")[1].strip() for line in table[1:]]
    assert labels[0].startswith("CRADLE-VAE, default objective") and "Conditional VAE" in labels
    assert "Baseline: mean of training perturbations" in labels and "Baseline: additive (training singles)" in labels
    assert any("hit the cap" in line for line in table)  # 2 epochs: the models are marked as not converged
    assert list((tmp_path / "runs" / "models").glob("cradle_default_*/registry.json"))
    assert len(list((tmp_path / "runs" / "runs").glob("*.json"))) == 4
    assert "Recovery" in capsys.readouterr().out


def test_qc_command_labels_a_file(tmp_path, make_qc_adata):
    src = make_qc_adata(n_cells=200, n_genes=100)
    src.write_h5ad(tmp_path / "in.h5ad")
    assert main(["qc", str(tmp_path / "in.h5ad"), str(tmp_path / "out.h5ad"), "--no-scrublet"]) == 0
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert "artifact_k3" in out.obs and "qc" in out.uns
