"""The comparison the README's main job (``cradlekit demo``) prints: the default model beside the
conditional VAE and the mean and additive baselines, on the simulated screen, at convergence.

Each entry is one run of the experiment runner (:func:`~cradlekit.experiments.run_one.run_one`) on
the same simulated screen, split and QC labels, so the numbers are those a grid would record:
held-out ATE-ρ against the data and against the simulator's true effects, the centred ATE-ρ, and the
QC pass rate of generated artifact-free cells beside its ceiling (fresh artifact-free cells from the
true process, judged the same way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..model._options import DEFAULT_OBJECTIVE
from .config import config_from_dict
from .run_one import run_one

__all__ = ["demo_comparison", "DEMO_MODELS"]

#: (entry, label) of the demo's comparison, in display order.
DEMO_MODELS = (
    ("cradle_default", f"CRADLE-VAE, default objective ({DEFAULT_OBJECTIVE})"),
    ("cvae", "Conditional VAE"),
    ("mean", "Baseline: mean of training perturbations"),
    ("additive", "Baseline: additive (training singles)"),
)


def demo_config(out: str | Path, *, n_cells: int, n_genes: int, seed: int, max_epochs: int) -> Any:
    """The demo's experiment: the simulator, 3 MAD, one combination split, D 16, hidden 128, batch 512."""
    return config_from_dict({
        "name": "demo", "description": "cradlekit demo: default model, conditional VAE and baselines",
        "output_dir": str(Path(out) / "runs"),
        "dataset": {"name": "simulator", "label": f"simulator ({n_cells} cells x {n_genes} genes)",
                    "kwargs": {"n_cells": n_cells, "n_genes": n_genes, "seed": seed}},
        "models": [m for m, _ in DEMO_MODELS],
        "variants": {"cradle_default": {"model": "cradle", "options": {"objective": DEFAULT_OBJECTIVE}}},
        "ks": [3], "seeds": [seed],
        "qc": {"run_scrublet": True, "seed": seed},
        "split": {"kind": "combinations", "holdout_fraction": 0.25, "val_fraction": 0.2, "seed": "run"},
        "model_options": {"latent_dim": 16, "hidden_dim": 128, "num_particles": 1, "mask_prior": None},
        "train": {"max_epochs": int(max_epochs), "lr": 2e-3, "batch_size": 512, "patience": 50,
                  "accelerator": "auto", "torch_threads": 1, "model_seed": 0},
        "evaluation": {"n_model_cells": 1000, "n_qcpr_cells": 100, "run_scrublet": True},
        "save_models": True,
    })


def demo_comparison(out: str | Path, *, n_cells: int = 8000, n_genes: int = 300, seed: int = 0,
                    max_epochs: int = 2000) -> pd.DataFrame:
    """Run the demo's four entries (finished runs in ``out/runs`` are reused) and return the summary table.

    Returns
    -------
    pandas.DataFrame
        One row per entry of :data:`DEMO_MODELS`: how training ended, held-out ATE-ρ against the
        data and the truth, the centred ATE-ρ, QCPR (%) and the truth ceiling of QCPR.
    """
    from .grid import RunSpec, run_json_path
    from .run_one import read_run

    config = demo_config(out, n_cells=n_cells, n_genes=n_genes, seed=seed, max_epochs=max_epochs)
    rows = {}
    for model, label in DEMO_MODELS:
        row = read_run(run_json_path(config, RunSpec(model, 3, seed))) or run_one(config, model, 3, seed)
        trained = int(row.get("max_epochs") or 0) > 0
        rows[label] = {
            "training": (
                f"{row['epochs']} epochs, " + ("early stopping" if row.get("stopped_early") else "hit the cap")
            )
            if trained
            else "none (fitted on the training cells)",
            "held-out ATE-ρ (data)": row["heldout_ate_pearson"],
            "held-out ATE-ρ (truth)": row.get("heldout_true_ate_pearson", float("nan")),
            "held-out ATE-ρ centred": row.get("heldout_ate_pearson_centered", float("nan")),
            "QCPR generated (%)": row["qcpr"],
            "QCPR ceiling, true clean cells (%)": row.get("truth_qcpr", float("nan")),
        }
    return pd.DataFrame(rows).T
