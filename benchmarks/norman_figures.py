"""Figures 3 and 4 of the paper on the real Norman 2019 subset, with the CPU budget of
``configs/norman_subset.yaml`` (k = 3, seed 0).

Usage::

    python benchmarks/norman_figures.py [--out results/norman_subset]

Trains CRADLE-VAE, the conditional VAE and SAMS-VAE (as in the paper's Figure 4), then writes
``figure3_<perturbation>.png`` (QC violins, data vs CRADLE-VAE, for the perturbation with the
lowest data QC pass rate) and ``figure4.png`` (t-SNE of generated cells by artifact and pathway).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cradlekit import data, pl, qc
from cradlekit.model import PerturbationModel

BUDGET = dict(latent_dim=32, hidden_dim=128, num_particles=1)
TRAIN = dict(max_epochs=100, lr=2e-3, batch_size=256, patience=20, seed=0, accelerator="cpu", progress_bar=False)
MODELS = {"CRADLE-VAE": "cradle", "Conditional VAE": "cvae", "SAMS-VAE": "sams_vae"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/norman_subset")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    adata = data.load_dataset("norman_subset")
    qc.label_artifacts(adata, seed=0)
    data.split_combinations(adata, seed=0)
    data.counterfactual_references(adata, artifact_key="artifact_k3", seed=0)

    models = {}
    for title, name in MODELS.items():
        model = PerturbationModel(adata, model=name, **BUDGET)
        model.train(**TRAIN)
        models[title] = model

    # Figure 3: the perturbation whose data cells pass QC least often
    labels = adata.obs["perturbation"].astype(str)
    pass_rate = (adata.obs["artifact_k3"] == 0).groupby(labels).mean().drop("control")
    worst = str(pass_rate.idxmin())
    # generated at the data's median library size on the modelled genes, so counts are comparable
    library = float(np.median(np.asarray(adata.X.sum(1)).ravel()))
    generated = models["CRADLE-VAE"].generate(["control", worst], n=300, seed=0, library_size=library)
    fig3 = pl.qc_violins(adata, generated, perturbation=worst, k=3, labels=("data", "CRADLE-VAE"))
    fig3.savefig(out / f"figure3_{worst.replace('+', '_')}.png", dpi=120, bbox_inches="tight")

    # Figure 4: generated cells of every trainable perturbation, artifact off (and on for CRADLE-VAE)
    perts = [p for p in sorted(set(labels)) if p != "control"
             and set(p.split("+")) <= set(models["CRADLE-VAE"].registry["targets"])]
    panels = {}
    for title, model in models.items():
        cells = model.generate(perts, n=40, seed=0)
        if model.module.has_artifact:
            import anndata as ad

            cells = ad.concat([cells, model.generate(perts, n=40, seed=1, artifact=True)], merge="same")
            cells.obs_names_make_unique()
        panels[title] = cells
    fig4 = pl.generated_tsne(panels, groups="norman", seed=0)
    fig4.savefig(out / "figure4.png", dpi=110, bbox_inches="tight")
    print(f"figure 3 perturbation: {worst} (data QC pass rate {pass_rate[worst]:.2f}); "
          f"figure 4: {len(perts)} perturbations, models {list(models)}; written to {out}")



if __name__ == "__main__":
    main()
