"""Small losses (issue 20, item 7): files moved aside keep unique names; temporaries of killed writers are
cleaned on the next run (only ours, only dead writers'); errors name their file (a binary config, a saved
model or checkpoint without an entry, a full disk); the CLI prints one line for a RuntimeError."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch

from cradlekit import errors
from cradlekit.cli import main
from cradlekit.data import download as download_mod
from cradlekit.data.manifest import DatasetEntry

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _entry(url=None, sha256=None) -> DatasetEntry:
    return DatasetEntry(name="toy", description="-", filename="toy.h5ad", format="h5ad", citation="-", license="-",
                        url=url, sha256=sha256)


# ------------------------------------------------------------------ moved aside: unique names
def test_two_different_unreadable_cache_files_are_both_kept(isolated_data_env):
    cache = isolated_data_env
    cache.mkdir(parents=True)
    first, second = b"not an h5ad, first\n" * 50, b"not an h5ad either, second\n" * 50
    for content in (first, second):  # e.g. two interrupted copies, found one after the other
        (cache / "toy.h5ad").write_bytes(content)
        with pytest.raises(errors.DatasetNotAvailableError):
            download_mod.fetch(_entry(), cache_dir=cache, download=False)
    kept = {p.name: p.read_bytes() for p in (cache / ".moved-aside").iterdir()}
    assert kept == {"toy.h5ad.unreadable": first, "toy.h5ad.unreadable.2": second}


# ------------------------------------------------------------------ temporaries of killed writers
class _StallingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.stall:  # half the file, then nothing: the client is killed meanwhile
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.release.wait(60)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stalling_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StallingHandler)
    httpd.daemon_threads = True
    httpd.body, httpd.stall, httpd.release = os.urandom(1 << 18), True, threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()


def _wait_for(condition, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit  # a bound against hanging, not a timing assertion
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_download_killed_midway_leaves_no_temporary_file_after_the_next_fetch(stalling_server, isolated_data_env):
    cache = isolated_data_env
    url = f"http://127.0.0.1:{stalling_server.server_address[1]}/toy.h5ad"
    sha = hashlib.sha256(stalling_server.body).hexdigest()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from cradlekit.data.download import fetch
        from cradlekit.data.manifest import DatasetEntry
        fetch(DatasetEntry(name="toy", description="-", filename="toy.h5ad", format="h5ad", citation="-",
                           license="-", url=sys.argv[1], sha256=sys.argv[2]), cache_dir=sys.argv[3])
    """), url, sha, str(cache)], env=ENV)
    try:
        _wait_for(lambda: cache.is_dir() and any(p.is_file() and p.stat().st_size > 0 for p in cache.iterdir()),
                  "the partial download")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    partial = [p for p in cache.iterdir() if p.is_file()]
    assert len(partial) == 1 and partial[0].name != "toy.h5ad"  # killed: a temporary file is left
    stalling_server.stall = False
    path = download_mod.fetch(_entry(url, sha), cache_dir=cache)
    assert path.read_bytes() == stalling_server.body
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == ["toy.h5ad"]  # the leftover is gone


