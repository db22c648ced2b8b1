"""Own data from the shell and in configs: cradlekit qc options, dataset {path: ...}, one-line errors."""

from __future__ import annotations

import anndata as ad
import pytest
import yaml

from cradlekit.cli import main
from cradlekit.data import EXAMPLE_QC_METRICS, write_example_screen
from cradlekit.experiments import ConfigError, load_config


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    return write_example_screen(tmp_path_factory.mktemp("own") / "screen.h5ad", n_cells=800, n_genes=160, seed=3)


def _config(folder, **dataset):
    raw = {"name": "own", "output_dir": str(folder / "out"), "models": ["cvae"], "ks": [3], "seeds": [0],
           "dataset": {"path": "screen.h5ad", "perturbation_key": "guide", "control_label": "non-targeting",
                       "qc_metrics": dict(EXAMPLE_QC_METRICS), **dataset}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_qc_command_uses_named_full_transcriptome_metrics(screen, tmp_path):
    import cradlekit as ck

    out = tmp_path / "out.h5ad"
    args = [
        "qc",
        str(screen),
        str(out),
        "--no-scrublet",
        "--perturbation-key",
        "guide",
        "--control-label",
        "non-targeting",
    ]
    for metric, column in EXAMPLE_QC_METRICS.items():
        args += ["--precomputed", f"{metric}={column}"]
    assert main(args) == 0
    got = ad.read_h5ad(out)
    assert got.uns["qc"]["metric_source"]["pct_counts_mt"] == "obs['pct_counts_mt_full']"
    assert "guide" in got.obs and set(got.obs["perturbation"]) >= {"control"}
    oracle = ck.data.read_h5ad(screen)  # the library call with the same metrics gives the same labels
    ck.qc.label_artifacts(oracle, precomputed=EXAMPLE_QC_METRICS, run_scrublet=False)
    assert (got.obs["artifact_k3"].to_numpy() == oracle.obs["artifact_k3"].to_numpy()).all()
    # without them the panel is labelled on its own genes: a different, warned-about result
    assert main(["qc", str(screen), str(tmp_path / "panel.h5ad"), "--no-scrublet"]) == 0
    panel = ad.read_h5ad(tmp_path / "panel.h5ad")
    assert panel.uns["qc"]["metric_source"]["total_counts"].startswith("computed from adata.X")


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(screen, tmp_path, capsys):
    rc = main(["qc", str(screen), str(tmp_path / "o.h5ad"), "--precomputed", "total_counts"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "METRIC=COLUMN" in err
    bad = _config(screen.parent, perturbation_key="sgRNA")
    rc = main(["run", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "dataset.perturbation_key" in err and "'sgRNA'" in err and "screen.h5ad" in err
    with pytest.raises(ConfigError, match="dataset.perturbation_key"):
        main(["--debug", "run", str(bad)])


def test_config_dataset_path_checks_each_field_up_front(screen):
    folder = screen.parent
    config = load_config(_config(folder))
    assert config.dataset.path == str(screen.resolve()) and config.dataset.name == "screen"
    cases = {
        "dataset.control_label 'NT' has no cell": {"control_label": "NT"},
        "dataset.qc_metrics.pct_counts_mt: column 'mt'": {"qc_metrics": {"pct_counts_mt": "mt"}},
        "unknown metric": {"qc_metrics": {"pct_mito": "pct_counts_mt_full"}},
        "no such file": {"path": "other.h5ad"},
        "dataset.counts_layer 'counts'": {"counts_layer": "counts"},
    }
    for message, change in cases.items():
        with pytest.raises(ConfigError, match=message):
            load_config(_config(folder, **change))
    with pytest.raises(ConfigError, match="apply to your own file only"):
        load_config(_config(folder, path=None, name="simulator"))


def test_an_edited_file_is_prepared_again(screen, tmp_path):
    import shutil

    from cradlekit.experiments.grid import prepared_key

    shutil.copy(screen, tmp_path / "screen.h5ad")
    before = prepared_key(load_config(_config(tmp_path)))
    write_example_screen(tmp_path / "screen.h5ad", n_cells=800, n_genes=160, seed=4)
    assert prepared_key(load_config(_config(tmp_path))) != before
