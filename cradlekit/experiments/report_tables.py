"""The tables of a grid's report, each from the finished runs (see :mod:`.report`).

Every function takes the results frame (one row per run, :func:`load_runs`) and returns a
DataFrame of display strings: mean ± sd (number of splits) per model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import ExperimentConfig
from .grid import expand_grid, run_json_path
from .paired import paired_comparison

__all__ = ["display_order", "load_runs", "summary_table", "ladder_table", "ladder_steps", "per_combination",
           "criterion_table", "sign_genes", "convergence_table", "LADDER", "BASELINES_FOR_VERDICTS"]

#: The rungs from SAMS-VAE to CRADLE-VAE, one change each, with what the rung adds.
LADDER = (
    ("sams_vae", "SAMS-VAE (decoder input z_b + z_p)"),
    ("sams_concat", "+ concatenated decoder input [z_b, z_p]"),
    ("cradle_latent_only", "+ artifact latent [z_b, z_p, a u] (no class balancing, no J2)"),
    ("cradle_wo_cf", "+ class-balanced reconstruction (= CRADLE-VAE w/o CF)"),
    ("cradle", "+ J2, published formula and sum (= CRADLE-VAE, the paper's objective)"),
    ("cradle_exact", "J2 exact KL x alpha x 512 instead (ours)"),
)
HEADLINE = ("heldout_ate_pearson", "heldout_ate_pearson_centered", "all_ate_pearson", "qcpr")
#: The simple baselines every model is compared with, strongest last.
BASELINES_FOR_VERDICTS = ("mean", "additive", "linear")
#: Display order: the baselines, the paper's models, then the variants in config order.
_PAPER_ORDER = ("no_change", "mean", "additive", "linear", "cvae", "cpa_vae", "svae_plus", "sams_vae", "cradle",
                "cradle_wo_cf", "cradle_wo_causal")
_TEXT_COLUMNS = ("dataset", "model", "split", "device", "run", "config_hash", "objective", "qcpr_doublets")
_HB = ("HBA1", "HBA2", "HBB", "HBD", "HBE1", "HBG1", "HBG2", "HBM", "HBQ1", "HBZ")


def display_order(config: ExperimentConfig, present: Sequence[str]) -> list[str]:
    """``present`` models: the baselines, the paper's models in its order, then the config's variants."""
    order = [m for m in _PAPER_ORDER if m in config.models] + [m for m in config.models if m not in _PAPER_ORDER]
    return [m for m in order if m in set(present)]


def load_runs(config: ExperimentConfig) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The result rows and full JSON records of the config's finished runs (missing runs skipped)."""
    rows, records = [], []
    for spec in expand_grid(config):
        path = run_json_path(config, spec)
        if path.exists():
            record = json.loads(path.read_text())
            row = dict(record["row"])
            if "best_val_loss" not in row and record.get("train_info", {}).get("best_loss") is not None:
                row["best_val_loss"] = record["train_info"]["best_loss"]  # runs written before the column
            rows.append(row)
            records.append(record)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.apply(lambda c: c if c.name in _TEXT_COLUMNS else pd.to_numeric(c, errors="coerce"))
    return frame, records


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return "–"
    sd = v.std(ddof=1) if v.size > 1 else float("nan")
    return f"{v.mean():.{digits}f} ± {sd:.{digits}f} ({v.size})" if not math.isnan(sd) else f"{v.mean():.{digits}f} (1)"


#: Readable names of result columns in report tables.
COLUMN_LABELS = {
    "heldout_ate_pearson": "held-out ATE-ρ", "heldout_ate_pearson_centered": "held-out ATE-ρ centred",
    "heldout_ate_r2": "held-out ATE-R²", "heldout_jaccard": "held-out Jaccard", "all_ate_pearson": "all ATE-ρ",
    "all_ate_pearson_centered": "all ATE-ρ centred", "all_ate_r2": "all ATE-R²", "all_jaccard": "all Jaccard",
    "heldout_true_ate_pearson": "held-out ATE-ρ vs truth", "all_true_ate_pearson": "all ATE-ρ vs truth",
    "heldout_target_sign": "target-gene sign agrees", "qcpr": "QCPR (%)", "truth_qcpr": "QCPR of true clean cells (%)",
    "kl_z_b": "KL(z_b) per cell", "j2_share": "J2 share of the loss",
}


