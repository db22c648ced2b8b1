"""Fault injection (issue 12): kills and interrupts at random moments, damaged and crafted files,
concurrent runners - and what became of each.

1. **Training**: a tiny CRADLE-VAE on the simulator is trained in a child process with a checkpoint
   folder; the child gets SIGKILL (kill -9) or SIGINT (Ctrl-C) at a uniformly random moment of its
   training, is started again with ``resume=True`` (and interrupted again in some trials) until it
   finishes; the final weights and the per-epoch validation losses are compared, bit for bit, with
   an uninterrupted run in another child.
2. **Grid**: ``python -m cradlekit.cli run`` on a tiny simulator grid is killed (SIGKILL or SIGINT)
   at a random moment and run again; ``results.csv`` is compared with an uninterrupted grid's.
3. **Concurrent runners**: two ``cradlekit run`` processes started together on one empty folder;
   how many runs each trained (target: every run once in all) and the final ``results.csv``.
4. **Damaged and crafted files**: truncated ``last.pt``/``model.pt``/``registry.json``, pickles that
   would run code as ``last.pt`` and ``model.pt``, a cached dataset failing its checksum, a truncated
   first download, ``cradlekit qc`` interrupted while writing onto its input; the error, whether it
   names the file, whether code ran, whether a file was lost.
5. **Second round** (issue 20; ``fault_injection_round2.py`` and ``fault_injection_losses.py``): damaged
   h5ad inputs and prepared files, bytes flipped in model.pt/last.pt/a cached download with its size and
   mtime kept, a 2x2 swap of counts, two trainings into one checkpoint folder and two grids into one
   output folder started together, a NaN at epoch 1, bad ``train()`` arguments, odd labels, killed
   downloads and ``qc IN IN``, a binary config, files missing entries, a full disk; then the cost of the
   content checks (``_content_check_cost.py``).

Usage (about 6 minutes on two busy CPU cores)::

    python benchmarks/fault_injection.py [--train-trials 8] [--grid-trials 2] [--seed 0]

Writes ``benchmarks/results/fault_injection.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
SMALL = dict(latent_dim=4, hidden_dim=16, num_particles=1)
FAST = dict(batch_size=128, lr=1e-3, progress_bar=False, accelerator="cpu")
EPOCHS = 12
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
}


# ------------------------------------------------------------------ child process: one training session
def _train_worker(data: str, ckpt: str, out: str) -> None:
    import anndata as ad
    import torch

    from cradlekit.model import PerturbationModel

    torch.set_num_threads(1)
    model = PerturbationModel(ad.read_h5ad(data), **SMALL)

    class Ready:  # the clock starts when the epoch loop starts (after setup and any resume)
        def on_train_start(self, trainer):
            print("ready", flush=True)

        def on_epoch_end(self, trainer, record):
            pass

        def on_train_end(self, trainer):
            pass

    model.train(max_epochs=EPOCHS, checkpoint_dir=ckpt, resume=True, callbacks=[Ready()], **FAST)
    print("done", flush=True)
    torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()}, out)
    Path(out).with_suffix(".json").write_text(json.dumps([r["val_loss"] for r in model.history]))


def _spawn_train(data: Path, ckpt: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", str(data), str(ckpt), str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _wait_ready(proc: subprocess.Popen) -> float:
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"worker did not start (said {line!r}, exit code {proc.wait()})")
    return time.perf_counter()


def _signal_after(proc: subprocess.Popen, start: float, delay: float, sig: int, tick: float) -> bool:
    """Send ``sig`` to ``proc`` ``delay`` s after ``start`` unless it has ended by then; whether it landed."""
    while time.perf_counter() - start < delay and proc.poll() is None:
        time.sleep(tick)
    landed = proc.poll() is None
    if landed:
        proc.send_signal(sig)
    return landed


def _same_state(a: Path, b: Path) -> bool:
    import torch

    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def training_trials(work: Path, n: int, rng: random.Random) -> tuple[list[dict], float]:
    from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
    from cradlekit.qc import label_artifacts

    adata = simulate_perturbseq(n_cells=800, n_genes=160, true_ate_cells=20, seed=5)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    data = work / "train.h5ad"
    adata.write_h5ad(data)
    ref = _spawn_train(data, work / "ref_ckpt", work / "ref.pt")
    t0 = _wait_ready(ref)
    assert ref.stdout.readline().strip() == "done"
    duration = time.perf_counter() - t0  # the training itself, without start-up and exit
    ref.wait()
    rows = []
    for trial in range(n):
        sig = signal.SIGKILL if trial % 2 == 0 else signal.SIGINT
        ckpt, out = work / f"ckpt{trial}", work / f"run{trial}.pt"
        events = []
        n_signals = 1 + trial % 3 // 2  # some trials are interrupted twice
        while True:
            proc = _spawn_train(data, ckpt, out)
            t_start = _wait_ready(proc)
            if len([e for e in events if e["delay_s"] is not None]) < n_signals:
                delay = rng.uniform(0.02, 0.98) * duration
                landed = _signal_after(proc, t_start, delay, sig, 0.005)
                proc.wait()
                events.append({"delay_s": round(delay, 2), "landed": landed, "exit": proc.returncode,
                               "epoch_on_disk": _epoch_on_disk(ckpt)})
                if not landed:
                    break
            else:
                proc.wait()
                events.append({"delay_s": None, "exit": proc.returncode})
                break
        identical = out.exists() and _same_state(out, work / "ref.pt")
        same_losses = out.exists() and json.loads(out.with_suffix(".json").read_text()) == json.loads(
            (work / "ref.json").read_text())
        rows.append({"trial": trial, "signal": signal.Signals(sig).name, "events": events,
                     "identical_weights": identical, "identical_val_losses": same_losses})
        print(f"training trial {trial}: {rows[-1]}", flush=True)
    return rows, duration


def _epoch_on_disk(ckpt: Path) -> int | None:
    from cradlekit.train import load_checkpoint

    path = ckpt / "last.pt"
    return int(load_checkpoint(path)["epoch"]) if path.exists() else None


# ------------------------------------------------------------------ grid
GRID = {
    "name": "fault_injection",
    "dataset": {
        "name": "simulator",
        "kwargs": {"n_cells": 600, "n_genes": 150, "n_single": 4, "n_combinations": 4, "true_ate_cells": 20, "seed": 0},
    },
    "models": ["cradle", "cvae"],
    "ks": [3],
    "seeds": [0, 1],
    "qc": {"run_scrublet": False, "seed": 0},
    "model_options": {"latent_dim": 4, "hidden_dim": 16, "num_particles": 1},
    "train": {
        "max_epochs": 40,
        "max_steps": 80,
        "lr": 3.0e-3,
        "batch_size": 128,
        "accelerator": "cpu",
        "torch_threads": 1,
    },
    "evaluation": {"n_model_cells": 50, "n_qcpr_cells": 10, "run_scrublet": False},
}
STABLE = ["model", "k", "seed", "config_hash", "epochs", "steps", "heldout_ate_pearson", "all_ate_pearson", "qcpr"]


def _grid_proc(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cradlekit.cli", "run", str(config), "--out", str(out)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _results(out: Path):
    import pandas as pd

    frame = pd.read_csv(out / "results.csv")
    return frame[[c for c in STABLE if c in frame]].sort_values(["model", "k", "seed"]).reset_index(drop=True)


def grid_trials(work: Path, n: int, rng: random.Random) -> tuple[list[dict], dict]:
    config = work / "grid.yaml"
    config.write_text(yaml.safe_dump(GRID))
    t0 = time.perf_counter()
    ref = _grid_proc(config, work / "grid_ref")
    ref.communicate()
    duration = time.perf_counter() - t0
    reference = _results(work / "grid_ref")
    rows = []
    for trial in range(n):
        sig = signal.SIGKILL if trial % 2 == 0 else signal.SIGINT
        out = work / f"grid{trial}"
        delay = rng.uniform(0.5, 0.95) * duration
        proc = _grid_proc(config, out)
        landed = _signal_after(proc, time.perf_counter(), delay, sig, 0.01)
        proc.communicate()
        done_before = len(list((out / "runs").glob("*.json"))) if (out / "runs").exists() else 0
        again = _grid_proc(config, out)
        text, _ = again.communicate()
        summary = re.search(r"(\d+) ran, (\d+) cached, (\d+) failed", text or "")
        same = again.returncode == 0 and _results(out).equals(reference)
        rows.append({"trial": trial, "signal": signal.Signals(sig).name, "delay_s": round(delay, 1), "landed": landed,
                     "runs_finished_before_kill": done_before, "rerun": summary.group(0) if summary else text,
                     "identical_results": bool(same)})
        print(f"grid trial {trial}: {rows[-1]}", flush=True)

    # two runners at once on one empty folder
    shared = work / "grid_shared"
    procs = [_grid_proc(config, shared) for _ in range(2)]
    outputs = [p.communicate()[0] for p in procs]
    ran = [int(m.group(1)) if (m := re.search(r"(\d+) ran", o or "")) else None for o in outputs]
    concurrent = {
        "runs_in_grid": len(GRID["models"]) * len(GRID["ks"]) * len(GRID["seeds"]),
        "ran_by_each": ran,
        "exit_codes": [p.returncode for p in procs],
        "identical_results": bool(_results(shared).equals(reference)),
        "grid_seconds_uninterrupted": round(duration, 1),
    }
    print(f"concurrent runners: {concurrent}", flush=True)
    return rows, concurrent


# ------------------------------------------------------------------ damaged and crafted files
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def file_checks(work: Path) -> list[dict]:
    import anndata as ad
    import numpy as np
    import torch

    from cradlekit.cli import main as cli
    from cradlekit.data import counterfactual_references, simulate_perturbseq, split_combinations
    from cradlekit.data.download import fetch
    from cradlekit.data.manifest import DatasetEntry
    from cradlekit.model import PerturbationModel
    from cradlekit.qc import label_artifacts

    adata = simulate_perturbseq(n_cells=600, n_genes=150, true_ate_cells=20, seed=1)
    label_artifacts(adata)
    split_combinations(adata, seed=0)
    counterfactual_references(adata)
    marker = work / "code_ran"
    rows = []

    def attempt(name: str, path: Path, fn) -> None:
        try:
            fn()
            outcome, message = "no error", ""
        except BaseException as err:  # noqa: BLE001 - recorded
            outcome, message = type(err).__name__, str(err)
        rows.append({"case": name, "outcome": outcome, "names_file": str(path) in message,
                     "code_ran": marker.exists(), "message": message[:240]})
        print(f"file check {name}: {outcome}", flush=True)

    ckpt = work / "files_ckpt"
    model = PerturbationModel(adata.copy(), **SMALL)
    model.train(max_epochs=2, checkpoint_dir=ckpt, **FAST)
    model.save(work / "saved")
    last = ckpt / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    attempt("truncated last.pt, train(resume=True)", last,
            lambda: PerturbationModel(adata.copy(), **SMALL).train(max_epochs=3, checkpoint_dir=ckpt, **FAST))
    torch.save({"module": _Payload(marker)}, last)
    attempt("crafted pickle as last.pt", last,
            lambda: PerturbationModel(adata.copy(), **SMALL).train(max_epochs=3, checkpoint_dir=ckpt, **FAST))
    weights = work / "saved" / "model.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[:100])
    attempt("truncated model.pt, load()", weights, lambda: PerturbationModel.load(work / "saved"))
    torch.save({"decoder.out.bias": _Payload(marker)}, weights)
    attempt("crafted pickle as model.pt", weights, lambda: PerturbationModel.load(work / "saved"))
    weights.write_bytes(good)
    registry = work / "saved" / "registry.json"
    registry.write_text(registry.read_text()[:50])
    attempt("truncated registry.json, load()", registry, lambda: PerturbationModel.load(work / "saved"))

    other = adata[:, adata.var_names[::-1]].copy()
    shutil.copytree(work / "files_ckpt", work / "stale_ckpt", dirs_exist_ok=True)
    PerturbationModel(adata.copy(), **SMALL).train(
        max_epochs=1, checkpoint_dir=work / "stale_ckpt", resume=False, **FAST
    )
    attempt("checkpoint of another run (genes reversed)", work / "stale_ckpt" / "last.pt",
            lambda: PerturbationModel(other, **SMALL).train(max_epochs=2, checkpoint_dir=work / "stale_ckpt", **FAST))

    cache = work / "cache"
    cache.mkdir()
    content = b"a good file whose published checksum is wrong\n" * 1000
    (cache / "toy.h5ad").write_bytes(content)
    entry = DatasetEntry(name="toy", description="-", filename="toy.h5ad", format="h5ad", citation="-", license="-",
                         url=None, sha256="0" * 64)
    for i in range(2):
        attempt(f"cached file failing its checksum, offline (call {i + 1})", cache / ".moved-aside",
                lambda: fetch(entry, cache_dir=cache, download=False))
        rows[-1]["file_kept"] = any(p.read_bytes() == content for p in (cache / ".moved-aside").iterdir())

    path = work / "inplace.h5ad"
    small = ad.AnnData(np.random.default_rng(0).poisson(2, (200, 100)).astype(np.float32))
    small.write_h5ad(path)
    before = path.read_bytes()
    real = ad.AnnData.write_h5ad

    def killed_midway(self, filename, *a, **k):
        real(self, filename, *a, **k)
        with open(filename, "r+b") as fh:
            fh.truncate(len(before) // 2)
        raise KeyboardInterrupt

    ad.AnnData.write_h5ad = killed_midway
    try:
        attempt("cradlekit qc in.h5ad in.h5ad interrupted while writing", path,
                lambda: cli(["qc", str(path), str(path), "--no-scrublet"]))
    finally:
        ad.AnnData.write_h5ad = real
    rows[-1]["file_kept"] = path.read_bytes() == before
    return rows


# ------------------------------------------------------------------ report
def write_report(train_rows, duration, grid_rows, concurrent, files, second, costs, seconds, args) -> Path:
    sys.path.insert(0, str(HERE))
    from _common import RESULTS, machine, write_result
    from fault_injection_round2 import report_lines

    write_result("fault_injection", {"training": train_rows, "training_seconds": duration, "grid": grid_rows,
                                     "concurrent": concurrent, "files": files, "second_round": second,
                                     "content_check_cost": {k: v for k, v in costs.items() if k != "lines"},
                                     "seconds": seconds, "args": vars(args)})
    signals = [e for r in train_rows for e in r["events"] if e["delay_s"] is not None]
    landed = sum(e["landed"] for e in signals)
    ok = sum(r["identical_weights"] and r["identical_val_losses"] for r in train_rows)
    lines = [
        "# Fault injection (issues 12 and 20)",
        "",
        f"`python benchmarks/fault_injection.py --train-trials {args.train_trials} --grid-trials {args.grid_trials} "
        f"--seed {args.seed}` on {machine()['cpu_count']} CPUs, one torch thread; {seconds / 60:.1f} min in all.",
        "",
        f"## Training: {len(signals)} signals at random moments ({landed} reached a running process), "
        f"{len(train_rows)} runs",
        "",
        f"Tiny CRADLE-VAE (800 simulated cells, 160 genes), {EPOCHS} epochs with a checkpoint every epoch; "
        f"an uninterrupted run's epoch loop takes {duration:.1f} s (the clock starts when the loop starts). Each "
        "trial: start, signal after a uniform "
        "random delay, start again with `resume=True` (again signalled in some trials) until done, compare with the "
        f"uninterrupted run. An epoch of {EPOCHS} in `last.pt` means the signal came after the epoch loop (final "
        "save, exit); `(after the end)`: the process had already finished.",
        "",
        "| trial | signal | delays (s) | epoch in last.pt after each signal | weights identical "
        "| val losses identical |",
        "|---|---|---|---|---|---|",
    ]
    for r in train_rows:
        sig = [e for e in r["events"] if e["delay_s"] is not None]
        lines.append(
            f"| {r['trial']} | {r['signal']} | "
            f"{', '.join(str(e['delay_s']) + ('' if e['landed'] else ' (after the end)') for e in sig)} | "
            f"{', '.join(str(e['epoch_on_disk']) for e in sig)} | {r['identical_weights']} | "
            f"{r['identical_val_losses']} |"
        )
    lines += ["", f"**{ok} of {len(train_rows)} interrupted runs resumed to the bit-identical result.**", "",
              f"## Grid: `cradlekit run` killed at a random moment ({len(grid_rows)} trials)", "",
              f"Simulator grid of {concurrent['runs_in_grid']} runs (2 models x k=3 x 2 seeds, 80 steps each); "
              f"uninterrupted: {concurrent['grid_seconds_uninterrupted']} s.", "",
              "| trial | signal | delay (s) | runs finished before the signal | re-run | results.csv identical |",
              "|---|---|---|---|---|---|"]
    for r in grid_rows:
        lines.append(f"| {r['trial']} | {r['signal']} | {r['delay_s']}{'' if r['landed'] else ' (after the end)'} | "
                     f"{r['runs_finished_before_kill']} | {r['rerun']} | {r['identical_results']} |")
    lines += [
        "",
        "## Two runners started together on one empty folder",
        "",
        f"Runs trained by each: {concurrent['ran_by_each']} (grid: {concurrent['runs_in_grid']} runs); exit codes "
        f"{concurrent['exit_codes']}; final results.csv identical to the uninterrupted grid's: "
        f"{concurrent['identical_results']}.",
        "",
        "## Damaged and crafted files",
        "",
        "| case | outcome | message names the file | code ran | file kept | message (start) |",
        "|---|---|---|---|---|---|",
    ]
    for r in files:
        msg = r["message"].replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r['case']} | {r['outcome']} | {r['names_file']} | {r['code_ran']} | {r.get('file_kept', '')} | {msg} |"
        )
    lines += report_lines(second, costs)
    path = RESULTS / "fault_injection.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        _train_worker(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-trials", type=int, default=8)
    parser.add_argument("--grid-trials", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cradlekit-faults-") as tmp:
        work = Path(tmp)
        train_rows, duration = training_trials(work, args.train_trials, rng)
        grid_rows, concurrent = grid_trials(work, args.grid_trials, rng)
        files = file_checks(work)
        from _content_check_cost import measure
        from fault_injection_round2 import round_two

        second = round_two(work, work / "grid.yaml", work / "grid_ref", _results)
        costs = measure(work)
    path = write_report(
        train_rows, duration, grid_rows, concurrent, files, second, costs, time.perf_counter() - start, args
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
