"""The reproduction report of a grid: tables, paired comparisons, the ladder, per-combination and
per-criterion results, and the genes behind the held-out ATE-ρ.

Regenerate from the finished runs of a config (nothing is retrained)::

    python -m cradlekit.experiments.report configs/norman_paper.yaml

writes ``REPORT.md`` and the CSVs behind it into the config's ``output_dir``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import ExperimentConfig, load_config
from .grid import expand_grid, run_json_path
from .paired import paired_comparison

__all__ = ["display_order", "load_runs", "ladder_table", "ladder_steps", "per_combination", "criterion_table", "sign_genes", "write_report", "LADDER"]

#: The rungs from SAMS-VAE to CRADLE-VAE, one change each, with what the rung adds.
LADDER = (
    ("sams_vae", "SAMS-VAE (decoder input z_b + z_p)"),
    ("sams_concat", "+ concatenated decoder input [z_b, z_p]"),
    ("cradle_latent_only", "+ artifact latent [z_b, z_p, a u] (no class balancing, no J2)"),
    ("cradle_wo_cf", "+ class-balanced reconstruction (= CRADLE-VAE w/o CF)"),
    ("cradle", "+ J2, published formula and sum (= CRADLE-VAE, the paper's objective)"),
    ("cradle_exact", "J2 exact KL x alpha x 512 instead (ours)"),
)
_HEADLINE = ("heldout_ate_pearson", "all_ate_pearson", "qcpr")
#: Display order: the paper's models, then the variants in config order.
_PAPER_ORDER = ("cvae", "cpa_vae", "svae_plus", "sams_vae", "cradle", "cradle_wo_cf", "cradle_wo_causal")


def display_order(config: ExperimentConfig, present: Sequence[str]) -> list[str]:
    """``present`` models in the paper's order, then the config's variants."""
    order = [m for m in _PAPER_ORDER if m in config.models] + [m for m in config.models if m not in _PAPER_ORDER]
    return [m for m in order if m in set(present)]
_HB = ("HBA1", "HBA2", "HBB", "HBD", "HBE1", "HBG1", "HBG2", "HBM", "HBQ1", "HBZ")


def load_runs(config: ExperimentConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The result rows and full JSON records of the config's finished runs (missing runs skipped)."""
    rows, records = [], []
    for spec in expand_grid(config):
        path = run_json_path(config, spec)
        if path.exists():
            record = json.loads(path.read_text())
            rows.append(record["row"])
            records.append(record)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.apply(lambda c: pd.to_numeric(c) if c.name not in ("dataset", "model", "split", "device", "run",
                                                                       "config_hash", "objective", "qcpr_doublets") else c)
    return frame, records


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–"
    sd = v.std(ddof=1) if v.size > 1 else float("nan")
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f} ({v.size})" if not math.isnan(sd) else f"{v.mean():.{digits}f} (1)"


