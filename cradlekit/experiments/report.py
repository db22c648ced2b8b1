"""The report of a grid: verdicts against the baselines, tables, paired comparisons, convergence,
the ladder, per-combination and per-criterion results, and the genes behind the held-out ATE-ρ.

Regenerate from the finished runs of a config (nothing is retrained)::

    python -m cradlekit.experiments.report configs/norman_paper.yaml

writes ``REPORT.md`` and ``paired.csv`` (every paired comparison behind it) into the config's
``output_dir``. Only runs that early stopping ended (``converged``) enter a mean, a paired test or
a verdict; the convergence table lists the others. The wording follows the grid's split: unseen
combinations for a combination split, the test cells of every perturbation for a cell split.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .._atomic import write_text_atomic
from .config import ExperimentConfig, load_config
from .grid import expand_grid
from .paired import paired_comparison
from .report_tables import (
    BASELINES_FOR_VERDICTS,
    HEADLINE,
    LADDER,
    convergence_table,
    criterion_table,
    display_order,
    ladder_steps,
    ladder_table,
    load_runs,
    per_combination,
    sign_genes,
    summary_table,
)
from .tables import BASELINE_MODELS, MODEL_NAMES, converged_runs
from .verdicts import VERDICT_METRICS, against_baselines, verdict_lines

__all__ = ["display_order", "load_runs", "ladder_table", "ladder_steps", "per_combination", "criterion_table",
           "sign_genes", "summary_table", "convergence_table", "write_report", "LADDER"]

_SUMMARY = (*HEADLINE, "truth_qcpr", "heldout_true_ate_pearson", "heldout_ate_r2", "heldout_jaccard",
            "all_ate_pearson_centered", "heldout_target_sign", "kl_z_b", "j2_share")
_REFERENCES = ("cradle", "cradle_exact")


def write_report(config: ExperimentConfig, out: str | Path | None = None) -> Path:
    """Write ``REPORT.md`` (and ``paired.csv``) for the config's finished runs; returns the report path.

    Raises
    ------
    FileNotFoundError
        No finished run of the config in its output folder.
    """
    out = Path(out) if out is not None else config.output_path
    out.mkdir(parents=True, exist_ok=True)
    results, records = load_runs(config)
    if results.empty:
        raise FileNotFoundError(f"no finished runs of {config.name!r} in {config.output_path}")
    labels = {**MODEL_NAMES, **{m: config.model_label(m) for m in config.variants}}
    ks = sorted(results["k"].unique())
    converged, capped = converged_runs(results)
    lines = _preamble(config, results, ks, int(capped.sum()) if len(capped) else 0)
    paired_frames = []
    for k in ks:
        at_k = results[results["k"] == k]
        ok_k = converged[converged["k"] == k]
        present = display_order(config, at_k["model"].unique())
        trained = [m for m in present if not config.is_baseline(m)]
        baselines = [m for m in BASELINES_FOR_VERDICTS if m in present]
        lines += [
            f"## k = {k:g}",
            "",
            "### Verdicts against the baselines (converged runs)",
            "",
            *(
                verdict_lines(at_k, trained, baselines, labels, k=k)
                or [f"(this grid has {'no baseline' if not baselines else 'no converged trained model'})"]
            ),
            "",
            "### Every model and baseline",
            "",
            _md(summary_table(ok_k, present, labels, _SUMMARY, readable=True)),
            "",
            "### Convergence and time",
            "",
            _md(convergence_table(at_k, present, labels)),
            "",
        ]
        vs = against_baselines(at_k, trained, baselines, list(VERDICT_METRICS), k=k)
        if len(vs):
            vs.insert(0, "k", k)
            paired_frames.append(vs)
            for base in baselines:
                part = vs[vs["other"] == base]
                view = _fmt_paired(part.assign(other=part["reference"]), labels)
                lines += [
                    f"### Each trained model minus {labels.get(base, base)}, paired over splits",
                    "",
                    _md(view),
                    "",
                ]
        lines += _cradle_sections(config, at_k, ok_k, records, present, labels, k, paired_frames)
    if paired_frames:
        pd.concat(paired_frames).to_csv(out / "paired.csv", index=False)
    path = out / "REPORT.md"
    write_text_atomic(path, "\n".join(lines))
    return path


def _preamble(config: ExperimentConfig, results: pd.DataFrame, ks: list, n_capped: int) -> list[str]:
    combos = config.split.kind == "combinations"
    held = (
        "the unseen combinations of each split" if combos else "every perturbation, scored on its held-out test cells"
    )
    lines = [f"# {config.name}: report", "",
             f"{config.description}. {len(results)} finished runs of {len(expand_grid(config))}; "
             f"seeds (= split seeds) {sorted(int(v) for v in results['seed'].unique())}; k {[float(v) for v in ks]}. "
             "Regenerate: `python -m cradlekit.experiments.report <config>`.", "",
             "Cells are mean ± sd (number of splits). Held-out = " + held
             + f" (n = {int(results['heldout_n_perturbations'].median())} per split); \"all\" = every perturbation "
             f"with training cells (n = {int(results['all_n_perturbations'].median())}, the same for every model). "
             "Baselines (no change, mean, additive, linear; `cradlekit.baselines`) are fitted on the same training "
             "cells and generate no cells (no QCPR). *Centred* ATE-ρ is ATE-ρ around the mean training effect, "
             "which the mean baseline cannot win.", ""]
    if n_capped:
        lines += [
            f"**{n_capped} run(s) hit their epoch cap before early stopping ended them; they are left out of every "
            "mean, paired test and verdict below** (see the convergence tables).",
            "",
        ]
    else:
        lines += ["Every trained run was ended by early stopping before its epoch cap.", ""]
    return lines


def _cradle_sections(config, at_k, ok_k, records, present, labels, k, paired_frames) -> list[str]:
    """CRADLE-VAE against the other models, the ladder, QCPR by criterion, per combination, sign genes."""
    lines: list[str] = []
    others = [m for m in present if m not in BASELINE_MODELS and m in set(ok_k["model"])]
    for ref in _REFERENCES:
        if ref in others and len(others) > 1:
            pc = paired_comparison(ok_k, ref, [m for m in others if m != ref], HEADLINE, k=k)
            pc.insert(0, "k", k)
            paired_frames.append(pc)
            lines += [
                f"### {labels.get(ref, ref)} minus each model, paired over splits",
                "",
                _md(_fmt_paired(pc, labels)),
                "",
            ]
    if "sams_concat" in present or "cradle_latent_only" in present:
        lines += ["### Ladder from SAMS-VAE to CRADLE-VAE, one change per rung", "", _md(ladder_table(ok_k)), ""]
        steps = ladder_steps(ok_k, k=k)
        if len(steps):
            view = _fmt_paired(steps, labels).reset_index(drop=True)
            view.insert(0, "step", steps["step"].to_numpy())
            lines += ["Each rung minus the rung before it, paired over splits:", "", _md(view.set_index("step")), ""]
    models = [m for m in present if not config.is_baseline(m)]
    lines += ["### QC pass rate by criterion (%)", "", _md(criterion_table(ok_k, models, labels)), ""]
    cell_eval = [c for c in ok_k.columns if c.startswith("celleval_")]
    if cell_eval:
        lines += [
            "### cell-eval metrics on the held-out perturbations (package `cell-eval`)",
            "",
            _md(summary_table(ok_k, present, labels, cell_eval).rename(columns=lambda c: c.removeprefix("celleval_"))),
            "",
        ]
    keep = set(ok_k["run"]) if "run" in ok_k else None
    recs = [r for r in records if float(r["row"]["k"]) == k and (keep is None or r["row"].get("run") in keep)]
    unit = "combination" if config.split.kind == "combinations" else "perturbation"
    lines += [f"### Held-out ATE-ρ of each {unit} (mean over the splits that held it out, n)", "",
              _md(per_combination(recs, present).rename(columns=labels)), ""]
    for model in ("cradle", "sams_vae"):
        if model in present:
            table, hb = sign_genes(recs, model)
            lines += [f"### Genes pulling {labels.get(model, model)}'s held-out ATE-ρ down", "",
                      f"Hemoglobin genes carry {100 * hb:.1f} % of all negative contribution.", "", _md(table), ""]
    return lines


def _fmt_paired(pc: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "model": pc["other"].map(lambda m: labels.get(m, m)),
            "metric": pc["metric"],
            "n": pc["n"],
            "difference": pc["mean_diff"].map(lambda v: "–" if pd.isna(v) else f"{v:+.3f}"),
            "95 % bootstrap CI": [
                "–" if pd.isna(a) else f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(pc["ci_low"], pc["ci_high"], strict=True)
            ],
            "wins": pc["wins"].astype(str) + "/" + pc["n"].astype(str),
            "Wilcoxon p": pc["wilcoxon_p"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
        }
    )
    return table.set_index("model")


def _md(frame: pd.DataFrame) -> str:
    return frame.to_markdown() if not frame.empty else "(no runs)"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cradlekit.experiments.report CONFIG [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m cradlekit.experiments.report", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--out", default=None, help="folder of the finished runs (default: the config's output_dir)")
    args = parser.parse_args(argv)
    config = load_config(args.config, **({"output_dir": args.out} if args.out else {}))
    print(write_report(config))  # noqa: T201 - the command's output is the report path
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
