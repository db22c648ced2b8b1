"""Fault injection, second round (issue 20), continued: a NaN loss, bad arguments, odd labels, and the
small losses (moved-aside names, temporaries of killed writers, errors that must name their file).
Each function returns rows for :func:`fault_injection_round2.round_two`."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

from fault_injection_round2 import ENV, FAST, FETCH_CHILD, SMALL, _cli, _fetch_child, _raised, _row


# ------------------------------------------------------------------ 4-6. NaN, bad arguments, labels
def nonfinite(work: Path, adata) -> list[dict]:
    from cradlekit.model import PerturbationModel

    ckpt = work / "r2_nan_ckpt"
    model = PerturbationModel(adata.copy(), **SMALL)
    kind, msg = _raised(lambda: model.train(max_epochs=5, checkpoint_dir=ckpt, **{**FAST, "lr": 100.0}))
    honest = "last good state" not in msg and "No checkpoint was written" in msg and not (ckpt / "last.pt").exists()
    rows = [
        _row(
            "lr=100 (NaN in epoch 1) -> the error's account of the checkpoint folder",
            kind,
            names_file=str(ckpt) in msg,
            nothing_lost=None,
            message=msg[msg.find("No checkpoint") :] if honest else msg,
        )
    ]
    kind, msg = _raised(lambda: model.save(work / "r2_nan_saved"))
    rows.append(_row("save() after that NaN", kind, names_file=str(work / "r2_nan_saved") in msg,
                     nothing_lost=not (work / "r2_nan_saved").exists(), message=msg))
    return rows


def bad_arguments(adata) -> list[dict]:
    from cradlekit.model import PerturbationModel

    model = PerturbationModel(adata.copy(), **SMALL)
    rows = []
    for bad in ({"lr": "1e-3"}, {"batch_size": 0}, {"checkpoint_every": 0}, {"lr": 0}):
        kind, msg = _raised(lambda: model.train(max_epochs=1, **{**FAST, **bad}))  # noqa: B023 - called at once
        (name,) = bad
        rows.append(_row(f"train({name}={bad[name]!r})", kind, names_file=None, nothing_lost=not model.is_trained,
                         message=msg))
    return rows


def labels() -> list[dict]:
    import anndata as ad
    import numpy as np
    import pandas as pd

    from cradlekit.data import setup

    rows = []
    for odd in ("+", "A+", "nan", "Control"):
        guides = ["control"] * 10 + ["A"] * 10 + [odd] * 5
        adata = ad.AnnData(np.random.default_rng(0).poisson(2, (len(guides), 8)).astype(np.float32),
                           obs=pd.DataFrame({"guide": guides}, index=[f"c{i}" for i in range(len(guides))]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                setup(adata, perturbation_key="guide", control_label="control")
                kind, msg = "no error", ""
            except Exception as err:  # noqa: BLE001
                kind, msg = type(err).__name__, str(err)
        said = [str(w.message) for w in caught if odd in str(w.message)]
        if kind == "no error":
            became = adata.obs["perturbation"].astype(str)[adata.obs["guide"] == odd].iloc[0]
            kind, msg = (f"warning; kept as {became!r}" if said else f"silently {became!r}"), (said[0] if said else "")
        rows.append(_row(f"label {odd!r} next to 'control' -> setup()", kind, names_file=None, nothing_lost=None,
                         message=msg))
    return rows


# ------------------------------------------------------------------ 7. small losses
def unreadable_twice(work: Path) -> dict:
    from cradlekit.data.download import fetch
    from cradlekit.data.manifest import DatasetEntry

    cache = work / "r2_unreadable"
    cache.mkdir()
    entry = DatasetEntry(name="toy", description="-", filename="toy.h5ad", format="h5ad", citation="-", license="-")
    contents = [b"first broken copy\n" * 40, b"second, different broken copy\n" * 40]
    for content in contents:
        (cache / "toy.h5ad").write_bytes(content)
        kind, msg = _raised(lambda: fetch(entry, cache_dir=cache, download=False))
    kept = sorted(p.read_bytes() for p in (cache / ".moved-aside").iterdir())
    return _row(
        "two different unreadable cache files, one after the other",
        kind,
        names_file=None,
        nothing_lost=kept == sorted(contents),
        message=f"moved aside as {sorted(p.name for p in (cache / '.moved-aside').iterdir())}",
    )


class _Stall(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.stall:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.release.wait(60)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _wait_for(condition, limit: float = 120.0) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def killed_download(work: Path) -> dict:
    cache = work / "r2_killed_cache"
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stall)
    httpd.daemon_threads, httpd.body, httpd.stall, httpd.release = True, os.urandom(1 << 20), True, threading.Event()
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    sha = hashlib.sha256(httpd.body).hexdigest()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/toy.h5ad"
    try:
        child = subprocess.Popen([sys.executable, "-c", FETCH_CHILD, url, sha, str(cache)], env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: cache.is_dir() and any(p.is_file() and p.stat().st_size for p in cache.iterdir()))
        child.send_signal(signal.SIGKILL)
        child.wait()
        left = [p.name for p in cache.iterdir() if p.is_file()]
        httpd.stall = False
        after = _fetch_child(url, sha, cache)
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
    remaining = sorted(p.name for p in cache.iterdir() if p.is_file())
    return _row("download SIGKILLed midway, then fetch() again",
                f"left {left}; after the next fetch: {remaining}", names_file=None,
                nothing_lost=bool(after.get("sha256_ok")) and remaining == ["toy.h5ad"])


def killed_qc(work: Path) -> dict:
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    folder = work / "r2_qc"
    folder.mkdir()
    path = folder / "data.h5ad"
    rng = np.random.default_rng(0)
    X = sp.random(20000, 400, density=0.5, format="csr", random_state=0, data_rvs=lambda n: rng.integers(1, 9, n))
    ad.AnnData(X.astype(np.float32), var={"gene": [f"G{i}" for i in range(400)]}).write_h5ad(path)
    before = path.read_bytes()
    child = subprocess.Popen([sys.executable, "-m", "cradlekit.cli", "qc", str(path), str(path), "--no-scrublet"],
                             env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = _wait_for(lambda: any(p.name.startswith(".data.") for p in folder.iterdir()) or child.poll() is not None)
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = sorted(p.name for p in folder.iterdir() if p.name != "data.h5ad")
    intact = path.read_bytes() == before
    rc, line = _cli("qc", str(path), str(path), "--no-scrublet")
    remaining = sorted(p.name for p in folder.iterdir() if p.name != "data.h5ad")
    return _row("`cradlekit qc IN IN` SIGKILLed while writing, then run again",
                f"left {left} ({'killed mid-write' if caught and left else 'missed the write'}); next run: exit {rc}, "
                f"left {remaining}", names_file=None, nothing_lost=intact and rc == 0 and not remaining)


def named_errors(work: Path, adata) -> list[dict]:
    import torch

    from cradlekit.model import PerturbationModel

    rows = []
    config = work / "r2_random.yaml"
    config.write_bytes(b"\xff\xfe" + os.urandom(300))
    rc, line = _cli("run", str(config))
    rows.append(_row("random bytes as the config -> `cradlekit run`", f"exit {rc}", names_file=str(config) in line,
                     nothing_lost=None, message=line))
    ckpt, saved = work / "r2_keys_ckpt", work / "r2_keys_saved"
    model = PerturbationModel(adata.copy(), **SMALL)
    model.train(max_epochs=1, checkpoint_dir=ckpt, **FAST)
    model.save(saved)
    meta = json.loads((saved / "registry.json").read_text())
    del meta["registry"]
    (saved / "registry.json").write_text(json.dumps(meta))
    kind, msg = _raised(lambda: PerturbationModel.load(saved))
    rows.append(_row("registry.json without 'registry' -> load()", kind, names_file=str(saved / "registry.json") in msg,
                     nothing_lost=None, message=msg))
    state = torch.load(ckpt / "last.pt", weights_only=True)
    del state["optimizer"], state["content_checksum"]
    torch.save(state, ckpt / "last.pt")
    kind, msg = _raised(
        lambda: PerturbationModel(adata.copy(), **SMALL).train(max_epochs=2, checkpoint_dir=ckpt, **FAST)
    )
    rows.append(_row("last.pt without 'optimizer' -> train(resume=True)", kind, names_file=str(ckpt / "last.pt") in msg,
                     nothing_lost=None, message=msg))
    src, out = work / "r2_disk_in.h5ad", work / "r2_disk_out.h5ad"
    adata.write_h5ad(src)
    out.write_bytes(b"the previous output")
    limit = src.stat().st_size // 2

    def full_disk():  # in the child: writes past `limit` bytes fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    rc, line = _cli("qc", str(src), str(out), "--no-scrublet", preexec=full_disk)
    rows.append(
        _row(
            "full disk (file-size limit) during `cradlekit qc IN OUT`",
            f"exit {rc}",
            names_file=str(out) in line,
            nothing_lost=out.read_bytes() == b"the previous output" and not list(work.glob(".r2_disk_out.*")),
            message=line,
        )
    )
    return rows
