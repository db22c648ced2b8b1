"""Fault injection, second round (issue 20): the attacks that failed in the first audit, run for real,
and the cost of the content checks added against them. Called by ``fault_injection.py`` (its section
"Second round" of ``results/fault_injection.md``); each attack gives one row: what was done, the
outcome (the exception, or the exit code and the one line a command printed), whether the message names
the file, and whether anything was lost.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}
SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
FAST = dict(batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")
TRAIN_CHILD = """
import json, sys
import anndata as ad, torch
from cradlekit.model import PerturbationModel
torch.set_num_threads(1)
model = PerturbationModel(ad.read_h5ad(sys.argv[1]), latent_dim=4, hidden_dim=16, num_particles=1)
try:
    model.train(max_epochs=8, seed=int(sys.argv[3]), checkpoint_dir=sys.argv[2], batch_size=128, lr=1e-3,
                progress_bar=False, accelerator="cpu")
    print(json.dumps({"seed": int(sys.argv[3]), "outcome": "trained"}))
except Exception as err:
    print(json.dumps({"seed": int(sys.argv[3]), "outcome": type(err).__name__, "message": str(err)}))
"""


def _row(case: str, outcome: str, *, names_file: bool | None, nothing_lost: bool | None, message: str = "") -> dict:
    row = {"case": case, "outcome": outcome, "names_file": names_file, "nothing_lost": nothing_lost,
           "message": " ".join(message.split())[:220]}
    print(f"round 2: {case}: {outcome}", flush=True)
    return row


def _raised(fn) -> tuple[str, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    except Exception as err:  # noqa: BLE001 - the outcome is the point
        return type(err).__name__, str(err)
    return "no error", ""


def _cli(*args: str, preexec=None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "cradlekit.cli", *args], env=ENV, capture_output=True, text=True,
                          preexec_fn=preexec)
    errors = [line for line in done.stderr.splitlines() if line.startswith("cradlekit ")]
    shown = errors[-1] if errors else (done.stderr.strip().splitlines() or [""])[-1]
    return done.returncode, ("traceback: " if "Traceback" in done.stderr else "") + shown


def _damage(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[:16] = bytes(16)
    path.write_bytes(bytes(data))
    return bytes(data)


def _flip(path: Path, n: int = 200) -> bytes:
    """Invert ``n`` bytes inside the largest tensor of a torch zip file; size kept."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26: info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + max(0, info.file_size // 2 - n // 2)
    data[start: start + n] = bytes(b ^ 0xFF for b in data[start: start + n])
    path.write_bytes(bytes(data))
    return bytes(data)


def _prepared(n_cells: int = 600, seed: int = 1):
    from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
    from cradlekit.qc import label_artifacts

    adata = simulate_perturbseq(n_cells=n_cells, n_genes=150, true_ate_cells=20, seed=seed)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    return adata


# ------------------------------------------------------------------ 1. damaged h5ad
def damaged_inputs(work: Path) -> list[dict]:
    from cradlekit.data import load_dataset, read_h5ad, simulate_perturbseq

    path = work / "r2_damaged.h5ad"
    simulate_perturbseq(n_cells=400, n_genes=150, seed=0).write_h5ad(path)
    damaged = _damage(path)
    rows = []
    for name, fn in (("read_h5ad", lambda: read_h5ad(path)), ("load_dataset", lambda: load_dataset(path))):
        kind, msg = _raised(fn)
        rows.append(_row(f"damaged h5ad (signature overwritten) -> {name}", kind, names_file=str(path) in msg,
                         nothing_lost=path.read_bytes() == damaged, message=msg))
    rc, line = _cli("qc", str(path), str(work / "r2_out.h5ad"), "--no-scrublet")
    rows.append(_row("damaged h5ad -> `cradlekit qc`", f"exit {rc}", names_file=str(path) in line,
                     nothing_lost=path.read_bytes() == damaged, message=line))
    return rows


def damaged_prepared(work: Path, config: Path, reference_dir: Path, results) -> dict:
    out = work / "r2_grid_damaged"
    shutil.copytree(reference_dir, out)
    target = sorted((out / "prepared").glob("*_s*_k*.h5ad"))[0]
    damaged = _damage(target)
    sorted((out / "runs").glob("*.json"))[0].unlink()  # one run to do again, which reads the damaged file
    done = subprocess.run([sys.executable, "-m", "cradlekit.cli", "run", str(config), "--out", str(out)], env=ENV,
                          capture_output=True, text=True)
    summary = re.search(r"\d+ ran, \d+ cached, \d+ failed", done.stdout or "")
    moved = list((out / "prepared" / ".moved-aside").glob(f"{target.name}*"))
    kept = [m for m in moved if m.read_bytes() == damaged]
    same = done.returncode == 0 and results(out).equals(results(reference_dir))
    return _row("damaged prepared file in the grid's cache -> `cradlekit run` again",
                f"exit {done.returncode}, {summary.group(0) if summary else '?'}, results.csv identical: {same}",
                names_file=None, nothing_lost=bool(kept), message=f"moved aside to {kept[0] if kept else None}")


