"""Memory and speed of the training data path on full-size screens (issue 13).

Modes (each runs in its own process, so its peak resident memory is its own):

``compare``
    steps/s of sparse-per-batch (:class:`cradlekit.train.CellBatches`) against the dense path
    (every train cell as one float32 tensor, :class:`cradlekit.train.DeviceData`) on the same
    model and the same batches: a simulated screen (``simulate_perturbseq``) of ``--cells`` x
    ``--genes`` (default 20,000 x 2,000, where the dense path fits comfortably). Repeats alternate
    the two paths; the fastest repeat of each is reported.
``norman``
    A simulated screen of full-Norman size (111,255 x 19,018, ~2,500 detected genes per cell),
    written to an h5ad under ``--tmp`` in chunks and read into memory as CSR: peak host memory
    (and time) of QC labels (no scrublet), split, counterfactual references, model set-up and
    ``--steps`` training steps (``--steps 0``: one full epoch with ``PerturbationModel.train``).
``backed``
    A 1,000,000-cell screen (2,000 genes, ~300 per cell) written in chunks to an h5ad and opened
    **backed**: QC labels, references and training all read the file in chunks.
``qc``
    ``label_artifacts`` with scrublet on the full-Norman-size screen (time and peak memory).
``all``
    Every mode above, one after the other.

CRADLE-VAE at the paper's configuration: D = 200, hidden 400, 5 particles, batch 512, Adam 3e-4.

Usage::

    nice python benchmarks/bench_sparse_data.py all --device cpu --threads 1
    python benchmarks/bench_sparse_data.py all --device cuda      # a GPU machine: full epochs

Writes ``benchmarks/results/sparse_data_<mode>_<device>.json`` and the summary
``benchmarks/results/sparse_data_<device>.md``. Generated screens are deleted afterwards
(``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402
from _memory import PhaseMemory  # noqa: E402

NORMAN = dict(n_cells=111_255, n_genes=19_018, genes_per_cell=2_500)
BACKED = dict(n_cells=1_000_000, n_genes=2_000, genes_per_cell=300)
CONFIG = dict(latent_dim=200, hidden_dim=400, num_particles=5)
BATCH = 512


class FirstBatches:
    """The first ``n`` batches of a batch source (a fixed number of steps per 'epoch')."""

    def __init__(self, source, n: int):
        self.source, self.n = source, int(n)

    @property
    def device(self):
        return self.source.device

    def __len__(self) -> int:
        return min(len(self.source), self.n * BATCH)

    def batches(self, batch_size, *, shuffle=False, generator=None):
        for i, batch in enumerate(self.source.batches(batch_size, shuffle=shuffle, generator=generator)):
            if i >= self.n:
                break
            yield batch


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _fit_steps(module, source, steps: int, device, seed: int = 0) -> float:
    """Seconds of ``steps`` optimiser steps by the real Trainer on ``source`` (after the call returns)."""
    import pyro

    from cradlekit.train import TrainConfig, Trainer

    cfg = TrainConfig(batch_size=BATCH, max_epochs=1, patience=None, progress_bar=False, seed=seed, restore_best=False)
    _sync(device)
    t0 = time.perf_counter()
    with pyro.validation_enabled(False):
        Trainer(module, FirstBatches(source, steps), None, config=cfg).fit()
    _sync(device)
    return time.perf_counter() - t0


def _prepare(adata, mem: PhaseMemory, *, scrublet: bool = False) -> None:
    import cradlekit as ck

    with mem.phase("qc_labels" + ("_scrublet" if scrublet else "")):
        ck.qc.label_artifacts(adata, run_scrublet=scrublet)
    with mem.phase("split"):
        ck.data.split_combinations(adata, seed=0)
    with mem.phase("counterfactual_references"):
        ck.data.counterfactual_references(adata, artifact_key="artifact_k3", n_max=50, seed=0)


def _device_stats(device) -> dict:
    import torch

    if torch.device(device).type != "cuda":
        return {}
    return {"cuda_max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
            "cuda_device": torch.cuda.get_device_name(0)}


def _train(adata, mem: PhaseMemory, args, out: dict) -> None:
    """Model set-up, then ``args.steps`` timed steps (0: one full epoch with PerturbationModel.train)."""
    import torch

    from cradlekit.model import PerturbationModel

    device = torch.device(args.device)
    with mem.phase("model_setup"):
        model = PerturbationModel(adata, model="cradle", **CONFIG)
        data = model._datasets()
    out["n_train"], out["n_val"] = len(data["train"]), len(data["val"]) if data["val"] is not None else 0
    out["steps_per_epoch"] = -(-out["n_train"] // BATCH)
    with mem.phase("data_only_epoch"):  # every batch of one shuffled epoch gathered and densified, no model
        t0 = time.perf_counter()
        batches = data["train"].to(device).batches(BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))
        n = sum(b["X"].shape[0] for b in batches)
        _sync(device)
        out["data_epoch_s"] = time.perf_counter() - t0
    assert n == out["n_train"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.steps == 0:
        with mem.phase("train_one_epoch"):
            _sync(device)
            t0 = time.perf_counter()
            model.train(max_epochs=1, batch_size=BATCH, accelerator=device, patience=None, progress_bar=False)
            _sync(device)
            out["epoch_s"] = time.perf_counter() - t0
        out["steps"] = out["steps_per_epoch"]
        out["epoch_includes_validation"] = True
    else:
        module = model.module.to(device)
        train = data["train"].to(device)
        _fit_steps(module, train, 2, device)  # warm-up
        with mem.phase("train_steps"):
            seconds = _fit_steps(module, train, args.steps, device, seed=1)
        out["steps"] = args.steps
        out["steps_per_s"] = args.steps / seconds
        out["epoch_s_extrapolated"] = out["steps_per_epoch"] / out["steps_per_s"]
    out.update(_device_stats(device))


def run_compare(args) -> dict:
    import numpy as np
    import pyro
    import torch

    import cradlekit as ck
    from cradlekit.model import PerturbationModel
    from cradlekit.model._setup import build_tensors
    from cradlekit.train import DeviceData

    device = torch.device(args.device)
    args.steps = args.steps or 20  # blocks of timed steps (0 means "a full epoch" only in the other modes)
    adata = ck.data.simulate_perturbseq(n_cells=args.cells, n_genes=args.genes, seed=0)
    ck.qc.label_artifacts(adata, run_scrublet=False)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata, artifact_key="artifact_k3")
    model = PerturbationModel(adata, model="cradle", **CONFIG)
    module = model.module.to(device)
    sparse = model._datasets()["train"].to(device)
    dense = DeviceData(build_tensors(adata, model.registry)["train"], device=device)
    start = {k: v.clone() for k, v in module.state_dict().items()}
    times = {"sparse": [], "dense": []}
    with pyro.validation_enabled(False):
        for _name, source in (("dense", dense), ("sparse", sparse)):
            _fit_steps(module, source, 2, device)  # warm-up
        for rep in range(args.repeats):  # short alternating blocks: both paths see the same background load
            order = (("dense", dense), ("sparse", sparse)) if rep % 2 == 0 else (("sparse", sparse), ("dense", dense))
            for name, source in order:
                module.load_state_dict(start)
                times[name].append(args.steps / _fit_steps(module, source, args.steps, device, seed=rep))
    batch_ms = {}
    for name, source in (("dense", dense), ("sparse", sparse)):  # producing batches alone, no model
        g = torch.Generator().manual_seed(0)
        it = source.batches(BATCH, shuffle=True, generator=g)
        next(it)
        t0 = time.perf_counter()
        n = sum(1 for _, _b in zip(range(20), it, strict=False))
        _sync(device)
        batch_ms[name] = 1e3 * (time.perf_counter() - t0) / n
    median = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: max(v) for k, v in times.items()}
    return {
        "cells": args.cells, "genes": args.genes, "n_train": len(sparse), "steps": args.steps, "repeats": args.repeats,
        "steps_per_s": times, "median_steps_per_s": median, "best_steps_per_s": best,
        "sparse_over_dense": median["sparse"] / median["dense"],
        "sparse_over_dense_best": best["sparse"] / best["dense"], "batch_ms": batch_ms,
        "batch_overhead_fraction_of_step": (batch_ms["sparse"] - batch_ms["dense"]) / 1e3 * median["sparse"],
        "dense_train_X_gb": len(sparse) * args.genes * 4 * 2 / 1e9,
        "nnz_per_cell": float(np.diff(adata.X.indptr).mean()),
    }


def _screen_file(args, name: str, seed: int, screen: dict) -> Path:
    """The simulated screen ``name`` under ``--tmp``, written (in chunks) unless it is already there."""
    from _screens import write_screen

    path = Path(args.tmp) / name
    if not path.exists():
        t0 = time.perf_counter()
        write_screen(path, seed=seed, **screen)
        logging.info("wrote %s in %.0f s", path, time.perf_counter() - t0)
    return path


def run_norman(args) -> dict:
    import anndata as ad

    path = _screen_file(args, "norman_size.h5ad", 0, NORMAN)
    mem = PhaseMemory()
    out: dict = {"screen": NORMAN, "file_gb": path.stat().st_size / 1e9}
    with mem.phase("read_h5ad"):
        adata = ad.read_h5ad(path)
    out["nnz"] = int(adata.X.nnz)
    out["csr_gb"] = _csr_gb(adata.X)
    out["dense_float32_gb"] = adata.n_obs * adata.n_vars * 4 / 1e9
    _prepare(adata, mem)
    out["cf_table_rows"] = int(adata.uns["cf_reference"]["n_references"])
    out["cf_cells_with_reference"] = int(adata.uns["cf_reference"]["n_with_reference"])
    out["cf_table_gb"] = _csr_gb(adata.uns["cf_reference_table"])
    _train(adata, mem, args, out)
    out["memory"] = mem.report()
    return out


def run_backed(args) -> dict:
    from _screens import read_backed

    path = _screen_file(args, "backed_1m.h5ad", 1, BACKED)
    mem = PhaseMemory()
    out: dict = {"screen": BACKED, "file_gb": path.stat().st_size / 1e9}
    with mem.phase("open_backed"):
        adata = read_backed(path)
    out["nnz"] = int(adata.X.group["indptr"][-1])
    out["csr_gb_on_disk"] = out["nnz"] * 8 / 1e9
    _prepare(adata, mem)
    out["cf_table_rows"] = int(adata.uns["cf_reference"]["n_references"])
    out["cf_cells_with_reference"] = int(adata.uns["cf_reference"]["n_with_reference"])
    out["cf_table_gb"] = _csr_gb(adata.uns["cf_reference_table"])
    _train(adata, mem, args, out)
    out["memory"] = mem.report()
    adata.file.close()
    return out


#: How ``cradlekit.qc.run_scrublet`` drives scanpy (recorded with each QC result).
SCRUBLET_IMPLEMENTATION = "one batch or chunk at a time, each a scanpy.pp.scrublet call on that group's rows"


def run_qc(args) -> dict:
    import anndata as ad

    import cradlekit as ck

    path = _screen_file(args, "norman_size.h5ad", 0, NORMAN)
    mem = PhaseMemory()
    with mem.phase("read_h5ad"):
        if args.qc_cells:  # the first cells only (one scrublet chunk's worth)
            backed = ad.read_h5ad(path, backed="r")
            adata = backed[: args.qc_cells].to_memory()
            backed.file.close()
        else:
            adata = ad.read_h5ad(path)
    t0 = time.perf_counter()
    with mem.phase("label_artifacts_with_scrublet"):
        ck.qc.label_artifacts(adata, run_scrublet=True)
    seconds = time.perf_counter() - t0
    return {
        "screen": NORMAN, "n_cells": int(adata.n_obs), "seconds": seconds,
        "scrublet": dict(adata.uns["qc"]["scrublet"]) if "scrublet" in adata.uns["qc"] else None,
        "n_doublets": int(adata.obs["predicted_doublet"].sum()), "memory": mem.report(),
        "implementation": SCRUBLET_IMPLEMENTATION,
    }


def _csr_gb(m) -> float:
    return (m.data.nbytes + m.indices.nbytes + m.indptr.nbytes) / 1e9


MODES = {"compare": run_compare, "norman": run_norman, "backed": run_backed, "qc": run_qc}


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return "cuda-" + torch.cuda.get_device_name(0).lower().replace(" ", "-")
    return "cpu"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=[*MODES, "all", "report"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (0: one full epoch); default 20 on CPU, 0 on CUDA")
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qc-cells", type=int, default=None, help="qc: only the first N cells (default: all)")
    parser.add_argument("--tmp", default="/tmp/cradlekit_bench")
    parser.add_argument("--keep", action="store_true", help="keep the generated screens")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 0 if args.device.startswith("cuda") else 20
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    if args.mode in ("all", "report"):
        modes = ["compare", "norman", "qc", "backed"] if args.mode == "all" else []
        for mode in modes:
            cmd = [sys.executable, __file__, mode, *_passthrough(argv if argv is not None else sys.argv[1:])]
            logging.info("running %s", " ".join(cmd))
            subprocess.run(cmd, check=True)
        if not args.keep and args.mode == "all":
            for name in ("norman_size.h5ad", "backed_1m.h5ad"):
                (Path(args.tmp) / name).unlink(missing_ok=True)
        write_report(_device_name(args.device))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    warnings.filterwarnings("ignore", message="QC criterion 'doublet' skipped")
    t0 = time.perf_counter()
    payload = MODES[args.mode](args)
    payload.update(device=args.device, threads=args.threads, wall_s=time.perf_counter() - t0,
                   command=f"python benchmarks/bench_sparse_data.py {args.mode} --device {args.device} "
                   f"--threads {args.threads}"
                   + (f" --steps {args.steps}" if args.mode in ("norman", "backed", "compare") else ""))
    suffix = f"_{args.qc_cells}cells" if args.mode == "qc" and args.qc_cells else ""
    if suffix:
        payload["command"] += f" --qc-cells {args.qc_cells}"
    path = write_result(f"sparse_data_{args.mode}{suffix}_{_device_name(args.device)}", payload)
    logging.info("wrote %s", path)
    return 0


def _passthrough(argv: list[str]) -> list[str]:
    out, skip = [], True
    for a in argv:
        if skip and a in ("all", "report"):
            skip = False
            continue
        if a != "--keep":
            out.append(a)
    return out


def write_report(device: str) -> Path:
    """``results/sparse_data_<device>.md`` from the JSON files of each mode."""
    from _report import sparse_data_report

    results = {}
    for mode in MODES:
        path = RESULTS / f"sparse_data_{mode}_{device}.json"
        if path.exists():
            results[mode] = json.loads(path.read_text())
    for path in sorted(RESULTS.glob(f"sparse_data_qc_*_{device}.json")):  # first cells only, or earlier versions
        results[path.stem.removeprefix("sparse_data_").removesuffix(f"_{device}")] = json.loads(path.read_text())
    if "norman" in results:  # what the model itself holds at this gene count (for the 2x-CSR note)
        results["norman"]["model"] = _model_size(results["norman"]["screen"]["n_genes"])
    out = RESULTS / f"sparse_data_{device}.md"
    out.write_text(sparse_data_report(results, device))
    return out


def _model_size(n_genes: int) -> dict:
    """Parameters of the benchmarked CRADLE-VAE and the size of one particles x batch x genes activation."""
    import inspect

    from _screens import write_screen
    from cradlekit.module import build_model

    n_targets = inspect.signature(write_screen).parameters["n_single"].default
    module = build_model("cradle", n_genes, n_targets, [100] * n_targets, 80_000, **CONFIG)
    return {"n_targets": n_targets, "parameters": sum(p.numel() for p in module.parameters()),
            "activation_gb": CONFIG["num_particles"] * BATCH * n_genes * 4 / 1e9}


if __name__ == "__main__":
    raise SystemExit(main())
