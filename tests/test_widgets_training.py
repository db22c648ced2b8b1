"""TrainingController: background training with live history, stop, resume, and readable failures."""

from __future__ import annotations

import time

import pytest

import cradlekit as ck
from cradlekit.errors import NonFiniteLossError
from cradlekit.widgets import TrainingController

TIMEOUT = 60  # seconds any wait may take
TINY = {"latent_dim": 4, "hidden_dim": 8, "batch_size": 128, "patience": 0}


def _sim():
    return ck.data.simulate_perturbseq(n_cells=500, n_genes=200, n_single=4, n_combinations=4,
                                       true_ate_cells=20, seed=0)  # fmt: skip


@pytest.fixture(scope="module")
def prepared():
    adata = _sim()
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    return adata


def _controller(adata, tmp_path, **traits):
    return TrainingController(adata, checkpoint_dir=tmp_path / "ckpt", model_options={"num_particles": 1},
                              **{**TINY, **traits})  # fmt: skip


def _wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_unprepared_data_gives_a_message(tmp_path, single_thread):
    adata = _sim()
    tc = _controller(adata, tmp_path)
    assert tc.start() is False
    assert tc.status == "failed" and not tc.running and tc.model is None
    assert tc.message.startswith("Could not start training:") and "split_combinations" in tc.message
    assert "Traceback" not in tc.view.message.value and "split_combinations" in tc.view.message.value
    ck.data.split_combinations(adata)
    assert tc.start() is False and "label_artifacts" in tc.message
    assert tc.resume() is False and "Nothing to resume" in tc.message


def test_cuda_request_without_cuda_gives_a_message(prepared, tmp_path, single_thread):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    tc = _controller(prepared, tmp_path, accelerator="cuda")
    assert tc.start() is False and "CUDA is not available" in tc.message and not tc.running


def test_training_runs_in_a_thread_with_live_history(prepared, tmp_path, single_thread):
    tc = _controller(prepared, tmp_path, max_epochs=4)
    view = tc.view  # built before training: updated from the training thread
    grew = []
    tc.observe(lambda ch: grew.append(len(ch["new"])), names="history")
    assert tc.start() is True
    assert tc.status in ("running", "finished")
    assert tc.wait(TIMEOUT), "training did not finish in time"
    assert tc.status == "finished", tc.message
    assert [r["epoch"] for r in tc.history] == [1, 2, 3, 4] and tc.epoch == 4 and tc.progress == 1.0
    assert grew[-4:] == [1, 2, 3, 4]
    record = tc.history[-1]
    for key in ("train_loss", "val_loss", "train_elbo", "val_elbo", "train_j2", "val_j2"):
        assert key in record
    assert tc.device == "cpu" and tc.model.train_info["device"] == "cpu"
    assert tc.checkpoint_path.is_file() and str(tc.checkpoint_path) in view.state.value
    assert tc.model.is_trained and tc.train_info["epochs"] == 4
    assert view.progress.value == 4 and view.progress.max == 4
    assert "finished" in view.state.value and view.start.disabled is False and view.stop.disabled is True
    assert view.image.widget.value[:4] == b"\x89PNG"
    assert tc.message.startswith("Finished after epoch 4 on cpu")
    fig = tc.static_figure()
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]  # -ELBO and J2, train and val


def test_stop_then_resume_continues_from_the_checkpoint(prepared, tmp_path, single_thread):
    tc = _controller(prepared, tmp_path, max_epochs=100_000)
    assert tc.start()
    assert _wait_until(lambda: tc.epoch >= 2), "no epoch finished in time"
    assert tc.start() is False and "already running" in tc.message
    tc.stop()
    assert tc.status in ("stopping", "stopped")
    assert tc.wait(TIMEOUT) and tc.status == "stopped", tc.message
    stopped_at = tc.epoch
    assert 2 <= stopped_at < 100_000 and tc.message.startswith("Stopped after epoch")
    assert [r["epoch"] for r in tc.history] == list(range(1, stopped_at + 1))

    tc.max_epochs = stopped_at + 2
    assert tc.resume()
    assert tc.wait(TIMEOUT) and tc.status == "finished", tc.message
    assert [r["epoch"] for r in tc.history] == list(range(1, stopped_at + 3))  # resumed, not restarted
    assert tc.model.train_info["epochs"] == stopped_at + 2

    tc.latent_dim = 6  # a different architecture cannot resume this checkpoint
    assert tc.resume() is False and "settings changed" in tc.message
    tc.stop()
    assert "not running" in tc.message


def test_other_models_and_thread_failures(prepared, tmp_path, single_thread, monkeypatch):
    tc = _controller(prepared, tmp_path, model="cvae", max_epochs=2)
    assert tc.view.inputs["alpha"].disabled  # alpha belongs to CRADLE-VAE models
    assert tc.start() and tc.wait(TIMEOUT) and tc.status == "finished", tc.message
    assert all("train_j2" not in r for r in tc.history)
    assert tc.static_figure().axes[1].texts[0].get_text() == "this model has no J2"

    def diverge(self, **kwargs):
        raise NonFiniteLossError("loss is nan at epoch 1, step 3; lower the learning rate")

    monkeypatch.setattr(ck.PerturbationModel, "train", diverge)
    tc.model_name = "cradle"
    assert tc.start(replace=True)
    assert tc.wait(TIMEOUT) and tc.status == "failed"
    assert tc.message == "Could not train: Training diverged: loss is nan at epoch 1, step 3; lower the learning rate"
    assert tc.message_level == "error"