# ------------------------------------------------------------------ 2. corruption that keeps the size
def flipped_files(work: Path, adata) -> list[dict]:
    from cradlekit.model import PerturbationModel

    ckpt, saved = work / "r2_flip_ckpt", work / "r2_flip_saved"
    model = PerturbationModel(adata.copy(), **SMALL)
    model.train(max_epochs=2, checkpoint_dir=ckpt, **FAST)
    model.save(saved)
    rows = []
    weights = saved / "model.pt"
    flipped = _flip(weights)
    kind, msg = _raised(lambda: PerturbationModel.load(saved))
    rows.append(_row("200 bytes flipped inside model.pt (size kept) -> load()", kind, names_file=str(weights) in msg,
                     nothing_lost=weights.read_bytes() == flipped, message=msg))
    last = ckpt / "last.pt"
    flipped = _flip(last)
    kind, msg = _raised(
        lambda: PerturbationModel(adata.copy(), **SMALL).train(max_epochs=3, checkpoint_dir=ckpt, **FAST)
    )
    rows.append(_row("200 bytes flipped inside last.pt -> train(resume=True)", kind, names_file=str(last) in msg,
                     nothing_lost=last.read_bytes() == flipped, message=msg))
    return rows


def _serve(folder: Path) -> http.server.ThreadingHTTPServer:
    import functools

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return httpd


