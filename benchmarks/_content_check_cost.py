"""What the content checks of issue 20 cost: sha256 of a dataset file (once per process), the BLAKE2b
digest written into and checked on every checkpoint and saved model, and the digest of the training
counts in the data fingerprint. Measured on one core by ``fault_injection.py`` (section "Cost of the
content checks" of ``results/fault_injection.md``); each number is the best of three runs."""

from __future__ import annotations

import io
import time
from pathlib import Path


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _file_hashing(work: Path) -> dict:
    import os

    from cradlekit.data.download import file_digest
    from cradlekit.data.manifest import load_manifest

    path = work / "hash_probe.bin"
    size = 256 * 2**20
    with open(path, "wb") as fh:
        for _ in range(size // 2**20):
            fh.write(os.urandom(2**20))
    seconds = _best(lambda: file_digest(path), repeat=2)  # the second run reads from the page cache
    path.unlink()
    rate = size / seconds
    sizes = {e.name: e.size_bytes for e in load_manifest().values() if e.size_bytes}
    return {"bytes": size, "seconds": seconds, "bytes_per_s": rate,
            "datasets_s": {name: b / rate for name, b in sorted(sizes.items(), key=lambda kv: kv[1])}}


def _checkpoint_digest(n_genes: int = 2000) -> dict:
    import torch

    from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
    from cradlekit.model import PerturbationModel
    from cradlekit.qc import label_artifacts
    from cradlekit.train.state_digest import state_digest

    adata = simulate_perturbseq(n_cells=2000, n_genes=n_genes, true_ate_cells=20, seed=0)
    label_artifacts(adata, run_scrublet=False)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    module = PerturbationModel(adata, latent_dim=200, hidden_dim=400).module  # the paper's widths
    weights = module.state_dict()
    # last.pt holds the weights, Adam's two moments and the best weights: four copies
    last = {"module": weights, "optimizer": [{k: v.clone() for k, v in weights.items()} for _ in range(2)],
            "best_state": {k: v.clone() for k, v in weights.items()}}
    n_bytes = 4 * sum(v.numel() * v.element_size() for v in weights.values())
    buffer = io.BytesIO()
    save_s = _best(lambda: (buffer.seek(0), buffer.truncate(), torch.save(last, buffer)))
    buffer.seek(0)
    load_s = _best(lambda: (buffer.seek(0), torch.load(buffer, weights_only=True)))
    digest_s = _best(lambda: state_digest(last))
    return {"n_genes": n_genes, "bytes": n_bytes, "torch_save_s": save_s, "torch_load_s": load_s, "digest_s": digest_s}


def _fingerprint(n_cells: int = 20000, n_genes: int = 2000) -> dict:
    import numpy as np
    import scipy.sparse as sp

    from cradlekit.train.fingerprint import counts_digest

    rng = np.random.default_rng(0)
    X = sp.random(
        n_cells, n_genes, density=0.25, format="csr", random_state=0, data_rvs=lambda n: rng.integers(1, 20, n)
    )
    X = X.astype(np.float32)
    rows = np.flatnonzero(rng.random(n_cells) < 0.8)  # train + val cells
    weights = np.zeros(n_cells)
    weights[rows] = 1.0
    totals_s = _best(lambda: (np.asarray(X.sum(axis=1)).ravel()[rows], X.T @ weights))
    content_s = _best(lambda: counts_digest(X, rows))
    return {"n_cells": n_cells, "n_genes": n_genes, "nnz": int(X.nnz), "totals_s": totals_s, "content_s": content_s}


def measure(work: Path) -> dict:
    """All three costs, and the Markdown lines that report them."""
    files, ckpt, fp = _file_hashing(work), _checkpoint_digest(), _fingerprint()
    mb = 2**20
    rate = files["bytes_per_s"]
    lines = [
        f"- **Downloads** (sha256, once per process per file): {files['bytes'] / mb:.0f} MB hashed in "
        f"{files['seconds']:.2f} s = {rate / mb:.0f} MB/s. At that rate: "
        + ", ".join(
            f"{name} {s:.1f} s" if s < 120 else f"{name} {s / 60:.1f} min" for name, s in files["datasets_s"].items()
        )
        + ". Within a process the digest is reused while the file's size, mtime, ctime and inode are unchanged.",
        "- **Checkpoints and saved models** (BLAKE2b of the content, on every save and every load): a `last.pt` of "
        "the "
        f"paper-sized CRADLE-VAE (latent 200, hidden 400) on {ckpt['n_genes']} genes holds {ckpt['bytes'] / mb:.0f} MB "
        "of "
        f"tensors; its digest takes {1000 * ckpt['digest_s']:.0f} ms, against {1000 * ckpt['torch_save_s']:.0f} ms for "
        f"`torch.save` and {1000 * ckpt['torch_load_s']:.0f} ms for `torch.load` (to memory). It grows linearly with "
        "genes.",
        "- **Data fingerprint** (once per AnnData, when a checkpoint_dir is given): the content digest of "
        f"{fp['nnz'] / 1e6:.0f} "
        f"M stored counts ({fp['n_cells']} cells x {fp['n_genes']} genes, 80% train/val) takes {fp['content_s']:.2f} "
        "s, "
        f"against {fp['totals_s']:.2f} s for the per-cell and per-gene totals recorded before.",
    ]
    return {"files": files, "checkpoint": ckpt, "fingerprint": fp, "lines": lines}