def summary_table(results: pd.DataFrame, models: Sequence[str], labels: dict[str, str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean ± sd (n splits) per model of ``columns`` (models absent from the results are left out)."""
    out = {}
    for m in models:
        sub = results[results["model"] == m]
        if not sub.empty:
            out[labels.get(m, m)] = {c: _mean_sd(sub[c], 2 if c.startswith(("qcpr", "data_qcpr")) else 3) for c in columns}
    return pd.DataFrame(out).T


def ladder_table(results: pd.DataFrame) -> pd.DataFrame:
    """Held-out and all ATE-ρ, QCPR, KL(z_b) and J2 share per rung of :data:`LADDER`."""
    cols = ["heldout_ate_pearson", "all_ate_pearson", "qcpr", "kl_z_b", "j2_share"]
    return summary_table(results, [m for m, _ in LADDER], dict(LADDER), cols)


def ladder_steps(results: pd.DataFrame, *, k: float | None = None) -> pd.DataFrame:
    """Each rung of :data:`LADDER` minus the rung before it, paired over splits (what one change does)."""
    present = [m for m, _ in LADDER if m in set(results["model"])]
    frames = []
    for prev, rung in zip(present, present[1:]):
        pc = paired_comparison(results, rung, [prev], _HEADLINE, k=k)
        pc.insert(0, "step", dict(LADDER)[rung])
        frames.append(pc)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_combination(records: list[dict[str, Any]], models: Sequence[str], metric: str = "ate_pearson") -> pd.DataFrame:
    """Held-out ``metric`` of each combination on its own: mean over the splits that held it out (n)."""
    values: dict[tuple[str, str], list[float]] = {}
    for rec in records:
        model = rec["row"]["model"]
        if model in models:
            for combo, scores in rec.get("heldout_per_perturbation", {}).items():
                if scores.get(metric) is not None:
                    values.setdefault((combo, model), []).append(float(scores[metric]))
    table = pd.DataFrame(index=sorted({c for c, _ in values}), columns=list(models), dtype=object)
    for (combo, model), v in values.items():
        table.loc[combo, model] = f"{np.mean(v):.2f} ({len(v)})"
    return table.fillna("–")


def criterion_table(results: pd.DataFrame, models: Sequence[str], labels: dict[str, str]) -> pd.DataFrame:
    """QCPR per criterion (generated cells) per model, and the data's QC-passed cells on the same basis."""
    criteria = ["total_counts", "n_genes", "mito", "ribo", "hb", "doublet"]
    table = summary_table(results, models, labels, [f"qcpr_{c}" for c in criteria] + ["qcpr"])
    data = {f"qcpr_{c}": _mean_sd(results[f"data_qcpr_{c}"], 2) for c in criteria if f"data_qcpr_{c}" in results}
    data["qcpr"] = _mean_sd(results["data_qcpr"], 2) if "data_qcpr" in results else "–"
    table.loc["data: QC-passed cells, same thresholds and genes"] = data
    return table.rename(columns=lambda c: c.removeprefix("qcpr_"))


def sign_genes(records: list[dict[str, Any]], model: str, *, top: int = 12) -> tuple[pd.DataFrame, float]:
    """Genes that pull ``model``'s held-out ATE-ρ down, pooled over held-out (combination, split).

    Each gene's contribution to Pearson's r of one perturbation is
    ``(m_g - mean m)(d_g - mean d) / (G sd_m sd_d)`` (they sum to r). Returns the ``top`` genes
    with the most negative mean contribution (mean over held-out perturbation × split, and how
    often the model's ATE has the opposite sign to the data's), and the share of all negative
    contribution that hemoglobin genes carry.
    """
    contrib: dict[str, list[float]] = {}
    opposite: dict[str, list[bool]] = {}
    for rec in records:
        if rec["row"]["model"] != model or not rec.get("heldout_ate"):
            continue
        ate = rec["heldout_ate"]
        genes = ate["genes"]
        for combo, pair in ate.items():
            if combo == "genes":
                continue
            m, d = np.asarray(pair["model"], float), np.asarray(pair["data"], float)
            sm, sd = m.std(), d.std()
            if sm == 0 or sd == 0:
                continue
            c = (m - m.mean()) * (d - d.mean()) / (m.size * sm * sd)
            for g, cg, mg, dg in zip(genes, c, m, d):
                contrib.setdefault(g, []).append(float(cg))
                opposite.setdefault(g, []).append(bool(np.sign(mg) != np.sign(dg)))
    if not contrib:
        return pd.DataFrame(), float("nan")
    mean = pd.Series({g: np.mean(v) for g, v in contrib.items()})
    negative = mean[mean < 0]
    hb_share = float(negative[negative.index.isin(_HB)].sum() / negative.sum()) if negative.sum() else float("nan")
    worst = mean.sort_values().head(top)
    table = pd.DataFrame({
        "mean contribution to r": worst.round(4),
        "opposite sign (%)": [round(100 * np.mean(opposite[g]), 1) for g in worst.index],
        "hemoglobin": ["yes" if g in _HB else "" for g in worst.index],
    })
    table.index.name = "gene"
    return table, hb_share


def write_report(config: ExperimentConfig, out: str | Path | None = None) -> Path:
    """Write ``REPORT.md`` (and ``paired.csv``) for the config's finished runs; returns the report path."""
    from .tables import MODEL_NAMES

    out = Path(out) if out is not None else config.output_path
    out.mkdir(parents=True, exist_ok=True)
    results, records = load_runs(config)
    if results.empty:
        raise FileNotFoundError(f"no finished runs of {config.name!r} in {config.output_path}")
    labels = {**MODEL_NAMES, **{m: config.model_label(m) for m in config.variants}}
    ks = sorted(results["k"].unique())
    lines = [f"# {config.name}: reproduction report", "",
             f"{config.description}. {len(results)} finished runs of {len(expand_grid(config))}; "
             f"seeds (= split seeds) {sorted(int(v) for v in results['seed'].unique())}; k {[float(v) for v in ks]}. "
             f"Regenerate: `python -m cradlekit.experiments.report <config>`.", "",
             "Cells are mean ± sd (number of splits). \"All\" = every perturbation with training cells "
             f"(n = {int(results['all_n_perturbations'].median())}, the same for every model); held-out = the unseen "
             f"combinations of each split (n = {int(results['heldout_n_perturbations'].median())} per split).", ""]
    paired_frames = []
    for k in ks:
        at_k = results[results["k"] == k]
        present = display_order(config, at_k["model"].unique())
        lines += [f"## k = {k:g}: every model", "", _md(summary_table(at_k, present, labels, [*_HEADLINE, "heldout_ate_r2", "heldout_jaccard", "all_ate_r2", "all_jaccard"])), ""]
        baselines = [m for m in ("cvae", "cpa_vae", "svae_plus", "sams_vae", "cradle_wo_cf", "cradle_wo_causal") if m in present]
        for ref in ("cradle", "cradle_exact"):
            if ref in present:
                pc = paired_comparison(at_k, ref, [b for b in baselines + ["cradle", "cradle_exact"] if b != ref and b in present], _HEADLINE, k=k)
                pc.insert(0, "k", k)
                paired_frames.append(pc)
                lines += [f"### Paired over splits: {labels.get(ref, ref)} minus each model (k = {k:g})", "", _md(_fmt_paired(pc, labels)), ""]
        if "sams_concat" in present or "cradle_latent_only" in present:
            lines += [f"### Ladder from SAMS-VAE to CRADLE-VAE (k = {k:g}), one change per rung", "", _md(ladder_table(at_k)), ""]
            steps = ladder_steps(at_k, k=k)
            if len(steps):
                view = _fmt_paired(steps, labels).reset_index(drop=True)
                view.insert(0, "step", steps["step"].to_numpy())
                lines += ["Each rung minus the rung before it, paired over splits:", "", _md(view.set_index("step")), ""]
        lines += [f"### QC pass rate by criterion (k = {k:g}, %)", "", _md(criterion_table(at_k, present, labels)), ""]
        lines += [f"### Held-out ATE-ρ of each combination (k = {k:g}; mean over the splits that held it out, n)", "",
                  _md(per_combination([r for r in records if float(r['row']['k']) == k], present).rename(columns=labels)), ""]
        for model in ("cradle", "sams_vae"):
            if model in present:
                table, hb = sign_genes([r for r in records if float(r["row"]["k"]) == k], model)
                lines += [f"### Genes pulling {labels.get(model, model)}'s held-out ATE-ρ down (k = {k:g})", "",
                          f"Hemoglobin genes carry {100 * hb:.1f} % of all negative contribution.", "", _md(table), ""]
    if paired_frames:
        pd.concat(paired_frames).to_csv(out / "paired.csv", index=False)
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def _fmt_paired(pc: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    table = pd.DataFrame({
        "model": pc["other"].map(lambda m: labels.get(m, m)), "metric": pc["metric"], "n": pc["n"],
        "difference": pc["mean_diff"].map(lambda v: "–" if pd.isna(v) else f"{v:+.3f}"),
        "95 % bootstrap CI": ["–" if pd.isna(a) else f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(pc["ci_low"], pc["ci_high"])],
        "wins": pc["wins"].astype(str) + "/" + pc["n"].astype(str),
        "Wilcoxon p": pc["wilcoxon_p"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}"),
    })
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