FETCH_CHILD = """
import json, sys
from cradlekit.data.download import fetch
from cradlekit.data.manifest import DatasetEntry
entry = DatasetEntry(name="toy", description="-", filename="toy.h5ad", format="h5ad", citation="-", license="-",
                     url=sys.argv[1], sha256=sys.argv[2] if sys.argv[2] != "-" else None)
try:
    path = fetch(entry, cache_dir=sys.argv[3])
    digest = __import__("hashlib").sha256(open(path, "rb").read()).hexdigest()
    print(json.dumps({"path": str(path), "sha256_ok": digest == sys.argv[2]}))
except Exception as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""


def _fetch_child(url: str, sha: str, cache: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", FETCH_CHILD, url, sha, str(cache)], env=ENV, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def flipped_download(work: Path) -> dict:
    srv = work / "r2_srv"
    srv.mkdir()
    content = os.urandom(1 << 20)
    (srv / "toy.h5ad").write_bytes(content)
    sha, cache = hashlib.sha256(content).hexdigest(), work / "r2_cache"
    httpd = _serve(srv)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/toy.h5ad"
        first = _fetch_child(url, sha, cache)
        cached = cache / "toy.h5ad"
        st = cached.stat()
        with open(cached, "r+b") as fh:  # flip 200 bytes in place, then put the modification time back
            fh.seek(1000)
            fh.write(bytes(b ^ 0xFF for b in content[1000:1200]))
        os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
        flipped = cached.read_bytes()
        second = _fetch_child(url, sha, cache)  # a new process, as on the next day
    finally:
        httpd.shutdown()
        httpd.server_close()
    kept = (
        any(p.read_bytes() == flipped for p in (cache / ".moved-aside").iterdir())
        if (cache / ".moved-aside").exists()
        else False
    )
    outcome = (
        ("re-downloaded, verified" if second.get("sha256_ok") else f"returned {second}")
        if first.get("sha256_ok")
        else "setup failed"
    )
    return _row(
        "cached download: 200 bytes flipped, size and mtime kept -> fetch() in a new process",
        outcome,
        names_file=None,
        nothing_lost=kept,
        message="the flipped copy was moved aside, not deleted" if kept else "",
    )


def swapped_counts(work: Path, adata) -> dict:
    import numpy as np
    import scipy.sparse as sp

    from cradlekit.model import PerturbationModel

    ckpt = work / "r2_swap_ckpt"
    PerturbationModel(adata.copy(), **SMALL).train(max_epochs=1, checkpoint_dir=ckpt, **FAST)
    X = sp.csr_matrix(adata.X, dtype=np.float64).toarray()
    i, j = np.flatnonzero(adata.obs["split"].isin(["train"]).to_numpy())[:2]
    a = int(np.flatnonzero(X[j] > 0)[0])
    b = int(next(g for g in np.flatnonzero(X[i] > 0) if g != a))
    X[i, a], X[i, b], X[j, a], X[j, b] = X[i, a] + 1, X[i, b] - 1, X[j, a] - 1, X[j, b] + 1
    swapped = adata.copy()
    swapped.X = sp.csr_matrix(X.astype(np.float32))
    before = (ckpt / "last.pt").read_bytes()
    kind, msg = _raised(lambda: PerturbationModel(swapped, **SMALL).train(max_epochs=2, checkpoint_dir=ckpt, **FAST))
    return _row(
        "2x2 swap of counts (every total kept) -> train(resume=True)",
        kind,
        names_file=str(ckpt / "last.pt") in msg,
        nothing_lost=(ckpt / "last.pt").read_bytes() == before,
        message=msg[msg.find("data.content") :][:200] or msg,
    )


# ------------------------------------------------------------------ 3. concurrent writers
def two_trainings(work: Path, adata) -> dict:
    from cradlekit.train import load_checkpoint

    data, ckpt = work / "r2_two.h5ad", work / "r2_two_ckpt"
    adata.write_h5ad(data)
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN_CHILD, str(data), str(ckpt), str(seed)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for seed in (0, 1)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    trained = [o["seed"] for o in outs if o["outcome"] == "trained"]
    refused = [o for o in outs if o["outcome"] != "trained"]
    last = load_checkpoint(ckpt / "last.pt")
    complete = len(trained) == 1 and last["run"]["training"]["seed"] == trained[0] and last["epoch"] == 8
    return _row("two train() processes (seeds 0 and 1) into one checkpoint_dir, started together",
                f"trained: seed {trained}; refused: {[(o['seed'], o['outcome']) for o in refused]}",
                names_file=all(str(ckpt) in o.get("message", "") for o in refused), nothing_lost=complete,
                message=refused[0]["message"] if refused else "")


def two_grids(work: Path, config: Path, results) -> list[dict]:
    other = work / "r2_other.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["train"] = {**settings["train"], "lr": 1.0e-3}
    other.write_text(yaml.safe_dump(settings))
    out = work / "r2_two_grids"
    procs = [subprocess.Popen([sys.executable, "-m", "cradlekit.cli", "run", str(c), "--out", str(out)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in (config, other)]
    outs = [p.communicate() for p in procs]
    codes = [p.returncode for p in procs]
    refusals = [e.strip().splitlines()[-1] for (o, e), rc in zip(outs, codes, strict=True) if rc != 0]
    frame = results(out) if (out / "results.csv").exists() else None
    rows = [_row("two grids with other settings, one output folder, started together",
                 f"exit codes {codes}; results.csv rows: {0 if frame is None else len(frame)}, one grid's",
                 names_file=all(str(out) in r for r in refusals),
                 nothing_lost=frame is not None and frame["config_hash"].nunique() == len(frame) == 4,
                 message=refusals[0] if refusals else "")]
    shared = work / "r2_prepared_once"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cradlekit.cli", "run", str(config), "--out", str(shared)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    logs = [p.communicate()[1] for p in procs]
    written = [m for log in logs for m in re.findall(r"prepared data: wrote (\S+)", log)]
    once = len(written) == len(set(written))
    rows.append(_row("two runners of one grid on an empty folder: prepared files built",
                     f"{len(written)} writes of {len(set(written))} files; exit codes {[p.returncode for p in procs]}",
                     names_file=None, nothing_lost=once and all(p.returncode == 0 for p in procs)))
    return rows


def round_two(work: Path, config: Path, reference_dir: Path, results) -> list[dict]:
    """Every second-round attack, in order; an attack that breaks is recorded, not fatal."""
    from fault_injection_losses import (
        bad_arguments,
        killed_download,
        killed_qc,
        labels,
        named_errors,
        nonfinite,
        unreadable_twice,
    )

    adata = _prepared()
    steps = [
        ("damaged inputs", lambda: damaged_inputs(work)),
        ("damaged prepared file", lambda: [damaged_prepared(work, config, reference_dir, results)]),
        ("flipped files", lambda: flipped_files(work, adata)),
        ("flipped download", lambda: [flipped_download(work)]),
        ("swapped counts", lambda: [swapped_counts(work, adata)]),
        ("two trainings", lambda: [two_trainings(work, adata)]),
        ("two grids", lambda: two_grids(work, config, results)),
        ("NaN", lambda: nonfinite(work, adata)),
        ("bad arguments", lambda: bad_arguments(adata)),
        ("labels", labels),
        ("unreadable twice", lambda: [unreadable_twice(work)]),
        ("killed download", lambda: [killed_download(work)]),
        ("killed qc", lambda: [killed_qc(work)]),
        ("named errors", lambda: named_errors(work, adata)),
    ]
    rows = []
    for name, step in steps:
        try:
            rows.extend(step())
        except Exception as err:  # noqa: BLE001 - a broken attack is a finding too
            rows.append(_row(f"attack failed to run: {name}", type(err).__name__, names_file=None, nothing_lost=None,
                             message=str(err)))
    return rows


def report_lines(rows: list[dict], costs: dict) -> list[str]:
    """The "Second round" section of fault_injection.md."""
    flag = {True: "yes", False: "**NO**", None: "-"}
    lines = ["", "## Second round (issue 20): the attacks that failed in the first audit", "",
             "`nothing lost`: the attacked or damaged file is still there (moved aside, never deleted), no other run's "
             "checkpoints or results were overwritten, no temporary file is left; `-`: nothing to lose.", "",
             "| attack | outcome | message names the file | nothing lost | message (start) |", "|---|---|---|---|---|"]
    for r in rows:
        msg = r["message"].replace("|", "\\|")
        lines.append(f"| {r['case']} | {r['outcome']} | {flag[r['names_file']]} | {flag[r['nothing_lost']]} | {msg} |")
    lines += ["", "## Cost of the content checks", "", *costs["lines"]]
    return lines
