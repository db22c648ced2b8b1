"""Where scrublet's memory goes: one chunk of the full-Norman-size screen, step by step.

``cradlekit.qc.run_scrublet`` scores one batch or chunk at a time with ``scanpy.pp.scrublet``; this
script times each of scanpy's internal steps on one chunk (the first ``--cells`` cells of the
simulated 111,255 x 19,018 screen of ``bench_sparse_data.py``) and records the resident memory at
its start and its peak, plus the number of highly variable genes scrublet keeps. The steps are
found by wrapping scanpy's private functions (scanpy 1.10-1.11), so this is a profile, not an API.

Usage::

    nice python benchmarks/profile_scrublet_chunk.py --cells 15000

Writes ``benchmarks/results/scrublet_chunk_profile_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402
from _memory import PhaseMemory  # noqa: E402

#: (module attribute path, step name) of the steps of ``scanpy.pp.scrublet`` that do not nest.
STEPS = (
    ("pp.normalize_total", "normalize_total"),
    ("pp.highly_variable_genes", "highly_variable_genes"),
    ("scrublet_simulate_doublets", "simulate_doublets"),
    ("pipeline.zscore", "zscore (dense float64, back to CSC)"),
    ("pipeline.pca", "pca (dense float64)"),
    ("core.Scrublet.calculate_doublet_scores", "neighbour scores"),
    ("core.Scrublet.call_doublets", "call_doublets"),
)


def _wrap(mem: PhaseMemory, owner, attr: str, name: str, seen: dict) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        with mem.phase(name):
            out = original(*args, **kwargs)
        if attr == "highly_variable_genes":
            seen["n_hvg"] = int(args[0].var["highly_variable"].sum())
            seen["n_genes_expressed"] = int(args[0].n_vars)
        return out

    setattr(owner, attr, wrapped)


def profile(args) -> dict:
    import anndata as ad
    import scanpy.preprocessing._scrublet as scr

    from bench_sparse_data import NORMAN, _screen_file
    from cradlekit.qc.doublets import run_scrublet

    path = _screen_file(args, "norman_size.h5ad", 0, NORMAN)
    backed = ad.read_h5ad(path, backed="r")
    adata = backed[: args.cells].to_memory()
    backed.file.close()
    mem = PhaseMemory()
    seen: dict = {}
    for dotted, name in STEPS:
        *parents, attr = dotted.split(".")
        owner = scr
        for part in parents:
            owner = getattr(owner, part)
        _wrap(mem, owner, attr, name, seen)
    t0 = time.perf_counter()
    calls, params = run_scrublet(adata, seed=0, chunk_size=None)
    return {
        "screen": NORMAN, "n_cells": int(adata.n_obs), "seconds": time.perf_counter() - t0, **seen,
        "n_simulated": int(round(params["sim_doublet_ratio"] * adata.n_obs)), "n_predicted": params["n_predicted"],
        "memory": mem.report(),
    }


def report(r: dict) -> str:
    base = r["memory"]["phases"][0]["rss_start_gb"]
    peak = r["memory"]["process_peak_rss_gb"]
    cells = r["n_cells"] + r["n_simulated"]
    lines = [
        f"# scrublet on one chunk: {r['n_cells']:,} cells of the full-Norman-size screen ({r['screen']['n_genes']:,} "
        "genes)",
        "",
        "Regenerate: `nice python benchmarks/profile_scrublet_chunk.py --cells "
        f"{r['n_cells']}`. Machine: {r['machine']['platform']}, commit {r['machine']['git_commit']}, "
        f"{r['machine']['date']}.",
        "",
        f"scrublet keeps **{r['n_hvg']:,} highly variable genes** of the {r['n_genes_expressed']:,} expressed in the "
        "chunk, and "
        f"simulates {r['n_simulated']:,} doublets; {r['n_predicted']} cells are called doublets. Whole call: "
        f"{r['seconds']:.0f} s, "
        f"process peak RSS **{peak:.2f} GB**, {peak - base:.2f} GB above the RSS before scanpy's first step "
        f"({(peak - base) * 1e9 / (r['n_cells'] * r['n_hvg']):.0f} bytes per observed cell and highly variable gene; "
        f"one dense float64 copy of observed and simulated cells is {cells * r['n_hvg'] * 8 / 1e9:.2f} GB).",
        "",
        "| step inside `scanpy.pp.scrublet` | seconds | RSS at start (GB) | peak RSS (GB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {p['phase']} | {p['seconds']:.1f} | {p['rss_start_gb']:.2f} | {p['peak_rss_gb']:.2f} |"
        for p in r["memory"]["phases"]
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=15_000, help="cells in the chunk (cradlekit's default chunk size)")
    parser.add_argument("--tmp", default="/tmp/cradlekit_bench")
    args = parser.parse_args(argv)
    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    payload = profile(args)
    payload["command"] = f"python benchmarks/profile_scrublet_chunk.py --cells {args.cells}"
    path = write_result("scrublet_chunk_profile_cpu", payload)
    import json

    (RESULTS / "scrublet_chunk_profile_cpu.md").write_text(report(json.loads(path.read_text())))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
