"""Convergence as protocol: a run that hit its epoch cap is marked and left out of tables, tests and
verdicts; baselines run in a grid beside the models with rows in the same layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cradlekit.baselines import mean_baseline
from cradlekit.experiments import config_from_dict, run_grid, write_tables
from cradlekit.experiments.prepare import prepare_data, read_prepared
from cradlekit.experiments.report import write_report


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("convergence")
    config = config_from_dict({
        "name": "convergence", "output_dir": str(out), "description": "convergence protocol test",
        "dataset": {"name": "simulator", "kwargs": {"n_cells": 1200, "n_genes": 150, "n_single": 6,
                                                     "n_combinations": 6, "true_ate_cells": 40, "seed": 0}},
        "models": ["mean", "additive", "cvae", "cvae_stops"],   # cvae: the grid's 2-epoch cap
        "variants": {"cvae_stops": {"model": "cvae", "train": {"max_epochs": 300, "patience": 1}}},
        "ks": [3], "seeds": [0, 1],
        "qc": {"run_scrublet": False},
        "split": {"kind": "combinations", "holdout_fraction": 0.34, "seed": "run"},
        "model_options": {"latent_dim": 4, "hidden_dim": 16, "num_particles": 1},
        "train": {"lr": 3e-3, "batch_size": 256, "accelerator": "cpu", "max_epochs": 2, "patience": 50},
        "evaluation": {"n_model_cells": 100, "n_qcpr_cells": 10, "run_scrublet": False},
    })
    result = run_grid(config)
    return config, result.results


def test_rows_record_how_each_run_ended(grid):
    _, results = grid
    capped = results[results["model"] == "cvae"]
    stops = results[results["model"] == "cvae_stops"]
    assert (capped["epochs"] == 2).all() and not capped["stopped_early"].astype(bool).any()
    assert not capped["converged"].astype(bool).any() and (capped["max_epochs"] == 2).all()
    assert stops["stopped_early"].astype(bool).all() and stops["converged"].astype(bool).all()
    assert (stops["epochs"] < 300).all() and (stops["epochs"] == stops["best_epoch"] + 1).all()
    assert (results["train_cpu_seconds"] >= 0).all()


def test_baseline_rows_match_an_independent_mean_prediction(grid):
    config, results = grid
    for seed in (0, 1):
        adata = read_prepared(prepare_data(config, 3, seed))
        held = [str(p) for p in adata.uns["split"]["heldout"]]
        pred = mean_baseline(adata, perturbations=held)
        # the held-out data ATE, by hand: QC-passed cells of every split
        X = adata.X.toarray().astype(np.float64)
        Y = np.log2(1e4 * X / X.sum(axis=1, keepdims=True) + 1.0)
        ok = adata.obs["artifact_k3"].to_numpy() == 0
        labels = adata.obs["perturbation"].astype(str).to_numpy()
        ctrl = Y[ok & (labels == "control")].mean(axis=0)
        data = np.concatenate([Y[ok & (labels == p)].mean(axis=0) - ctrl for p in held])
        r = np.corrcoef(np.concatenate([pred[p].X.ravel() for p in held]), data)[0, 1]
        row = results[(results["model"] == "mean") & (results["seed"] == seed)].iloc[0]
        assert row["heldout_ate_pearson"] == pytest.approx(r, abs=1e-9)
        assert np.isnan(row["qcpr"]) and bool(row["converged"]) and row["epochs"] == 0


def test_tables_leave_capped_runs_out_and_say_so(grid):
    config, results = grid
    files = write_tables(results, config.output_path / "tables")
    text = files["table2_md"].read_text()
    capped_line = next(line for line in text.splitlines() if line.startswith("| Conditional VAE"))
    assert "Conditional VAE †" in capped_line and "0 (2 capped)" in capped_line and "–" in capped_line
    mean_line = next(line for line in text.splitlines() if line.startswith("| Baseline: mean"))
    assert "capped" not in mean_line and "†" not in mean_line and mean_line.rstrip(" |").endswith("2")
    assert "Baseline: additive" in text and "left out" in text


def test_report_counts_capped_runs_and_leaves_them_out_of_verdicts(grid):
    config, _ = grid
    report = write_report(config).read_text()
    assert "**2 run(s) hit their epoch cap" in report
    verdicts = report.split("### Verdicts", 1)[1].split("###", 1)[0]
    assert "Conditional VAE" not in verdicts and "cvae_stops" in verdicts
    paired = pd.read_csv(config.output_path / "paired.csv")
    assert "cvae" not in set(paired["reference"]) | set(paired["other"])
    assert {"cvae_stops"} <= set(paired["reference"]) and {"mean", "additive"} <= set(paired["other"])