_KILLED_WRITER = """
import os, signal, sys
from cradlekit._atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as fh:
        fh.write(b"the first half of an h5ad")
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_qc_in_place_after_a_killed_qc_removes_its_temporary_file_only(tmp_path, make_qc_adata):
    path = tmp_path / "data.h5ad"
    make_qc_adata(n_cells=200, n_genes=100).write_h5ad(path)
    before = path.read_bytes()
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], env=ENV)
    assert killed.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir() if p.name != "data.h5ad"]  # what a killed `qc IN IN` leaves
    assert path.read_bytes() == before
    neighbours = {tmp_path / "data.h5ad.tmp": b"a user's file", tmp_path / ".data.tmp.h5ad": b"not our pattern"}
    for other, content in neighbours.items():
        other.write_bytes(content)
    assert main(["qc", str(path), str(path), "--no-scrublet"]) == 0
    assert not left.exists()  # cleaned on the next run
    assert all(other.read_bytes() == content for other, content in neighbours.items())  # others' files kept
    from cradlekit._atomic import temporary_name

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # a writer that is still running keeps its temporary file
        busy = temporary_name(path, pid=live.pid)
        busy.write_bytes(b"being written")
        assert main(["qc", str(path), str(path), "--no-scrublet"]) == 0
        assert busy.read_bytes() == b"being written"
    finally:
        live.kill()
        live.wait()


# ------------------------------------------------------------------ errors that name their file
def test_a_binary_config_is_named(tmp_path, capsys):
    from cradlekit.experiments import ConfigError, load_config

    config = tmp_path / "grid.yaml"
    config.write_bytes(b"\xff\xfe\x00\x81" + np.random.default_rng(0).bytes(200))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(config) in str(err.value) and "UTF-8" in str(err.value)
    assert main(["run", str(config)]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and str(config) in line


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from cradlekit.data import simulate_perturbseq, split_combinations
    from cradlekit.model import PerturbationModel

    adata = simulate_perturbseq(n_cells=400, n_genes=150, true_ate_cells=20, seed=3)
    split_combinations(adata, seed=0)
    folder = tmp_path_factory.mktemp("saved")
    model = PerturbationModel(adata, model="cvae", latent_dim=4, hidden_dim=16, num_particles=1)
    model.train(max_epochs=1, batch_size=128, progress_bar=False, accelerator="cpu", checkpoint_dir=folder / "ckpt")
    model.save(folder / "model")
    return adata, folder


@pytest.mark.parametrize(("drop", "named"), [("registry", "registry"), ("genes", "registry.genes")])
def test_a_registry_json_without_an_entry_is_named(saved, tmp_path, drop, named):
    import shutil

    from cradlekit.model import PerturbationModel

    folder = shutil.copytree(saved[1] / "model", tmp_path / "model")
    meta = json.loads((folder / "registry.json").read_text())
    (meta if drop == "registry" else meta["registry"]).pop(drop)
    (folder / "registry.json").write_text(json.dumps(meta))
    with pytest.raises(errors.CheckpointError) as err:
        PerturbationModel.load(folder)
    assert str(folder / "registry.json") in str(err.value) and f"lacks {named}" in str(err.value)


def test_a_last_pt_without_its_optimizer_is_named(saved, tmp_path):
    import shutil

    from cradlekit.model import PerturbationModel

    ckpt = shutil.copytree(saved[1] / "ckpt", tmp_path / "ckpt")
    state = torch.load(ckpt / "last.pt", weights_only=True)
    del state["optimizer"]
    state.pop("content_checksum", None)  # a file re-saved by hand (as older cradlekit wrote it)
    torch.save(state, ckpt / "last.pt")
    model = PerturbationModel(saved[0].copy(), model="cvae", latent_dim=4, hidden_dim=16, num_particles=1)
    with pytest.raises(errors.CheckpointError) as err:
        model.train(max_epochs=2, batch_size=128, progress_bar=False, accelerator="cpu", checkpoint_dir=ckpt)
    assert str(ckpt / "last.pt") in str(err.value) and "'optimizer'" in str(err.value)


_FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
import numpy as np, torch, anndata as ad
from cradlekit._atomic import write_text_atomic, write_h5ad_atomic
from cradlekit.train import save_checkpoint
folder, out = Path(sys.argv[1]), {}
for name, write in {
    "results.md": lambda path: write_text_atomic(path, "x" * 50000),
    "last.pt": lambda path: save_checkpoint({"w": torch.zeros(20000)}, path),
    "prepared.h5ad": lambda path: write_h5ad_atomic(ad.AnnData(np.ones((100, 200), np.float32)), path),
}.items():
    try:
        write(folder / name)
        out[name] = None
    except BaseException as err:
        out[name] = [type(err).__name__, getattr(err, "errno", None), str(err)]
print(json.dumps(out))
"""


def test_a_full_disk_is_reported_with_the_file_and_the_old_file_is_kept(tmp_path):
    old = {"results.md": b"old results", "last.pt": b"old checkpoint", "prepared.h5ad": b"old data"}
    for name, content in old.items():
        (tmp_path / name).write_bytes(content)
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path)], env=ENV, capture_output=True, text=True)
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (kind, code, message) in outcome.items():
        assert kind == "FileWriteError" and code in (27, 28) and str(tmp_path / name) in message, (name, message)
        assert (tmp_path / name).read_bytes() == old[name]  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(old)  # no temporary left either


def test_the_cli_prints_one_line_for_a_runtime_error(tmp_path, make_qc_adata, monkeypatch, capsys):
    from cradlekit import qc

    path = tmp_path / "data.h5ad"
    make_qc_adata(n_cells=100, n_genes=60).write_h5ad(path)

    def fails(*args, **kwargs):
        raise RuntimeError("something deep in a library went wrong")

    monkeypatch.setattr(qc, "label_artifacts", fails)
    assert main(["qc", str(path), str(tmp_path / "out.h5ad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["cradlekit qc: error: RuntimeError: something deep in a library went wrong "
                                "(--debug shows the traceback)"]
    with pytest.raises(RuntimeError):  # --debug: the traceback
        main(["--debug", "qc", str(path), str(tmp_path / "out.h5ad")])


def test_a_disk_that_fills_up_during_an_h5ad_write_is_reported_with_the_file(tmp_path):
    from cradlekit._atomic import write_h5ad_atomic

    class FillsTheDisk:  # what h5py raises when the disk fills up while HDF5 writes (errno only in the text)
        X = np.zeros((2, 2), np.float32)

        def write_h5ad(self, filename, **kwargs):
            with open(filename, "wb") as fh:
                fh.write(b"part of a file")
            raise RuntimeError(
                "Can't write data (file write failed: errno = 28, error message = 'No space left on device')"
            )

    target = tmp_path / "out.h5ad"
    target.write_bytes(b"the previous file")
    with pytest.raises(errors.FileWriteError) as err:
        write_h5ad_atomic(FillsTheDisk(), target)
    assert err.value.errno == 28 and str(target) in str(err.value)
    assert target.read_bytes() == b"the previous file" and sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]
