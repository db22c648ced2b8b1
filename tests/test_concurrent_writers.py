"""Concurrent writers (issue 20, item 3): a second training into a checkpoint folder in use is refused; a
grid with other settings is refused on an output folder in use while runners of one grid share it; the
prepared files of a grid are built once when two runners start together."""

from __future__ import annotations

import threading
import time

import pytest

from cradlekit import errors
from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
from cradlekit.model import PerturbationModel
from cradlekit.qc import label_artifacts
from cradlekit.train import load_checkpoint

SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
FAST = dict(batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")
TINY_GRID = {
    "name": "concurrent",
    "dataset": {
        "name": "simulator",
        "kwargs": {"n_cells": 400, "n_genes": 150, "n_single": 4, "n_combinations": 4, "true_ate_cells": 20, "seed": 0},
    },
    "models": ["cvae"],
    "ks": [3],
    "seeds": [0, 1],
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

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def prepared():
    adata = simulate_perturbseq(n_cells=600, n_genes=150, true_ate_cells=20, seed=1)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    return adata


def test_a_second_training_into_a_checkpoint_folder_in_use_is_refused(prepared, tmp_path):
    """Seed 1 starts into the folder while seed 0 trains there (before either wrote a checkpoint): refused,
    and the folder holds seed 0's run, complete."""
    ckpt = tmp_path / "ckpt"
    refused = []

    class SecondTraining:  # starts another training while the first one holds the folder
        def on_train_start(self, trainer):
            try:
                PerturbationModel(prepared.copy(), **SMALL).train(max_epochs=2, seed=1, checkpoint_dir=ckpt, **FAST)
            except Exception as err:  # noqa: BLE001 - recorded and checked below
                refused.append(err)
            else:
                refused.append(None)

        def on_epoch_end(self, trainer, record):
            pass

        def on_train_end(self, trainer):
            pass

    first = PerturbationModel(prepared.copy(), **SMALL)
    first.train(max_epochs=3, seed=0, checkpoint_dir=ckpt, callbacks=[SecondTraining()], **FAST)
    (err,) = refused
    assert err is not None and str(ckpt) in str(err) and "in use by another training" in str(err)
    assert isinstance(err, OSError) and isinstance(err, errors.FolderInUseError)
    last = load_checkpoint(ckpt / "last.pt")
    assert last["run"]["training"]["seed"] == 0 and last["epoch"] == 3  # the first run's, complete
    assert [r["epoch"] for r in last["history"]] == [1, 2, 3]
    # the folder is free again once the first training has ended: a resume goes on from epoch 3
    again = PerturbationModel(prepared.copy(), **SMALL)
    again.train(max_epochs=4, seed=0, checkpoint_dir=ckpt, **FAST)
    assert again.train_info["epochs"] == 4


def test_the_checkpoint_folder_lock_is_held_only_while_training(prepared, tmp_path):
    from cradlekit._locks import RunLock, held_elsewhere
    from cradlekit.model._training import CHECKPOINT_LOCK

    seen = []
    model = PerturbationModel(prepared.copy(), **SMALL)
    model.train(
        max_epochs=1,
        checkpoint_dir=tmp_path,
        callbacks=[lambda r: seen.append(held_elsewhere(tmp_path / CHECKPOINT_LOCK))],
        **FAST,
    )
    assert seen == [True] and not held_elsewhere(tmp_path / CHECKPOINT_LOCK)
    other = RunLock(tmp_path / CHECKPOINT_LOCK)  # another process would hold it like this
    assert other.acquire()
    with pytest.raises(errors.FolderInUseError):
        model.train(max_epochs=2, checkpoint_dir=tmp_path, **FAST)
    other.release()


@pytest.fixture
def tiny(tmp_path):
    from cradlekit.experiments import config_from_dict

    return config_from_dict({**TINY_GRID, "output_dir": str(tmp_path / "grid")})


def test_a_grid_with_other_settings_is_refused_while_one_runs_in_the_folder(tiny):
    import pandas as pd

    from cradlekit.experiments import run_grid, runner as runner_module

    other = tiny.replace(train={**tiny.to_dict()["train"], "lr": 1e-3})  # grid B: other settings, same folder
    outcome = []

    def grid_b_starts(spec, row):  # while grid A runs (after its first run)
        if not outcome:
            try:
                run_grid(other)
            except Exception as err:  # noqa: BLE001 - recorded and checked below
                outcome.append(err)
            else:
                outcome.append(None)

    result = run_grid(tiny, callback=grid_b_starts)
    (err,) = outcome
    assert err is not None and str(tiny.output_path) in str(err) and "other settings" in str(err)
    assert isinstance(err, errors.FolderInUseError)
    written = pd.read_csv(tiny.output_path / "results.csv")
    assert len(written) == 2 and set(written["config_hash"]) == set(result.results["config_hash"])
    assert len(list((tiny.output_path / "runs").glob("*.json"))) == 2  # grid B ran nothing
    runner_module._claim_folder(tiny).release()  # the folder is free again
    runner_module._claim_folder(other).release()


def test_runners_of_one_grid_share_the_folder_lock(tiny):
    from cradlekit.experiments import runner as runner_module

    first = runner_module._claim_folder(tiny)  # a runner of grid A is running
    second = runner_module._claim_folder(tiny.replace())  # another runner of grid A joins
    with pytest.raises(errors.FolderInUseError):
        runner_module._claim_folder(tiny.replace(seeds=[0, 1, 2]))  # grid B does not
    first.release()
    with pytest.raises(errors.FolderInUseError):  # still one runner of A
        runner_module._claim_folder(tiny.replace(seeds=[0, 1, 2]))
    second.release()
    runner_module._claim_folder(tiny.replace(seeds=[0, 1, 2])).release()


def test_two_runners_of_one_grid_build_each_prepared_file_once(tiny, monkeypatch):
    from cradlekit.experiments import prepare

    loads, writes = [], []
    real_load, real_write = prepare.load_raw, prepare.write_h5ad_atomic
    second: list[threading.Thread] = []
    failures: list[BaseException] = []

    def runner_two():
        try:
            prepare.prepare_all(tiny)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            failures.append(err)

    def load_raw(config):
        loads.append(threading.current_thread().name)
        if not second:  # runner one is building: runner two starts now
            second.append(threading.Thread(target=runner_two, name="runner two"))
            second[0].start()
            time.sleep(0.5)  # gives runner two time to look for the files (it must wait instead)
        return real_load(config)

    monkeypatch.setattr(prepare, "load_raw", load_raw)
    monkeypatch.setattr(
        prepare, "write_h5ad_atomic", lambda adata, path, **kw: writes.append(path) or real_write(adata, path, **kw)
    )
    paths = prepare.prepare_all(tiny)
    second[0].join()
    assert not failures
    assert len(loads) == 1  # the dataset was loaded and QC-labelled once
    assert sorted(writes) == sorted({*writes}) and len(writes) == 1 + len(paths)  # every file written once
    assert all(p.exists() for p in paths.values())
