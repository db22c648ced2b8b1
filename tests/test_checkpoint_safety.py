"""Checkpoints you can trust (issue 12): a resume refuses another run's checkpoint, allowed changes
(lr, max_epochs) reach the restored optimiser, crafted and damaged files are refused with the file
named, and Ctrl-C (SIGINT) or kill -9 at a random moment never costs an exact resume."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from _toy_training import toy_trainer
from cradlekit.errors import CheckpointError, CheckpointMismatchError, NonFiniteLossError
from cradlekit.train import load_checkpoint
from cradlekit.train.checkpoint import BEST, LAST

HERE = pathlib.Path(__file__).parent


def _same(a, b) -> bool:
    sa, sb = a.module.state_dict(), b.module.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Payload:
    """Unpickling this object creates a marker file: stands for any code a crafted file could run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


# ------------------------------------------------------------------ 1. resume refuses another run
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data_seed": 1}, "data.train"),          # other cells
        ({"n": 200}, "data.n_train"),              # fewer cells
        ({"batch_size": 16}, "training.batch_size"),
        ({"seed": 7}, "training.seed"),
        ({"width": 4}, "parameters.lin.weight"),   # another architecture: named, not a raw load_state_dict error
    ],
)
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, field):
    toy_trainer(tmp_path, epochs=2).fit()
    before = (tmp_path / LAST).read_bytes()
    other = toy_trainer(tmp_path, epochs=4, **change)
    with pytest.raises(CheckpointMismatchError, match=rf"{field}.*fresh checkpoint_dir.*resume=False") as info:
        other.fit(resume=True)
    assert str(tmp_path / LAST) in str(info.value)
    assert other.epoch == 0 and not other.history  # nothing restored
    assert (tmp_path / LAST).read_bytes() == before  # nothing overwritten
    assert len(toy_trainer(tmp_path, epochs=4, **change).fit(resume=False)) == 4  # way on: a new run here


def test_allowed_changes_reach_the_restored_optimiser_and_are_recorded(tmp_path):
    toy_trainer(tmp_path / "a", epochs=3, lr=0.05).fit()
    toy_trainer(tmp_path / "b", epochs=3, lr=0.05).fit()
    seen = []
    lower = toy_trainer(tmp_path / "a", epochs=5, lr=0.01,
                        callbacks=[lambda r: seen.append(lower._optimizer.param_groups[0]["lr"])])
    lower.fit()
    same = toy_trainer(tmp_path / "b", epochs=5, lr=0.05)
    same.fit()
    assert seen == [0.01, 0.01] and [r["epoch"] for r in lower.history] == [1, 2, 3, 4, 5]
    assert {(c["setting"], c["from"], c["to"], c["epoch"]) for c in lower.changes} == {
        ("lr", 0.05, 0.01, 3), ("max_epochs", 3, 5, 3)}
    assert not _same(lower, same)  # the new rate changed the trajectory
    assert load_checkpoint(tmp_path / "a" / LAST)["changes"] == lower.changes  # recorded in the file


def test_nan_remedy_lower_lr_then_resume_works(tmp_path):
    high = toy_trainer(tmp_path, epochs=6, lr=0.3, blowup=5.5)
    with pytest.raises(NonFiniteLossError, match="lower the learning rate") as info:
        high.fit()
    assert "epoch 4" in str(info.value)
    assert load_checkpoint(tmp_path / LAST)["epoch"] == 3  # the mid-epoch NaN state was not saved
    with pytest.raises(NonFiniteLossError):  # the same rate fails again
        toy_trainer(tmp_path, epochs=6, lr=0.3, blowup=5.5).fit()
    low = toy_trainer(tmp_path, epochs=6, lr=0.05, blowup=5.5)
    low.fit()
    assert [r["epoch"] for r in low.history] == list(range(1, 7))
    assert low._optimizer.param_groups[0]["lr"] == 0.05 and low.changes[0]["setting"] == "lr"


# ------------------------------------------------------------------ 2. no unpickling
def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "code_ran"
    torch.save({"module": Payload(marker)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # the payload is real: unpickling runs it
    assert marker.exists()
    marker.unlink()
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"module": Payload(marker), "epoch": 1}, ckpt / LAST)
    with pytest.raises(CheckpointError, match=r"will not unpickle") as info:
        toy_trainer(ckpt, epochs=2).fit(resume=True)
    assert str(ckpt / LAST) in str(info.value) and "resume=False" in str(info.value)
    assert not marker.exists()


def test_damaged_checkpoint_names_the_file_and_the_way_on(tmp_path):
    toy_trainer(tmp_path, epochs=2).fit()
    data = (tmp_path / LAST).read_bytes()
    for cut in (len(data) // 2, 10, 0):
        (tmp_path / LAST).write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"damaged") as info:
            toy_trainer(tmp_path, epochs=3).fit(resume=True)
        assert str(tmp_path / LAST) in str(info.value) and BEST in str(info.value)
    best = load_checkpoint(tmp_path / BEST)  # the named fallback loads
    assert best["epoch"] >= 1 and "run" in best


