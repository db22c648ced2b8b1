"""Training throughput of CRADLE-VAE at the published configuration (issue 3).

Batch 512, 5 particles, latent D = 200, hidden 400, T = 100 perturbations (Norman-like dosages:
controls, singles and pairs), at G = 1,187 and G = 5,000 genes, on synthetic counts. For each
gene count it times

(a) the optimised ``cradlekit.module.CradleVAE`` trained by the real ``cradlekit.train.Trainer``
    on ``DeviceData`` (all tensors on the device; a batch is an index gather), and
(b) the straightforward reference ``benchmarks/naive_cradle.py`` (particles in a Python loop,
    separate encoder calls, both decoder branches scored for every cell) with the same
    parameters, Adam, gradient clipping and the same device-resident batches,

after ``--warmup`` untimed steps, over ``--steps`` timed steps (one epoch of ``steps * 512``
cells; on CUDA the clock is read after ``torch.cuda.synchronize()``), ``--repeats`` times,
alternating (a) and (b) so that both see the same background load; the fastest repeat is
reported, with all of them. Reports ms/step, steps/s, cells/s, the speed-up of (a) over (b) and
the projected time of a Replogle-size epoch (76,000 training cells: 149 steps of 512).

Pyro validation is switched off globally for both (the optimised model also switches it off
inside its loss: validation checks force host-device synchronisations).

Usage::

    python benchmarks/bench_training.py [--device auto|cpu|cuda] [--steps 15] [--warmup 3]
        [--repeats 2] [--threads N] [--genes 1187 5000] [--no-naive]

Writes ``benchmarks/results/training_<device>.json`` and ``.md`` (``<device>``: ``cpu`` or e.g.
``cuda-nvidia-h200``).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path

import pyro
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_result  # noqa: E402
from cradlekit.module import CradleVAE, log_standardize_stats  # noqa: E402
from cradlekit.train import DeviceData, TrainConfig, Trainer  # noqa: E402
from naive_cradle import NaiveCradleVAE, naive_train_step  # noqa: E402

BATCH = 512
PARTICLES = 5
LATENT = 200
HIDDEN = 400
N_PERT = 100
REPLOGLE_CELLS = 76_000
REPLOGLE_STEPS = math.ceil(REPLOGLE_CELLS / BATCH)  # 149
TARGET_EPOCH_S = 2.0


def synthetic(n_cells: int, n_genes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Perturb-seq-like counts: 10 % controls, 70 % singles, 20 % pairs, 15 % QC-failed cells."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _synthetic(n_cells, n_genes, torch.Generator().manual_seed(seed))


def _synthetic(n_cells: int, n_genes: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    base = torch.distributions.Gamma(0.4, 1.0).sample((n_genes,)) + 1e-3
    base = base / base.sum()
    kind = torch.rand(n_cells, generator=g)
    D = torch.zeros(n_cells, N_PERT)
    first = torch.randint(0, N_PERT, (n_cells,), generator=g)
    second = (first + 1 + torch.randint(0, N_PERT - 1, (n_cells,), generator=g)) % N_PERT
    treated = kind >= 0.1
    D[treated, first[treated]] = 1.0
    pairs = kind >= 0.8
    D[pairs, second[pairs]] = 1.0
    effects = torch.randn(N_PERT, n_genes, generator=g) * (torch.rand(N_PERT, n_genes, generator=g) < 0.05)
    A = (torch.rand(n_cells, generator=g) < 0.15).float()
    log_freq = torch.log(base) + D @ effects
    freq = torch.softmax(log_freq, dim=-1)
    library = torch.exp(torch.randn(n_cells, generator=g) * 0.4 + math.log(8000.0)) * (1.0 - 0.5 * A)
    rate = freq * library[:, None] * torch.distributions.Gamma(5.0, 5.0).sample((n_cells, n_genes))
    X = torch.poisson(rate, generator=g)
    # counterfactual reference: a QC-failed cell with the same first perturbation (content does not
    # matter for speed; J2 is computed for every QC-passed cell)
    failed = torch.nonzero(A > 0).squeeze(-1)
    ref = failed[torch.randint(0, failed.numel(), (n_cells,), generator=g)]
    return {"X": X, "D": D, "A": A, "X_cf": X[ref].clone(), "cf_mask": A == 0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(seconds: float, steps: int) -> dict:
    per_step = seconds / steps
    return {
        "steps": steps,
        "seconds": seconds,
        "ms_per_step": 1e3 * per_step,
        "steps_per_s": 1.0 / per_step,
        "cells_per_s": BATCH / per_step,
        "replogle_epoch_s": REPLOGLE_STEPS * per_step,
    }


def build_model(data: dict[str, torch.Tensor]) -> CradleVAE:
    n_obs = (data["D"] != 0).sum(0)
    mean, std = log_standardize_stats(data["X"])
    torch.manual_seed(0)
    return CradleVAE(
        data["X"].shape[1], N_PERT, n_obs, data["X"].shape[0],
        latent_dim=LATENT, hidden_dim=HIDDEN, num_particles=PARTICLES,
        mask_prior=0.01, alpha=0.5, log_mean=mean, log_std=std,
    )


class OptimisedRunner:
    """The real Trainer on DeviceData: a warm-up epoch, then one timed epoch per call."""

    def __init__(self, model: CradleVAE, warm: DeviceData, timed: DeviceData, device: torch.device):
        cfg = TrainConfig(
            lr=3e-4, batch_size=BATCH, max_epochs=1, patience=None, progress_bar=False,
            restore_best=False, checkpoint_dir=None, seed=0,
        )
        self.trainer = Trainer(model, warm, config=cfg)
        self.timed, self.device = timed, device
        self.trainer.fit(resume=False)  # warm-up epoch
        self.trainer.train_data = timed

    def epoch(self) -> dict:
        self.trainer.config.max_epochs = self.trainer.epoch + 1
        _sync(self.device)
        t0 = time.perf_counter()
        self.trainer.fit(resume=False)
        _sync(self.device)
        wall = time.perf_counter() - t0
        record = self.trainer.history[-1]
        # the epoch's own clock (batches + the end-of-epoch sync); the wall clock adds fit()'s
        # bookkeeping (history record, best-state copy)
        out = _stats(record["seconds"], math.ceil(len(self.timed) / BATCH))
        out["fit_wall_s"] = wall
        out["train_loss"] = record["train_loss"]
        return out


class NaiveRunner:
    """The naive reference with the trainer's step (Adam, clipping, finite check) on the same data."""

    def __init__(self, naive: NaiveCradleVAE, warm: DeviceData, timed: DeviceData, device: torch.device):
        self.naive, self.timed, self.device = naive, timed, device
        self.params = [p for p in naive.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=3e-4, weight_decay=1e-6)
        self.g = torch.Generator().manual_seed(0)
        for batch in warm.batches(BATCH, shuffle=True, generator=self.g):
            naive_train_step(self.naive, self.opt, batch, self.params)

    def epoch(self) -> dict:
        _sync(self.device)
        t0 = time.perf_counter()
        total = torch.zeros((), device=self.device)
        n = 0
        for batch in self.timed.batches(BATCH, shuffle=True, generator=self.g):
            total += naive_train_step(self.naive, self.opt, batch, self.params)
            n += 1
        loss = float(total / n)
        _sync(self.device)
        out = _stats(time.perf_counter() - t0, n)
        out["train_loss"] = loss
        return out


