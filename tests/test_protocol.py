"""The authors' protocol in the splits and the runner config (issue 10).

Oracles: hand-built screens whose eligible combinations are known by construction; the real
Norman subset, where every held-out combination's targets are checked against the training cells.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradlekit.data.perturbations import parse_perturbation
from cradlekit.data.splits import split_combinations
from cradlekit.experiments import config_from_dict
from cradlekit.experiments.grid import RunSpec, run_key
from cradlekit.model._options import module_options, resolve_mask_prior


def _screen(labels_with_counts):
    labels = [lab for lab, n in labels_with_counts for _ in range(n)]
    adata = ad.AnnData(np.ones((len(labels), 3), dtype=np.float32))
    adata.obs["perturbation"] = pd.Categorical(labels)
    adata.uns["cradlekit"] = {"perturbation_key": "perturbation", "control_label": "control", "combo_sep": "+"}
    return adata


def _trained_targets(adata):
    train = adata.obs.loc[adata.obs["split"] == "train", "perturbation"].astype(str)
    return {t for lab in set(train) for t in parse_perturbation(lab, control_label="control")}


def test_heldout_combinations_keep_every_target_trained():
    """X and Y occur only in X+Y: X+Y is never eligible. A, B, C have singles: their combinations are."""
    adata = _screen(
        [("control", 20), ("A", 10), ("B", 10), ("C", 10), ("A+B", 10), ("B+C", 10), ("A+C", 10), ("X+Y", 10)]
    )
    for seed in range(20):
        split_combinations(adata, holdout_fraction=0.5, seed=seed)
        held = set(adata.uns["split"]["heldout"])
        assert "X+Y" not in held and len(held) == 2 == adata.uns["split"]["n_heldout_wanted"]
        trained = _trained_targets(adata)
        assert all(set(parse_perturbation(c, control_label="control")) <= trained for c in held)


def test_a_target_seen_only_in_combinations_keeps_one_of_them():
    """D has no single: of D+A and D+B at most one may be held out (the other trains D)."""
    adata = _screen([("control", 20), ("A", 10), ("B", 10), ("D+A", 10), ("D+B", 10)])
    for seed in range(10):
        split_combinations(adata, holdout_fraction=1.0, seed=seed)
        held = set(adata.uns["split"]["heldout"])
        assert len(held) == 1 and "D" in _trained_targets(adata)


def test_too_few_eligible_combinations_warn(cradlekit_log):
    adata = _screen([("control", 20), ("A", 10), ("X+Y", 10), ("A+Z", 10)])
    split_combinations(adata, holdout_fraction=1.0, seed=0)
    assert len(adata.uns["split"]["heldout"]) == 0
    assert "can be held out" in cradlekit_log.text


def test_norman_subset_heldout_targets_all_trained(shared_data_file):
    from cradlekit.data import load_dataset

    adata = load_dataset("norman_subset", path=shared_data_file("perturbench_devel_norman19_mcfaline23_counts500.h5ad"))
    covered = set()
    for seed in range(7):
        split_combinations(adata, seed=seed)
        held = set(adata.uns["split"]["heldout"])
        assert len(held) == 4  # ceil(0.25 x 15)
        trained = _trained_targets(adata)
        assert all(set(parse_perturbation(c, control_label="control")) <= trained for c in held)
        covered |= held
    assert len(covered) == 7  # every eligible combination is held out by seeds 0-6 (configs/norman_paper.yaml)


GRID = {"dataset": "simulator", "models": ["cradle", "cvae", "cradle_exact"], "ks": [3], "seeds": [0, 1],
        "variants": {"cradle_exact": {"model": "cradle", "options": {"objective": "exact"}, "label": "exact"}},
        "model_options": {"latent_dim": 32, "mask_prior": None}}


def test_split_seed_follows_the_run_and_keys_differ():
    c = config_from_dict(GRID)
    assert c.split.seed == "run" and [c.split.seed_for(s) for s in (0, 3)] == [0, 3]
    assert run_key(c, RunSpec("cradle", 3, 0)) != run_key(c, RunSpec("cradle", 3, 1))
    fixed = config_from_dict({**GRID, "split": {"seed": 5}})
    assert fixed.split.seed_for(3) == 5
    with pytest.raises(ValueError, match="split.seed"):
        config_from_dict({**GRID, "split": {"seed": "every"}})


def test_variants_resolve_to_a_registry_model_with_their_options():
    c = config_from_dict(GRID)
    assert c.base_model("cradle_exact") == "cradle" and c.model_label("cradle_exact") == "exact"
    assert c.model_kwargs("cradle_exact")["objective"] == "exact"
    from cradlekit.model._options import DEFAULT_OBJECTIVE

    # a config without model_options.objective gets the package default; the paper's configs name theirs
    assert c.model_kwargs("cradle")["objective"] == DEFAULT_OBJECTIVE != "published"
    paper = config_from_dict({**GRID, "model_options": {"objective": "published"}})
    assert paper.model_kwargs("cradle")["objective"] == "published"
    assert paper.model_kwargs("cradle_exact")["objective"] == "exact"  # a variant's own option wins
    assert "objective" not in c.model_kwargs("cvae") and "alpha" not in c.model_kwargs("cvae")
    with pytest.raises(ValueError, match="unknown model name"):
        config_from_dict({**GRID, "models": ["cradle", "nope"]})
    with pytest.raises(ValueError, match="CRADLE-VAE models only"):
        config_from_dict(
            {**GRID, "variants": {"v": {"model": "cvae", "options": {"objective": "exact"}}}, "models": ["v"]}
        )
    with pytest.raises(ValueError, match="cannot reuse a registry model or baseline name"):
        config_from_dict({**GRID, "variants": {"cradle": {"model": "cvae"}}})


def test_mask_prior_keeps_the_papers_active_dimensions():
    assert resolve_mask_prior(None, 200) == pytest.approx(0.01)  # the paper's pairing
    assert resolve_mask_prior(None, 32) == pytest.approx(2 / 32)
    assert resolve_mask_prior(0.01, 32) == 0.01  # explicit wins
    opts = module_options("sams_vae", latent_dim=32, hidden_dim=16, num_particles=1, alpha=None, mask_prior=None)
    assert opts["mask_prior"] * 32 == pytest.approx(2.0)


def test_svae_plus_default_prior_is_sparse():
    from cradlekit.module import SVAEPlus

    assert SVAEPlus(5, 3, np.ones(3), 10, latent_dim=4, hidden_dim=8).mask_beta == 2.0


@pytest.mark.parametrize("kwargs, match", [
    ({"n_cells": -10}, "n_cells must be a positive integer"),
    ({"n_genes": "300"}, "n_genes must be"),
])
def test_simulator_arguments_are_checked_when_the_config_is_read(kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict({**GRID, "dataset": {"name": "simulator", "kwargs": kwargs}})
