"""QC, combination split and counterfactual references on the real Norman 2019 subset.

Usage::

    python benchmarks/norman_subset_report.py [--seed 0]

Needs ``../shared/data`` (or ``CRADLEKIT_SHARED_DATA``). Writes
``benchmarks/results/norman_subset.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402


def main() -> None:
    from cradlekit import data, qc

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    adata = data.load_dataset("norman_subset")
    qc.label_artifacts(adata, seed=args.seed)
    data.split_combinations(adata, holdout_fraction=0.25, seed=args.seed)
    data.counterfactual_references(adata, artifact_key="artifact_k3", seed=args.seed)

    labels = adata.obs["perturbation"].astype(str)
    combos = sorted(set(labels[data.is_combination(labels)]))
    held_out = [str(c) for c in adata.uns["split"]["heldout"]]
    qc_table = qc.qc_summary(adata)
    splits = {k: data.split_summary(adata, artifact_key=f"artifact_k{k}") for k in (3, 4, 5)}
    has_ref = adata.obs["cf_has_reference"].to_numpy()
    passed = adata.obs["artifact_k3"].to_numpy() == 0

    write_result("norman_subset", {
        "dataset": "norman_subset (Norman 2019 part)",
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "n_combinations": len(combos),
        "held_out": held_out,
        "qc_summary": qc_table.reset_index().to_dict(orient="records"),
        "splits": {k: v.reset_index().to_dict(orient="records") for k, v in splits.items()},
        "passed_with_reference_k3": int(has_ref.sum()),
        "passed_without_reference_k3": int((passed & ~has_ref).sum()),
    })
    md = [
        "# Norman 2019 subset: QC, split, counterfactual references",
        "",
        f"{adata.n_obs} cells x {adata.n_vars} genes (real data from `../shared/data`), seed {args.seed}.",
        "Regenerate with `python benchmarks/norman_subset_report.py`.",
        "Per-cell total counts and genes come from the full transcriptome (`obs['ncounts']`, `obs['ngenes']`);",
        "the 500-gene panel has no MT-/RPS/RPL genes, so those two criteria are skipped.",
        "",
        "## QC",
        "",
        qc_table.to_markdown(floatfmt=".1f"),
        "",
        f"## Split: {len(combos)} combinations, {len(held_out)} held out (ceil of 25 %)",
        "",
        "Held out: " + ", ".join(held_out),
        "",
    ]
    for k, table in splits.items():
        md += [f"### Cells per split, QC at k = {k}", "", table.to_markdown(floatfmt=".3f"), ""]
    md += [
        "## Counterfactual references (k = 3)",
        "",
        f"{int(has_ref.sum())} QC-passed cells have a reference; "
        f"{int((passed & ~has_ref).sum())} QC-passed cells have none (no failed cell of their "
        "perturbation in their split) and are masked out of J2.",
        "",
    ]
    (RESULTS / "norman_subset.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
