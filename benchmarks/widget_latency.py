"""Latency of the widget interactions a user waits for (issues 14 and 21), on this machine's CPUs.

Each interaction is driven through the widget (its ipywidgets view, as a click would) or the controller,
on a screen laid out like a biologist's own (issue 21): :func:`cradlekit.data.write_example_screen`
with 3,000 cells, a 287-gene panel (300 simulated genes without the MT genes) and full-transcriptome
QC metrics in ``obs``, 29 perturbations, and a tiny trained model. Wall time and this process's CPU
time are both recorded, with the 1-minute load average sampled before every repeat (the median of
those samples is beside each number): the machine is shared, so wall times can be several times the
CPU times.

Regenerate with::

    OMP_NUM_THREADS=2 python benchmarks/widget_latency.py

(writes ``benchmarks/results/widget_latency.json`` and ``.md``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from _common import RESULTS, write_result  # noqa: E402

REPEATS = 3


def measure(rows: list[dict], name: str, fn, *, limit: float, busy: str, repeats: int = REPEATS, after=None) -> None:
    """Run ``fn`` ``repeats`` times (then ``after``, untimed); keep the median wall and CPU seconds and the median
    load beside them."""
    walls, cpus, loads = [], [], []
    for _ in range(repeats):
        loads.append(os.getloadavg()[0])
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if after is not None:
            after()
    row = {"interaction": name, "wall_s": float(np.median(walls)), "cpu_s": float(np.median(cpus)),
           "load_1min": round(float(np.median(loads)), 2), "load_range": [round(min(loads), 2), round(max(loads), 2)],
           "limit_s": limit, "busy_state": busy}  # fmt: skip
    rows.append(row)
    print(f"{name}: wall {row['wall_s']:.2f} s, cpu {row['cpu_s']:.2f} s (load {row['load_1min']})", flush=True)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    import cradlekit as ck
    from cradlekit.pl.embed import embed_cells, warm_up_umap
    from cradlekit.widgets import (
        ComparisonExplorer,
        LatentExplorer,
        PerturbationExplorer,
        QCExplorer,
        TrainingController,
    )
    from cradlekit.widgets._latent_compute import generate_cells

    path = ck.data.write_example_screen(Path(tempfile.mkdtemp()) / "screen.h5ad", n_cells=3000, n_genes=300, seed=0)
    adata = ck.data.load_dataset(path, perturbation_key="guide", control_label="non-targeting",
                                 qc_metrics=ck.data.EXAMPLE_QC_METRICS)  # fmt: skip
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 3 == 0, "lane1", "lane2")
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    model = ck.PerturbationModel(adata, latent_dim=10, hidden_dim=64, num_particles=1)
    model.train(max_epochs=3, batch_size=256, progress_bar=False)
    rows: list[dict] = []

    qc = QCExplorer(adata)
    view = qc.view
    ks = iter(np.arange(3.25, 9.0, 0.25))
    measure(rows, "QCExplorer: move the k slider (counts on both bases, table, 6-panel figure)",
            lambda: setattr(view.slider, "value", float(next(ks))), limit=1.0, busy="progress line while drawing")
    bases = iter(["panel", "reference"] * 3)
    measure(rows, "QCExplorer: switch the QC basis (data's metrics / gene panel)",
            lambda: setattr(view.basis, "value", next(bases)), limit=1.0, busy="progress line while drawing")
    groups = iter(["batch", "guide", "perturbation"] * 3)
    measure(rows, "QCExplorer: group the pass-rate table by another obs column",
            lambda: setattr(view.group_by, "value", next(groups)), limit=1.0, busy="none (fast)")

    tc = TrainingController(adata, latent_dim=10, hidden_dim=64, max_epochs=2, model_options={"num_particles": 1})
    tc.start()
    tc.wait()
    tview = tc.view
    measure(rows, "TrainingController: redraw the loss curves (each second while training)", tview._draw,
            limit=1.0, busy="training: progress bar, status, Stop")  # fmt: skip

    pe = PerturbationExplorer(model, adata, perturbation="KLF1", n=100)
    pview = pe.view
    flips = iter([True, False] * 3)
    measure(rows, "PerturbationExplorer: artifact on/off (generate 200 cells, QC with scrublet, Figure 3, panel basis)",
            lambda: setattr(pe, "artifact", next(flips)), limit=1.0, busy="progress bar + Cancel (background)")
    genes = iter(list(adata.var_names[:3]))

    def gene():
        pe.gene = next(genes)
        pview._draw_gene()

    measure(rows, "PerturbationExplorer: gene violins (data vs generated)", gene, limit=1.0, busy="none (fast)")

    load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    le = LatentExplorer(adata, model=model, method="umap", color_by="perturbation", max_cells=2000)
    returned = time.perf_counter() - t0
    assert le.busy, "the first embedding should run in the background"
    le.wait_task()
    first = time.perf_counter() - t0
    rows.append({"interaction": _first_umap(returned),
                 "wall_s": first, "cpu_s": time.process_time() - c0, "load_1min": round(load0, 2),
                 "load_range": [round(load0, 2), round(load0, 2)], "limit_s": None,
                 "busy_state": "progress bar + Cancel from the start (background)"})  # fmt: skip
    print(f"LatentExplorer constructor returned in {returned:.3f} s; first UMAP (with numba compilation) {first:.1f} s")
    warm_up_umap(wait=True)
    constructed = iter(range(1, 10))
    started: list = []

    def construct():
        started.append(LatentExplorer(adata, method="umap", color_by="perturbation", seed=next(constructed)))

    def stop():  # untimed: cancel the background embedding and let its thread end before the next repeat
        started[-1].cancel()
        started[-1].wait_task()

    measure(rows, "LatentExplorer: construction returns (the embedding runs in the background)", construct,
            limit=0.3, busy="progress bar + Cancel from the start", after=stop)  # fmt: skip

    def embed_all():
        cells = adata.copy()
        for key in list(cells.obsm):
            del cells.obsm[key]
        cells.uns.pop("cradlekit_embeddings", None)
        LatentExplorer(cells, method="umap", max_cells=2000, seed=next(constructed), wait=True)

    measure(rows, "LatentExplorer: UMAP of 2,000 of the 3,000 cells + the other 1,000 placed, end to end",
            embed_all, limit=3.0, busy="progress bar + Cancel (background)")  # fmt: skip
    lview = le.view
    colours = iter(["artifact", "perturbation", "group"] * 3)
    measure(rows, "LatentExplorer: change the colouring (redraw, shrinking category list)",
            lambda: setattr(lview.color_by, "value", next(colours)), limit=1.0, busy="progress line while drawing")
    columns = iter(["total_counts_full", "batch", "pct_counts_mt_full"] * 3)
    measure(rows, "LatentExplorer: colour by an obs column (continuous or categorical)",
            lambda: setattr(lview.column, "value", next(columns)), limit=1.0, busy="progress line while drawing")
    typed = iter(["gene00", "rpl1", "gata"] * 3)
    measure(rows, "LatentExplorer: one keystroke of the gene search (suggestions)",
            lambda: setattr(lview.gene, "value", next(typed)), limit=0.2, busy="none (fast)")
    gen = generate_cells(le)
    n_gen = gen.n_obs
    seeds = iter(range(100))
    measure(rows, f"LatentExplorer: generate {n_gen} cells (50 per perturbation, artifact off + on)",
            lambda: generate_cells(le), limit=3.0, busy="progress bar + Cancel (background)")
    for method, limit in (("umap", 3.0), ("tsne", 3.0)):
        def embed(method=method):
            cells = gen.copy()
            embed_cells(cells, method=method, seed=next(seeds))

        measure(rows, f"embed {n_gen} generated cells: {method} (PCA, exact kNN, optimisation)", embed, limit=limit,
                busy="progress bar + Cancel (background)")  # fmt: skip

    le.color_by = "perturbation"  # a colouring both sources have

    def switch():
        le.source = "data"
        le.generated = None  # new cells: generated and embedded again
        le.source = "generated"
        assert le.message == "" and len(le.embedding) == n_gen, le.message

    measure(rows, f"LatentExplorer: switch to generated cells (generate {n_gen} + UMAP), end to end", switch,
            limit=3.0, busy="progress bar + Cancel (background)", repeats=2)  # fmt: skip

    ns = iter([100, 101, 102])

    def compare():
        ce.n = next(ns)

    ce = ComparisonExplorer(model, adata, wait=True)
    measure(rows, f"ComparisonExplorer: {len(ce.perturbations)} perturbations + control, 100 generated and up to "
                  "100 observed cells each: generate, joint UMAP, top genes", compare, limit=3.0,
            busy="progress bar + Cancel (background)", repeats=2)  # fmt: skip
    cview = ce.view
    plots = iter(["matrixplot", "dotplot"] * 3)
    measure(rows, "ComparisonExplorer: switch dot plot / matrix plot (scanpy, redraw)",
            lambda: setattr(cview.plot, "value", next(plots)), limit=1.0, busy="progress line while drawing")

    payload = {"rows": rows, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
               "latent_constructor_returned_s": returned, "latent_first_embedding_s": first}  # fmt: skip
    write_result("widget_latency", payload)
    write_markdown(rows, os.environ.get("OMP_NUM_THREADS"))


def _first_umap(returned: float) -> str:
    return (f"LatentExplorer: first construction in a process (returned busy after {returned:.2f} s) until its UMAP "
            "is shown, numba compilation included; once")


def _target(limit: float | None) -> str:
    return "–" if limit is None else f"< {limit:g}"


def write_markdown(rows: list[dict], omp: str | None) -> None:
    lines = [
        "# Widget interaction latency (issues 14 and 21)",
        "",
        f"The example own-layout screen (`write_example_screen`: 3,000 cells, a 287-gene panel without MT genes, "
        f"full-transcriptome QC metrics in obs, 29 perturbations); tiny model; {os.cpu_count()} CPU cores, "
        f"OMP_NUM_THREADS={omp}, torch 1 thread. Median of {REPEATS} runs (2 for the end-to-end ones, 1 for the "
        "first UMAP of the process).",
        "",
        "**The machine was shared with other jobs while this ran.** Beside each number: the 1-minute load "
        "average, the median of the samples taken before each repeat, and their range (2 cores: a load of 4 "
        "means each of our threads got about half a core, so wall times are inflated by up to load / 2). The "
        "CPU column is this process's CPU time (all its threads), the better estimate of an idle 2-core machine.",
        "",
        "Regenerate with `OMP_NUM_THREADS=2 python benchmarks/widget_latency.py`.",
        "",
        "| interaction | wall s | CPU s | load (1 min) | load range | target s | while it runs |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lo, hi = r.get("load_range", [r["load_1min"], r["load_1min"]])
        lines.append(f"| {r['interaction']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['load_1min']:.1f} | "
                     f"{lo:.1f}-{hi:.1f} | {_target(r['limit_s'])} | {r['busy_state']} |")  # fmt: skip
    lines += ["", "The LatentExplorer's constructor returns at once and shows a busy bar with Cancel while the first "
              "embedding runs in a background thread (the first UMAP of a process also compiles umap-learn's numba "
              "code, in the background too: the 'first construction' row; the busy line says so). Above "
              "`max_cells` cells a seeded subsample is embedded and the rest placed at their nearest embedded cells "
              "(the 'placed' row includes that). t-SNE "
              "(openTSNE on the same neighbours, 375 iterations) needs no compilation but several seconds of CPU for "
              "~2,900 cells (its row): the non-default method.", "",
              "The colouring rows time the Python side only: the ipympl canvas is drawn when the browser asks for "
              "it (one more round trip, not timed here). Every action over 0.3 s shows a busy line: a progress bar "
              "with what is coming, and a Cancel button for those that run in the background.", ""]  # fmt: skip
    (RESULTS / "widget_latency.md").write_text("\n".join(lines))
    print("wrote", RESULTS / "widget_latency.md")


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:  # rewrite the .md from the .json (no new measurement)
        import json

        saved = json.loads((RESULTS / "widget_latency.json").read_text())
        write_markdown(saved["rows"], saved["omp_num_threads"])
    else:
        main()