# ------------------------------------------------------------------ 3. interruptions
def _run_until_done(path, epochs, delays):
    """Train in ``path``, sending SIGINT to this process after each delay in turn; resume after each."""
    interrupts = 0
    for delay in [*delays, None]:
        trainer = toy_trainer(path, epochs=epochs)
        timer = None if delay is None else threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        try:
            if timer is not None:
                timer.start()
            trainer.fit(resume=True)
            if timer is not None:
                timer.cancel()
                timer.join()
                time.sleep(0.01)  # a signal sent just before cancel() is handled here, inside the try
        except KeyboardInterrupt:
            interrupts += 1
            continue
        if trainer.epoch == epochs:
            return trainer, interrupts
    return trainer, interrupts


@pytest.fixture
def ctrl_c_raises():
    """Python's default Ctrl-C handler during the test: a shell that starts the suite in the
    background (``cmd &``) hands it SIGINT ignored, and then no KeyboardInterrupt would ever come."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_at_random_moments_then_resume_is_bit_identical(tmp_path, ctrl_c_raises):
    epochs = 12
    full = toy_trainer(tmp_path / "full", epochs=epochs)
    t0 = time.perf_counter()
    full.fit()
    duration = time.perf_counter() - t0
    rng = random.Random(12)
    total = 0
    for trial in range(4):
        delays = [rng.uniform(0.05, 1.0) * duration for _ in range(3)]
        resumed, interrupts = _run_until_done(tmp_path / f"cut{trial}", epochs, delays)
        total += interrupts
        assert resumed.epoch == epochs and resumed.step == full.step
        assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history]
        assert _same(full, resumed)
    assert total >= 4  # the signals did land mid-run


class _InterruptingFile:
    """A file whose first ``write`` (called back from torch's C++ zip writer) sends this process SIGINT."""

    def __init__(self, fh):
        self._fh, self.sent = fh, False

    def write(self, data):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return self._fh.write(data)

    def flush(self):
        self._fh.flush()


@pytest.mark.parametrize("handler", ["default", "ignore"])
def test_ctrl_c_inside_the_checkpoint_write_is_an_interrupt_after_a_complete_file(tmp_path, monkeypatch, handler):
    # Ctrl-C while torch.save is inside its C++ writer used to surface as RuntimeError("unexpected pos")
    # (seen in CI): the signal must wait for the write, then arrive as KeyboardInterrupt; a process
    # that ignores SIGINT keeps ignoring it
    from cradlekit.train import save_checkpoint

    installed = signal.default_int_handler if handler == "default" else signal.SIG_IGN
    previous = signal.signal(signal.SIGINT, installed)
    try:
        save_checkpoint({"epoch": 1, "w": torch.zeros(3)}, tmp_path / LAST)
        real_save = torch.save
        files = []

        def save_through_interrupting_file(obj, fh, *args, **kwargs):
            files.append(_InterruptingFile(fh))
            return real_save(obj, files[-1], *args, **kwargs)

        monkeypatch.setattr(torch, "save", save_through_interrupting_file)
        if handler == "default":
            with pytest.raises(KeyboardInterrupt):
                save_checkpoint({"epoch": 2, "w": torch.arange(1000.0)}, tmp_path / LAST)
        else:
            save_checkpoint({"epoch": 2, "w": torch.arange(1000.0)}, tmp_path / LAST)
        assert files and files[0].sent
        assert signal.getsignal(signal.SIGINT) is installed  # the caller's handler is back
    finally:
        signal.signal(signal.SIGINT, previous)
    state = load_checkpoint(tmp_path / LAST)  # the new file is whole
    assert state["epoch"] == 2 and torch.equal(state["w"], torch.arange(1000.0))
    assert list(tmp_path.iterdir()) == [tmp_path / LAST]  # no temporary file left behind


def test_checkpoint_write_leaves_a_sigint_handler_installed_outside_python_alone(tmp_path, monkeypatch):
    # signal.getsignal() is None when the handler was set by C code (an embedding host): it could not be
    # put back after deferring Ctrl-C, so the write must not touch it
    from cradlekit.train import save_checkpoint

    def no_replacing(*args):
        raise AssertionError("the SIGINT handler must not be replaced")

    monkeypatch.setattr(signal, "getsignal", lambda signum: None)
    monkeypatch.setattr(signal, "signal", no_replacing)
    save_checkpoint({"epoch": 3, "w": torch.ones(4)}, tmp_path / LAST)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / LAST)["epoch"] == 3


def test_kill_9_at_a_random_moment_then_resume_is_bit_identical(tmp_path):
    epochs, n = 30, 400
    full = toy_trainer(tmp_path / "full", epochs=epochs, n=n)
    full.fit()
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "_toy_training.py"), str(cut), str(epochs), str(n)], env=env)
    deadline = time.monotonic() + 120
    while not (cut / LAST).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(9).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = load_checkpoint(cut / LAST)["epoch"]
    resumed = toy_trainer(cut, epochs=epochs, n=n)
    resumed.fit()
    assert 1 <= saved < epochs and resumed.epoch == epochs  # killed mid-run
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in full.history]
    assert _same(full, resumed)