def _best(runs: list[dict]) -> dict:
    """The fastest repeat (least disturbed by other load), with every repeat's ms/step."""
    best = dict(min(runs, key=lambda r: r["ms_per_step"]))
    best["ms_per_step_repeats"] = [r["ms_per_step"] for r in runs]
    return best


def device_kind(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def markdown(payload: dict) -> str:
    m = payload["machine"]
    lines = [
        f"# CRADLE-VAE training throughput ({payload['device_name']})",
        "",
        f"Batch {BATCH}, {PARTICLES} particles, D = {LATENT}, hidden {HIDDEN}, T = {N_PERT} "
        f"perturbations, synthetic counts; {payload['warmup_steps']} warm-up + "
        f"{payload['timed_steps']} timed steps, best of {payload['repeats']} alternating repeats; "
        f"torch {m.get('torch')}, "
        f"{payload['torch_threads']} CPU thread(s); load average before/after "
        f"{payload['loadavg_before'][0]:.2f} / {payload['loadavg_after'][0]:.2f} "
        f"(1-min, {m.get('cpu_count')} cores). Regenerate with `{payload['command']}`.",
        "",
        "| genes | implementation | ms/step | steps/s | cells/s | Replogle epoch (149 steps) |",
        "|---:|:---|---:|---:|---:|---:|",
    ]
    for row in payload["results"]:
        for impl in ("optimised", "naive"):
            r = row.get(impl)
            if r is None:
                continue
            lines.append(
                f"| {row['n_genes']:,} | {impl} | {r['ms_per_step']:.1f} | {r['steps_per_s']:.2f} | "
                f"{r['cells_per_s']:,.0f} | {r['replogle_epoch_s']:.1f} s |"
            )
    lines.append("")
    for row in payload["results"]:
        if "speedup" in row:
            lines.append(
                f"- {row['n_genes']:,} genes: optimised step {row['speedup']:.2f}x faster than the "
                "naive reference."
            )
    target = payload.get("target")
    if target:
        lines.append(f"- {target}")
    lines += ["", payload["naive_description"], ""]
    if payload.get("notes"):
        lines += [f"- {n}" for n in payload["notes"]] + [""]
    changes = payload.get("model_changes")
    if changes:
        lines += [
            "## Model changes of issue 3 (before / after)",
            "",
            changes["method"],
            "",
            "| genes | before ms/step | after ms/step | change |",
            "|---:|---:|---:|---:|",
        ]
        for r in changes["results"]:
            lines.append(
                f"| {r['n_genes']:,} | {r['before_ms']:.0f} | {r['after_ms']:.0f} | "
                f"{100 * (r['after_ms'] / r['before_ms'] - 1):+.0f} % |"
            )
        lines += [""] + [f"- {c}" for c in changes["changes"]] + [""]
    return "\n".join(lines)


def render(json_path: Path) -> Path:
    """Rewrite the ``.md`` next to a results file from its JSON (e.g. after adding notes)."""
    import json

    payload = json.loads(json_path.read_text())
    md = json_path.with_suffix(".md")
    md.write_text(markdown(payload) + "\n")
    return md


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=15, help="timed steps per implementation")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=2, help="timed epochs per implementation (best kept)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--genes", type=int, nargs="+", default=[1187, 5000])
    ap.add_argument("--no-naive", action="store_true", help="time the optimised model only")
    ap.add_argument("--name", default=None, help="result file name (default training_<device>)")
    ap.add_argument("--note", action="append", default=[], help="free-text note for the results")
    ap.add_argument("--render", type=Path, default=None, help="only re-render the .md of this JSON")
    args = ap.parse_args(argv)
    if args.render is not None:
        print(f"wrote {render(args.render)}")
        return {}

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    pyro.enable_validation(False)
    kind = device_kind(device)
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"CPU ({os.cpu_count()} cores)"
    load_before = os.getloadavg()
    print(f"device {device_name}, threads {torch.get_num_threads()}, load {load_before}", flush=True)

    results = []
    for G in args.genes:
        n_cells = (args.warmup + args.steps) * BATCH
        data = synthetic(n_cells, G)
        model = build_model({k: v[args.warmup * BATCH:] for k, v in data.items()})
        naive = None if args.no_naive else NaiveCradleVAE.from_model(model)  # same initial parameters
        model.to(device)
        warm = DeviceData({k: v[: args.warmup * BATCH] for k, v in data.items()}, device=device)
        timed = DeviceData({k: v[args.warmup * BATCH:] for k, v in data.items()}, device=device)
        del data
        row: dict = {"n_genes": G}
        runners = {"optimised": OptimisedRunner(model, warm, timed, device)}
        if naive is not None:
            naive.to(device)
            runners["naive"] = NaiveRunner(naive, warm, timed, device)
        runs: dict[str, list[dict]] = {k: [] for k in runners}
        for rep in range(args.repeats):  # interleaved, so both see similar background load
            for name, runner in runners.items():
                runs[name].append(runner.epoch())
                print(f"G={G} {name} repeat {rep + 1}: {runs[name][-1]['ms_per_step']:.1f} ms/step", flush=True)
        for name in runners:
            row[name] = _best(runs[name])
        if naive is not None:
            row["speedup"] = row["naive"]["ms_per_step"] / row["optimised"]["ms_per_step"]
            print(f"G={G} speed-up {row['speedup']:.2f}x", flush=True)
        if device.type == "cuda":
            row["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1024**3
            torch.cuda.reset_peak_memory_stats(device)
        results.append(row)
        del model, naive, warm, timed, runners
        if device.type == "cuda":
            torch.cuda.empty_cache()

    target = None
    for row in results:
        if row["n_genes"] == 1187:
            t = row["optimised"]["replogle_epoch_s"]
            target = (
                f"Replogle-size epoch (76,000 cells x 1,187 genes, 149 steps) projected at {t:.2f} s on "
                f"{device_name} (target on an H200: < {TARGET_EPOCH_S:.0f} s)."
            )
    payload = {
        "benchmark": "training",
        "device": str(device),
        "device_kind": kind,
        "device_name": device_name,
        "device_arg": args.device,
        "command": " ".join(["python benchmarks/bench_training.py", *(sys.argv[1:] if argv is None else argv)]),
        "torch_threads": torch.get_num_threads(),
        "cuda_tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "pyro_validation": False,
        "config": {
            "batch_size": BATCH, "num_particles": PARTICLES, "latent_dim": LATENT,
            "hidden_dim": HIDDEN, "n_perturbations": N_PERT, "alpha": 0.5, "mask_prior": 0.01,
            "dtype": "float32",
        },
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "repeats": args.repeats,
        "replogle_steps": REPLOGLE_STEPS,
        "results": results,
        "target": target,
        "naive_description": (
            "Naive reference (benchmarks/naive_cradle.py): the same objective and parameters, "
            "particles in a Python loop, encoder calls on concatenated inputs (factual, "
            "counterfactual and reference: three G x H products per particle), both decoder "
            "branches scored with pyro's GammaPoisson for every cell and selected by a_i; same "
            "Adam, clipping, finite check and device-resident batches as the trainer."
        ),
        "notes": args.note,
    }
    path = write_result(args.name or f"training_{kind}", payload)
    payload["machine"] = machine()
    md = path.with_suffix(".md")
    md.write_text(markdown(payload) + "\n")
    print(f"wrote {path} and {md}")
    return payload


if __name__ == "__main__":
    main()
