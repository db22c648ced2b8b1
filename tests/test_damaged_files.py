"""Damaged .h5ad files (issue 20, item 1): as user input the error names the file and the way on; as a
prepared file in the experiment runner's cache it is moved aside (never deleted) and built again, so a
grid does not fail on every rerun."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradlekit import errors
from cradlekit.cli import main
from cradlekit.data import load_dataset, read_h5ad

TINY_GRID = {
    "name": "damaged_cache",
    "dataset": {
        "name": "simulator",
        "kwargs": {"n_cells": 400, "n_genes": 150, "n_single": 4, "n_combinations": 4, "true_ate_cells": 20, "seed": 0},
    },
    "models": ["cvae"],
    "ks": [3],
    "seeds": [0],
    "qc": {"run_scrublet": False, "seed": 0},
    "model_options": {"latent_dim": 4, "hidden_dim": 16, "num_particles": 1},
    "train": {
        "max_epochs": 2,
        "max_steps": 4,
        "lr": 3.0e-3,
        "batch_size": 128,
        "accelerator": "cpu",
        "torch_threads": 1,
    },
    "evaluation": {"n_model_cells": 20, "n_qcpr_cells": 10, "run_scrublet": False},
}


def _h5ad(path):
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({"guide": ["NT"] * 10 + ["A"] * 10}, index=[f"c{i}" for i in range(20)])
    ad.AnnData(rng.poisson(2, (20, 8)).astype(np.float32), obs=obs).write_h5ad(path)
    return path


def _dense(X) -> np.ndarray:
    return X.toarray() if hasattr(X, "toarray") else np.asarray(X)


def _damage_header(path) -> bytes:
    """Overwrite the HDF5 signature (what a bad copy or a disk error does to the first block)."""
    data = bytearray(path.read_bytes())
    data[:16] = b"\x00" * 16
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("reader", ["read_h5ad", "load_dataset"])
def test_a_damaged_input_file_is_named_with_the_way_on(tmp_path, reader):
    path = _h5ad(tmp_path / "screen.h5ad")
    _damage_header(path)
    read = read_h5ad if reader == "read_h5ad" else load_dataset
    with pytest.raises(OSError) as err:  # still an OSError for old except clauses
        read(path)
    message = str(err.value)
    assert str(path) in message and "damaged or truncated" in message and "copy or download it again" in message
    assert isinstance(err.value, errors.DamagedFileError)


def test_cli_qc_on_a_damaged_file_prints_one_line_naming_it(tmp_path, capsys):
    path = _h5ad(tmp_path / "screen.h5ad")
    _damage_header(path)
    assert main(["qc", str(path), str(tmp_path / "out.h5ad"), "--no-scrublet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "DamagedFileError" in err and str(path) in err
    assert not (tmp_path / "out.h5ad").exists()


@pytest.fixture
def tiny_config(tmp_path):
    from cradlekit.experiments import config_from_dict

    return config_from_dict({**TINY_GRID, "output_dir": str(tmp_path / "grid")})


def test_a_damaged_prepared_file_is_moved_aside_and_built_again(tiny_config, single_thread):
    from cradlekit.experiments.prepare import _base_path, prepare_all, read_prepared

    paths = prepare_all(tiny_config)
    (path,) = paths.values()
    good = read_prepared(path)
    damaged = _damage_header(path)
    base_damaged = _damage_header(_base_path(tiny_config))
    again = prepare_all(tiny_config)  # what the runner calls before every grid
    assert again == paths
    rebuilt = read_prepared(path)  # readable again, and the same data
    assert rebuilt.obs_names.equals(good.obs_names)
    assert np.array_equal(_dense(rebuilt.X), _dense(good.X)) and rebuilt.obs.equals(good.obs)
    moved = sorted((path.parent / ".moved-aside").iterdir())
    assert sorted(m.read_bytes() for m in moved) == sorted([damaged, base_damaged])  # kept, not deleted


def test_reading_a_damaged_prepared_file_moves_it_aside_and_says_the_grid_rebuilds_it(tiny_config, single_thread):
    from cradlekit.experiments.prepare import prepare_all, read_prepared

    (path,) = prepare_all(tiny_config).values()
    damaged = _damage_header(path)
    with pytest.raises(OSError) as err:
        read_prepared(path)
    moved = path.parent / ".moved-aside" / f"{path.name}.unreadable"
    assert str(path) in str(err.value) and str(moved) in str(err.value) and "run the grid again" in str(err.value)
    assert isinstance(err.value, errors.DamagedFileError)
    assert moved.read_bytes() == damaged and not path.exists()
    prepare_all(tiny_config)
    assert read_prepared(path).n_obs > 0  # the next run of the grid built it again
