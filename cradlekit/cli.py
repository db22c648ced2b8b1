"""Command line entry point: ``cradlekit demo``, ``cradlekit qc``, ``cradlekit run`` and ``cradlekit table``.

``cradlekit demo`` is the README's main job on the embedded default (the simulator):
simulate → QC at 3/4/5 MAD → combination split → counterfactual references → the default
CRADLE-VAE and the conditional VAE trained to early stopping, beside the mean and additive
baselines (held-out effects against data and truth, QC pass rate of generated cells and its
ceiling), written to an output folder with a Markdown summary.

``cradlekit qc IN OUT`` labels QC artifacts of a file (``--precomputed METRIC=COLUMN`` for
full-transcriptome metrics in obs). Errors in the input or config print one line (``--debug``
before the command shows the traceback).

``cradlekit run CONFIG`` runs an experiment grid (models × QC k × seeds, see
:mod:`cradlekit.experiments`), skipping finished runs; ``cradlekit table RESULTS.csv`` renders
Tables 2 and 3 from a results file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._atomic import write_h5ad_atomic, write_text_atomic
from ._logging import enable_logging, logger


def _demo(args: argparse.Namespace) -> int:
    from . import data, evaluate, qc

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    adata = data.simulate_perturbseq(n_cells=args.n_cells, n_genes=args.n_genes, seed=args.seed)
    timings["simulate"] = time.perf_counter() - t0
    logger.info("simulated %d cells x %d genes", adata.n_obs, adata.n_vars)

    t0 = time.perf_counter()
    qc.label_artifacts(adata, ks=(3, 4, 5), seed=args.seed)
    timings["qc"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    data.split_combinations(adata, holdout_fraction=0.25, seed=args.seed)
    data.counterfactual_references(adata, artifact_key="artifact_k3", seed=args.seed)
    timings["split_and_references"] = time.perf_counter() - t0

    recovery = evaluate.artifact_recovery(adata)
    summary = qc.qc_summary(adata)
    splits = data.split_summary(adata, artifact_key="artifact_k3")
    n_ref = int(adata.obs["cf_has_reference"].sum())
    model_lines = _train_and_evaluate(adata, args, out, timings) if args.epochs > 0 else []

    write_h5ad_atomic(adata, out / "demo.h5ad")
    lines = [
        "# cradlekit demo (simulated Perturb-seq)",
        "",
        f"{adata.n_obs} cells x {adata.n_vars} genes, seed {args.seed}.",
        "",
        "## QC fail counts per criterion",
        "",
        summary.to_markdown(),
        "",
        "## Recovery of injected artifacts",
        "",
        recovery.to_markdown(floatfmt=".3f"),
        "",
        "## Split (k = 3)",
        "",
        splits.to_markdown(),
        "",
        f"Held-out combinations: {', '.join(map(str, adata.uns['split']['heldout']))}",
        "",
        f"Counterfactual references: {n_ref} QC-passed cells have one.",
        "",
        *model_lines,
        "## Timings (s)",
        "",
        "\n".join(f"- {k}: {v:.2f}" for k, v in timings.items()),
        "",
    ]
    write_text_atomic(out / "summary.md", "\n".join(lines))
    logger.info("wrote %s and %s", out / "demo.h5ad", out / "summary.md")
    print("\n".join(lines))  # the CLI's output is its report
    return 0


def _train_and_evaluate(adata, args: argparse.Namespace, out: Path, timings: dict[str, float]) -> list[str]:
    """The default model beside the conditional VAE and the mean and additive baselines, at convergence."""
    import pandas as pd

    from .experiments.demo import demo_comparison
    from .model._options import DEFAULT_OBJECTIVE

    t0 = time.perf_counter()
    table = demo_comparison(out, n_cells=args.n_cells, n_genes=args.n_genes, seed=args.seed, max_epochs=args.epochs)
    timings["train_and_evaluate"] = time.perf_counter() - t0
    numbers = table.drop(columns="training").apply(pd.to_numeric, errors="coerce")
    shown = pd.concat([table[["training"]], numbers.round(3)], axis=1)
    return [
        "## The default model beside the conditional VAE and the baselines",
        "",
        f"CRADLE-VAE with the package's default objective (`{DEFAULT_OBJECTIVE}`) and the conditional VAE, "
        "trained until early stopping on validation cells (patience 50; latent 16, hidden 128, 1 particle, "
        "batch 512, lr 2e-3), beside two baselines fitted on the same training cells. Held-out = the "
        "unseen combinations above; *truth* = the simulator's true effects; *centred* = ATE-ρ around the "
        "mean training effect (a constant prediction cannot win it). QCPR: generated artifact-free "
        "cells (library 1e4) under the data's 3-MAD thresholds; its ceiling is the pass rate of fresh "
        "artifact-free cells from the true process, judged the same way (QC-passed data cells pass by "
        "selection and are no ceiling). Baselines generate no cells. Runs and models: "
        f"`{out / 'runs'}`.",
        "",
        shown.to_markdown(floatfmt=".3f"),
        "",
    ]


def _metric_pairs(pairs: Sequence[str] | None) -> dict[str, str] | None:
    out = {}
    for pair in pairs or ():
        metric, sep, column = pair.partition("=")
        if not sep or not metric or not column:
            raise ValueError(f"--precomputed {pair!r}: write METRIC=COLUMN, e.g. --precomputed total_counts=ncounts")
        out[metric.strip()] = column.strip()
    return out or None


def _qc(args: argparse.Namespace) -> int:
    from . import data, qc

    adata = data.read_h5ad(args.input)
    precomputed = _metric_pairs(args.precomputed)
    if args.perturbation_key or args.control_label:
        if not (args.perturbation_key and args.control_label):
            raise ValueError("pass both --perturbation-key and --control-label (or neither)")
        data.setup(adata, perturbation_key=args.perturbation_key, control_label=args.control_label,
                   separator=args.separator, qc_metrics=precomputed, batch_key=args.batch_key)
    qc.label_artifacts(
        adata, ks=tuple(args.k), layer=args.layer, run_scrublet=not args.no_scrublet, seed=args.seed,
        precomputed=precomputed if precomputed else ("auto" if not args.no_precomputed else None),
        batch_key=args.batch_key if args.batch_key else "auto", batch_thresholds=args.batch_thresholds,
    )
    print(qc.qc_summary(adata).to_markdown())
    write_h5ad_atomic(adata, args.output)  # temporary file + rename: safe when output is the input
    logger.info("wrote %s", args.output)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .experiments import load_config, run_grid

    config = load_config(args.config, output_dir=args.out)
    result = run_grid(config, executor=args.executor, n_workers=args.workers,
                      on_error="continue" if args.keep_going else "raise")
    lines = [
        f"grid {config.name}: {len(result.ran)} ran, {len(result.cached)} cached, {len(result.failed)} failed "
        f"in {result.seconds:.1f} s",
        *[f"failed: {spec.model} k={spec.k} seed={spec.seed}: {msg}" for spec, msg in result.failed.items()],
        *[f"wrote {path}" for path in result.files.values()],
    ]
    if "table2_md" in result.files:
        lines += ["", result.files["table2_md"].read_text()]
    print("\n".join(lines))  # the CLI's output is its report
    return 1 if result.failed else 0


def _table(args: argparse.Namespace) -> int:
    import pandas as pd

    from .experiments import write_tables

    results = pd.read_csv(args.results)
    out = Path(args.out) if args.out else Path(args.results).parent
    files = write_tables(results, out)
    if not files:
        logger.error("no Table 2/3 model in %s", args.results)
        return 1
    print(
        "\n".join(
            [f"wrote {path}" for path in files.values()]
            + [""]
            + [files[k].read_text() for k in files if k.endswith("_md")]
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``cradlekit`` argument parser."""
    parser = argparse.ArgumentParser(prog="cradlekit", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job on simulated data")
    demo.add_argument("--out", default="cradlekit_demo", help="output folder (default: %(default)s)")
    demo.add_argument("--n-cells", type=int, default=8000)
    demo.add_argument("--n-genes", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=2000,
                      help="epoch cap of each model; early stopping (patience 50) ends them sooner (0: skip training)")
    demo.set_defaults(func=_demo)

    qcp = sub.add_parser("qc", help="label QC artifacts of an .h5ad file of raw counts")
    qcp.add_argument("input")
    qcp.add_argument("output")
    qcp.add_argument("-k", type=float, nargs="+", default=[3, 4, 5])
    qcp.add_argument("--layer", default=None, help="layer holding raw counts (default: X)")
    qcp.add_argument("--no-scrublet", action="store_true")
    qcp.add_argument("--seed", type=int, default=0)
    qcp.add_argument("--precomputed", action="append", metavar="METRIC=COLUMN",
                     help="a full-transcriptome metric already in obs, e.g. total_counts=total_counts_full "
                          "(repeat for n_genes_by_counts, pct_counts_mt, pct_counts_ribo, pct_counts_hb, "
                          "predicted_doublet); default: those a loader recorded, else computed from the genes")
    qcp.add_argument("--no-precomputed", action="store_true", help="compute every metric from the genes in the file")
    qcp.add_argument("--perturbation-key", default=None, help="obs column of perturbations (sets the file up)")
    qcp.add_argument("--control-label", default=None, help="control label in that column")
    qcp.add_argument("--separator", default="+", help="separator of combination members (default: %(default)s)")
    qcp.add_argument("--batch-key", default=None, help="obs column of batches (scrublet and thresholds per batch)")
    qcp.add_argument("--batch-thresholds", action="store_true", help="flag cells with their batch's thresholds")
    qcp.set_defaults(func=_qc)

    run = sub.add_parser("run", help="run an experiment grid from a YAML config (finished runs are skipped)")
    run.add_argument("config", help="YAML experiment config (see configs/)")
    run.add_argument("--executor", choices=["sequential", "dask"], default="sequential")
    run.add_argument("--workers", type=int, default=2, help="Dask worker processes (default: %(default)s)")
    run.add_argument("--out", default=None, help="output folder (default: the config's output_dir)")
    run.add_argument("--keep-going", action="store_true", help="log failed runs and go on")
    run.set_defaults(func=_run)

    table = sub.add_parser("table", help="render Tables 2 and 3 from a results.csv")
    table.add_argument("results", help="results.csv written by 'cradlekit run'")
    table.add_argument("--out", default=None, help="output folder (default: next to the results file)")
    table.set_defaults(func=_table)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line interface."""
    from .errors import CradlekitError
    from .experiments.dataset_config import ConfigError

    args = build_parser().parse_args(argv)
    enable_logging()  # a terminal: progress (INFO) on stderr; one handler however often main() runs
    if args.debug:
        return int(args.func(args))
    try:
        return int(args.func(args))
    except (CradlekitError, ConfigError, OSError, ValueError, TypeError, RuntimeError) as err:
        # bad input, a bad config or a failure deep in a library: one line naming the problem, no traceback
        message = " ".join(str(err).split())
        print(f"cradlekit {args.command}: error: {type(err).__name__}: {message} "
              "(--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
