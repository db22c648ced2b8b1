"""The dataset manifest: every entry complete, the package finds it, malformed entries are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cradlekit.data import manifest as manifest_mod
from cradlekit.data.label_layouts import get_normalizer
from cradlekit.data.manifest import (
    REPO_ROOT,
    REQUIRED_FIELDS,
    DatasetEntry,
    ManifestError,
    get_entry,
    load_manifest,
    manifest_path,
)
from cradlekit.errors import MissingKeyError

EXPECTED = {"norman", "dixit", "replogle", "adamson", "norman_subset", "pbmc_qc"}


def test_manifest_lists_every_dataset_with_required_fields():
    entries = load_manifest()
    assert set(entries) == EXPECTED
    raw = yaml.safe_load((REPO_ROOT / "data_manifest.yaml").read_text())["datasets"]
    for name, entry in entries.items():
        assert isinstance(entry, DatasetEntry) and entry.name == name
        assert set(REQUIRED_FIELDS) <= set(raw[name]), name
        assert entry.format == "h5ad" and entry.filename.endswith(".h5ad")
        assert entry.description and entry.citation and entry.license and entry.doi
        assert entry.local_env == "CRADLEKIT_DATA_DIRS" and entry.search_dirs == (
            "../shared/data",
            "../shared/data/sources",
        )
        if entry.has_perturbations:
            assert callable(get_normalizer(entry.normalizer)) and entry.perturbation_key
    assert entries["pbmc_qc"].normalizer is None


def test_manifest_urls_checksums_and_layout_facts():
    e = load_manifest()
    assert e["norman"].url == "https://ndownloader.figshare.com/files/34027562"
    assert e["dixit"].url == "https://ndownloader.figshare.com/files/34011689"
    assert e["replogle"].url.endswith("/files/35775507")
    assert e["adamson"].url.startswith("https://zenodo.org/records/7041849/files/AdamsonWeissman2016_GSM2406681")
    # public upstream files at the commits named in shared/data/SOURCES.md
    assert e["norman_subset"].url == (
        "https://raw.githubusercontent.com/altoslabs/perturbench/d357dfae3b50968e800e9f5f273ff145080ae67c/"
        "src/perturbench/data/resources/devel.h5ad"
    )
    assert e["pbmc_qc"].url == (
        "https://raw.githubusercontent.com/scverse/scvi-tools/93dc4fae21917406673206320c8a3002433c4a5d/"
        "tests/test_data/pbmc_10k_protein_v3.h5ad"
    )
    assert e["norman_subset"].sha256 == "220998f5630c813228c8661c86dd52244b9ac87127511289af90e0d900d8429b"
    assert e["norman_subset"].size_bytes == 1142678 and e["norman_subset"].derive == "perturbench_counts"
    assert e["norman_subset"].derived_sha256 == "e6e6967a84982a92e34b6eea17abfc61d888b58b5c0d7792a39c81765f64d4f7"
    assert e["pbmc_qc"].sha256 == "512fe360bd1cc79821f67959cc47e19b92bb7edbbb9351da5d1e9d70b35102a2"
    assert e["dixit"].known_hash is None  # trust on first use
    assert e["replogle"].known_hash.startswith("md5:")
    assert e["norman"].counts_layer == "counts" and e["norman"].perturbation_key == "guide_identity"
    assert e["adamson"].perturbation_key == "perturbation" and e["replogle"].perturbation_key == "sgID_AB"
    assert e["norman_subset"].precomputed_qc == {"total_counts": "ncounts", "n_genes_by_counts": "ngenes"}
    sel = e["replogle"].selection
    guides = [g for g in sel["keep_obs"].replace("\n", ",").split(",") if g]
    genes = [g for g in sel["keep_var"].replace("\n", ",").split(",") if g]
    assert len(guides) == 683  # as printed by the Lopez et al. notebook (two names repeated)
    assert len(set(genes)) == len(genes) == 1186


def test_package_finds_the_manifest_and_it_is_the_root_file():
    packaged = Path(__file__).resolve().parents[1] / "cradlekit" / "data" / "data_manifest.yaml"
    assert packaged.is_file()
    assert packaged.read_bytes() == (REPO_ROOT / "data_manifest.yaml").read_bytes()
    assert manifest_path().read_bytes() == packaged.read_bytes()


def test_manifest_path_falls_back_to_repo_root(tmp_path, monkeypatch):
    # git on a file system without symlinks checks the link out as a text file holding its target
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "data_manifest.yaml").write_text("../../data_manifest.yaml")
    monkeypatch.setattr(manifest_mod.resources, "files", lambda _: pkg)
    assert manifest_path() == REPO_ROOT / "data_manifest.yaml"


def _write(tmp_path, entry: dict, name: str = "toy") -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "datasets": {name: entry}}))
    return path


def _good_entry() -> dict:
    return {
        "description": "toy", "url": None, "filename": "toy.h5ad", "sha256": "a" * 64, "format": "h5ad",
        "counts_layer": None, "gene_symbols": None, "perturbation_key": "condition", "normalizer": "canonical",
        "citation": "nobody", "license": "none",
    }


def test_valid_custom_manifest(tmp_path):
    entry = load_manifest(_write(tmp_path, _good_entry()))["toy"]
    assert entry.known_hash == "sha256:" + "a" * 64 and entry.search_dirs == ()


@pytest.mark.parametrize("field", ["filename", "sha256", "citation", "counts_layer", "normalizer"])
def test_missing_required_field_is_named(tmp_path, field):
    bad = _good_entry()
    del bad[field]
    with pytest.raises(MissingKeyError, match=field):
        load_manifest(_write(tmp_path, bad))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sha256": "XYZ"}, "sha256"),
        ({"md5": "123"}, "md5"),
        ({"sha256": None}, "local-only"),
        ({"url": "file:///etc/passwd", "sha256": None}, "url"),
        ({"format": "loom"}, "format"),
        ({"filename": "../x.h5ad"}, "bare file name"),
        ({"size_bytes": -3}, "size_bytes"),
        ({"favourite_colour": "blue"}, "unknown field"),
        ({"control_pattern": "("}, "regex"),
        ({"perturbation_key": None}, "perturbation_key"),
        ({"subset": {"column": "dataset"}}, "subset"),
    ],
)
def test_malformed_entries_are_refused(tmp_path, change, message):
    bad = {**_good_entry(), **change}
    with pytest.raises(ManifestError, match=message):
        load_manifest(_write(tmp_path, bad))


def test_top_level_must_hold_datasets(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("just: text\n")
    with pytest.raises(ManifestError, match="datasets"):
        load_manifest(path)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(MissingKeyError, match="norman_subset"):
        get_entry("nope")
