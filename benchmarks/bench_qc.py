"""QC benchmark: six criteria incl. scrublet on 120,000 simulated cells x 2,000 genes.

Target (issue 2): under 2 minutes and under 8 GB peak memory on the 2-core CI machine.
The data are simulated and written to a temporary h5ad in a first process; QC runs in a
second, fresh process so its peak memory is its own.

Usage::

    python benchmarks/bench_qc.py [--n-cells 120000 --n-genes 2000]

Writes ``benchmarks/results/qc.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_gb, write_result  # noqa: E402


def _simulate(path: str, n_cells: int, n_genes: int) -> None:
    from cradlekit.data import simulate_perturbseq

    t0 = time.perf_counter()
    adata = simulate_perturbseq(n_cells=n_cells, n_genes=n_genes, seed=0)
    elapsed = time.perf_counter() - t0
    adata.write_h5ad(path)
    print(json.dumps({"simulate_s": elapsed, "simulate_peak_gb": peak_rss_gb()}))


def _qc(path: str) -> None:
    import anndata as ad

    from cradlekit import qc

    adata = ad.read_h5ad(path)
    t0 = time.perf_counter()
    qc.label_artifacts(adata, ks=(3, 4, 5), seed=0)
    total = time.perf_counter() - t0
    summary = qc.qc_summary(adata)
    print(json.dumps({
        "qc_s": total,
        "qc_peak_gb": peak_rss_gb(),
        "fail_counts": summary.to_dict(),
        "scrublet": {k: v for k, v in adata.uns["qc"]["scrublet"].items() if k != "threshold"},
    }, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-cells", type=int, default=120_000)
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--stage", choices=["simulate", "qc"], default=None)
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    if args.stage == "simulate":
        return _simulate(args.path, args.n_cells, args.n_genes)
    if args.stage == "qc":
        return _qc(args.path)

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "sim.h5ad")
        runs = {}
        for stage in ("simulate", "qc"):
            out = subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--path", path,
                 "--n-cells", str(args.n_cells), "--n-genes", str(args.n_genes)],
                stdout=subprocess.PIPE, text=True, check=True,
            ).stdout
            runs.update(json.loads(out.strip().splitlines()[-1]))
    payload = {
        "benchmark": "qc_label_artifacts",
        "n_cells": args.n_cells,
        "n_genes": args.n_genes,
        "targets": {"qc_s": 120, "qc_peak_gb": 8},
        **runs,
    }
    path = write_result("qc", payload)
    print(json.dumps(payload, indent=2, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