def summary_table(
    results: pd.DataFrame,
    models: Sequence[str],
    labels: dict[str, str],
    columns: Sequence[str],
    *,
    readable: bool = False,
) -> pd.DataFrame:
    """Mean ± sd (n splits) per model of ``columns`` (models absent from the results are left out).

    ``readable``: leave out columns the results do not have, and name the others with
    :data:`COLUMN_LABELS`.
    """
    if readable:
        columns = [c for c in columns if c in results]
    out = {}
    for m in models:
        sub = results[results["model"] == m]
        if not sub.empty:
            out[labels.get(m, m)] = {c: _mean_sd(sub[c], 2 if c.startswith(("qcpr", "data_qcpr", "truth_qcpr")) else 3)
                                     for c in columns}
    table = pd.DataFrame(out).T
    return table.rename(columns=COLUMN_LABELS) if readable else table


def ladder_table(results: pd.DataFrame) -> pd.DataFrame:
    """Held-out and all ATE-ρ, QCPR, KL(z_b) and J2 share per rung of :data:`LADDER`."""
    cols = ["heldout_ate_pearson", "all_ate_pearson", "qcpr", "kl_z_b", "j2_share"]
    return summary_table(results, [m for m, _ in LADDER], dict(LADDER), cols)


def ladder_steps(results: pd.DataFrame, *, k: float | None = None) -> pd.DataFrame:
    """Each rung of :data:`LADDER` minus the rung before it, paired over splits (what one change does)."""
    present = [m for m, _ in LADDER if m in set(results["model"])]
    frames = []
    for prev, rung in zip(present, present[1:], strict=False):
        pc = paired_comparison(results, rung, [prev], HEADLINE, k=k)
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
            for g, cg, mg, dg in zip(genes, c, m, d, strict=False):
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


def convergence_table(results: pd.DataFrame, models: Sequence[str], labels: dict[str, str]) -> pd.DataFrame:
    """Per model: runs, how many early stopping ended (the rest hit their cap), epochs, best epoch, time.

    ``wall s`` is the training wall time of a run; ``CPU s`` the CPU time of its process (the
    number to compare when other jobs shared the machine).
    """
    out = {}
    for m in models:
        sub = results[results["model"] == m]
        if sub.empty:
            continue
        trained = "stopped_early" in sub and float(pd.to_numeric(sub.get("max_epochs", 0), errors="coerce").max()) > 0
        stopped = (
            pd.to_numeric(sub["stopped_early"], errors="coerce").fillna(0).astype(bool)
            if "stopped_early" in sub
            else None
        )
        row = {"runs": str(len(sub))}
        if trained and stopped is not None:
            row.update({
                "stopped early": f"{int(stopped.sum())}/{len(sub)}",
                "epochs (median, range)": _median_range(sub["epochs"]),
                "best epoch (median, range)": _median_range(sub["best_epoch"]),
                "epoch cap": str(int(pd.to_numeric(sub["max_epochs"]).max())),
                "best validation loss (mean)": (f"{pd.to_numeric(sub['best_val_loss']).mean():.2f}"
                                                if "best_val_loss" in sub else "–"),
                "train wall s (median)": f"{pd.to_numeric(sub['train_seconds']).median():.0f}",
                "train CPU s (median)": (f"{pd.to_numeric(sub['train_cpu_seconds']).median():.0f}"
                                         if "train_cpu_seconds" in sub else "–"),
            })
        else:
            row.update(
                {
                    "stopped early": "not trained",
                    "epochs (median, range)": "–",
                    "best epoch (median, range)": "–",
                    "epoch cap": "–",
                    "best validation loss (mean)": "–",
                    "train wall s (median)": f"{pd.to_numeric(sub['train_seconds']).median():.1f}",
                    "train CPU s (median)": "–",
                }
            )
        out[labels.get(m, m)] = row
    return pd.DataFrame(out).T


def _median_range(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return "–" if v.empty else f"{v.median():.0f} ({v.min():.0f}-{v.max():.0f})"
