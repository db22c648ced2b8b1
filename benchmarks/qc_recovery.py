"""Precision/recall of the six-criterion QC against the simulator's injected artifacts.

Usage::

    python benchmarks/qc_recovery.py [--n-cells 20000 --n-genes 2000 --seeds 0 1 2]

Writes ``benchmarks/results/qc_recovery.json`` and ``.md`` (mean over seeds, and per artifact type).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402


def main() -> None:
    from cradlekit.data import simulate_perturbseq
    from cradlekit.evaluate import artifact_recovery
    from cradlekit.qc import label_artifacts

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-cells", type=int, default=20_000)
    parser.add_argument("--n-genes", type=int, default=2_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    tables = []
    for seed in args.seeds:
        adata = simulate_perturbseq(n_cells=args.n_cells, n_genes=args.n_genes, seed=seed)
        label_artifacts(adata, ks=(3, 4, 5), seed=seed)
        tables.append(artifact_recovery(adata).assign(seed=seed))
    table = pd.concat(tables).reset_index()
    mean = table.drop(columns="seed").groupby("k").mean()
    sd = table.drop(columns="seed").groupby("k").std()
    write_result("qc_recovery", {
        "benchmark": "qc_recovery_on_simulator",
        "n_cells": args.n_cells,
        "n_genes": args.n_genes,
        "seeds": args.seeds,
        "per_seed": table.to_dict(orient="records"),
        "mean": mean.reset_index().to_dict(orient="records"),
    })
    cols = ["precision", "recall", "f1", "false_positive_rate"] + [c for c in mean.columns if c.startswith("recall_")]
    md = [
        "# QC recovery of injected artifacts (simulator)",
        "",
        f"{args.n_cells} cells x {args.n_genes} genes, seeds {args.seeds}; mean (sd) over seeds.",
        "Regenerate with `python benchmarks/qc_recovery.py`.",
        "",
        mean[cols].round(3).astype(str).add(" (").add(sd[cols].round(3).astype(str)).add(")").to_markdown(),
        "",
    ]
    (RESULTS / "qc_recovery.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
