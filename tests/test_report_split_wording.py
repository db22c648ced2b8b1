"""The report of a grid is worded for its split kind (unseen combinations for a combination split,
the held-out test cells of seen perturbations for a cell split) and its paired tables hold every
trained model, variants whose objective is ``null`` included (issue 21, item 7).

The runs are written as finished run records (nothing trains), so the test takes a second.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cradlekit.experiments import config_from_dict
from cradlekit.experiments.grid import expand_grid, run_json_path
from cradlekit.experiments.report import write_report

MODELS = ["mean", "additive", "cvae", "cradle", "cradle_latent_only", "sams_concat"]
VARIANTS = {
    "cradle_latent_only": {"model": "cradle_wo_cf", "options": {"objective": None},
                           "label": "ladder 2: + artifact latent"},
    "sams_concat": {"model": "sams_vae", "options": {"decoder_input": "concat"}, "label": "ladder 1: concat"},
}
CRITERIA = ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet")


def _config(tmp_path, kind: str):
    split = ({"kind": "combinations", "holdout_fraction": 0.25, "seed": "run"} if kind == "combinations"
             else {"kind": "cells", "seed": "run"})
    return config_from_dict({
        "name": f"wording_{kind}", "output_dir": str(tmp_path / kind), "description": f"{kind} split wording",
        "dataset": {"name": "simulator", "kwargs": {"n_cells": 600, "n_genes": 50, "seed": 0}},
        "models": MODELS, "variants": VARIANTS, "ks": [3], "seeds": [0, 1, 2],
        "split": split, "model_options": {"latent_dim": 4, "hidden_dim": 16, "num_particles": 1},
    })


def _row(config, model: str, seed: int, kind: str) -> dict:
    rng = np.random.default_rng([seed, *map(ord, model)])
    baseline = config.is_baseline(model)
    objective = {"cradle": "unweighted"}.get(model)  # cvae, the ladder variants and baselines: null
    row = {"dataset": "simulator", "model": model, "k": 3, "seed": seed, "split": f"{kind} seed={seed}",
           "objective": objective, "j2_share": float("nan"), "kl_z_b": float("nan"),
           "heldout_n_perturbations": 4 if kind == "combinations" else 12, "heldout_n_excluded": 0,
           "all_n_perturbations": 12, "all_n_excluded": 0, "qcpr_doublets": "none",
           "epochs": 0 if baseline else 30, "best_epoch": 0 if baseline else 25,
           "max_epochs": 0 if baseline else 100, "stopped_early": not baseline, "converged": True,
           "train_seconds": 1.0, "train_cpu_seconds": 1.0, "config_hash": "0" * 16,
           "run": f"{model}_k3_s{seed}"}
    for metric in ("heldout_ate_pearson", "heldout_ate_pearson_centered", "all_ate_pearson", "heldout_ate_r2",
                   "heldout_jaccard", "all_ate_pearson_centered", "heldout_target_sign"):
        row[metric] = float(rng.uniform(0.2, 0.8))
    for c in ("qcpr", *(f"qcpr_{c}" for c in CRITERIA), "data_qcpr", *(f"data_qcpr_{c}" for c in CRITERIA)):
        row[c] = float("nan") if baseline and not c.startswith("data") else float(rng.uniform(90, 100))
    return row


def _write_runs(config, kind: str) -> None:
    perturbations = ["A+B", "C+D"] if kind == "combinations" else ["A", "B"]
    for spec in expand_grid(config):
        path = run_json_path(config, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"row": _row(config, spec.model, spec.seed, kind),
                  "heldout_per_perturbation": {p: {"ate_pearson": 0.5} for p in perturbations}}
        path.write_text(json.dumps(record))


@pytest.mark.parametrize("kind", ["combinations", "cells"])
def test_report_wording_follows_the_split_and_paired_tables_hold_every_variant(tmp_path, kind):
    config = _config(tmp_path, kind)
    _write_runs(config, kind)
    report = write_report(config).read_text()
    if kind == "combinations":
        assert "unseen combinations" in report and "each combination" in report
    else:
        assert "combination" not in report.lower()
        assert "held-out test cells" in report and "each perturbation" in report
    trained = ["Conditional VAE", "CRADLE-VAE", "ladder 2: + artifact latent", "ladder 1: concat"]
    sections = report.split("\n### ")
    against_mean = next(s for s in sections if s.startswith("Each trained model minus Baseline: mean"))
    against_cradle = next(s for s in sections if s.startswith("CRADLE-VAE minus each model"))
    for label in trained:
        assert f"| {label} " in against_mean, label
    for label in trained[:1] + trained[2:]:
        assert f"| {label} " in against_cradle, label
    paired = pd.read_csv(config.output_path / "paired.csv")
    assert {"cradle_latent_only", "sams_concat", "cvae"} <= set(paired["other"]) | set(paired["reference"])
    assert paired[paired["reference"] == "cradle_latent_only"]["n"].eq(3).all()
