"""Tests of train/val/test splits (cradlekit.data.splits)."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradlekit.data.perturbations import is_combination
from cradlekit.data.simulate import simulate_perturbseq
from cradlekit.data.splits import split_cells, split_combinations, split_summary


def _check_combination_split(adata, n_combos: int, holdout_fraction: float = 0.25, val_fraction: float = 0.2):
    labels = adata.obs["perturbation"].astype(str)
    split = adata.obs["split"].astype(str)
    meta = adata.uns["split"]
    heldout = set(meta["heldout"])
    combos = set(labels[is_combination(labels)])
    assert len(combos) == n_combos
    assert len(heldout) == math.ceil(holdout_fraction * n_combos)
    assert heldout <= combos
    assert list(adata.obs["split"].cat.categories) == ["train", "val", "test"]
    # held-out combinations only in test, and test holds nothing else
    assert (split[labels.isin(heldout)] == "test").all()
    assert labels[split == "test"].isin(heldout).all()
    # every seen perturbation has train cells; val fraction per perturbation is as asked
    seen = labels[~labels.isin(heldout)]
    assert set(meta["seen"]) == set(seen)
    tab = pd.crosstab(seen, split[seen.index])
    assert (tab["train"] > 0).all()
    n = tab.sum(axis=1)
    assert (np.abs(tab["val"] - val_fraction * n) <= 1).all()
    assert {"train", "val"} >= set(tab.columns)
    assert meta["kind"] == "combinations" and meta["n_test"] == (split == "test").sum()


def test_split_combinations_simulated(small_simulation):
    a = small_simulation.copy()
    split_combinations(a, seed=0)
    _check_combination_split(a, 16)
    assert len(a.uns["split"]["heldout"]) == 4


def test_split_combinations_norman(norman19_subset):
    a = norman19_subset.copy()
    split_combinations(a, seed=0)
    _check_combination_split(a, 15)
    assert len(a.uns["split"]["heldout"]) == 4  # ceil(0.25 × 15)
    # controls and singles are never in test
    labels = a.obs["perturbation"].astype(str)
    assert (a.obs["split"][~is_combination(labels)] != "test").all()


def test_split_combinations_seeds(norman19_subset):
    a = norman19_subset.copy()
    split_combinations(a, seed=7)
    first = (a.obs["split"].copy(), list(a.uns["split"]["heldout"]))
    split_combinations(a, seed=7)
    assert a.obs["split"].equals(first[0]) and list(a.uns["split"]["heldout"]) == first[1]
    heldouts = set()
    for seed in range(5):
        split_combinations(a, seed=seed)
        heldouts.add(tuple(a.uns["split"]["heldout"]))
    assert len(heldouts) > 1
    split_combinations(a, seed=8)
    assert not a.obs["split"].equals(first[0])


def test_split_combinations_ceil_and_fractions():
    a = simulate_perturbseq(n_cells=800, n_genes=200, n_combinations=10, true_ate_cells=10)
    split_combinations(a, holdout_fraction=0.3)  # 0.3 × 10 = 3.0000000000000004 must give 3
    assert len(a.uns["split"]["heldout"]) == 3
    split_combinations(a, holdout_fraction=0.0, val_fraction=0.0)
    assert len(a.uns["split"]["heldout"]) == 0 and (a.obs["split"] == "train").all()
    with pytest.raises(ValueError):
        split_combinations(a, val_fraction=1.0)
    with pytest.raises(ValueError):
        split_combinations(a, holdout_fraction=1.5)


def test_split_combinations_without_combinations_suggests_split_cells():
    a = simulate_perturbseq(n_cells=300, n_genes=200, n_combinations=0, true_ate_cells=10)
    with pytest.raises(ValueError, match="split_cells"):
        split_combinations(a)


def test_split_combinations_roundtrip(tmp_path, small_simulation):
    a = small_simulation.copy()
    split_combinations(a, seed=2)
    a.write_h5ad(tmp_path / "s.h5ad")
    b = ad.read_h5ad(tmp_path / "s.h5ad")
    assert b.obs["split"].astype(str).equals(a.obs["split"].astype(str))
    assert list(b.uns["split"]["heldout"]) == list(a.uns["split"]["heldout"])


@pytest.mark.parametrize("source", ["norman", "simulated"])
def test_split_cells_proportions(source, norman19_subset, small_simulation):
    a = (norman19_subset if source == "norman" else small_simulation).copy()
    split_cells(a, seed=0)
    split = a.obs["split"].astype(str)
    frac = split.value_counts(normalize=True)
    np.testing.assert_allclose([frac["train"], frac["val"], frac["test"]], [0.64, 0.16, 0.20], atol=0.01)
    tab = pd.crosstab(a.obs["perturbation"].astype(str), split)
    n = tab.sum(axis=1)
    assert (np.abs(tab["test"] - 0.2 * n) <= 1).all() and (np.abs(tab["val"] - 0.16 * n) <= 1.5).all()
    assert a.uns["split"]["kind"] == "cells"
    first = split.copy()
    split_cells(a, seed=0)
    assert a.obs["split"].astype(str).equals(first)
    split_cells(a, seed=1)
    assert not a.obs["split"].astype(str).equals(first)


def test_split_cells_unstratified_and_validation():
    a = ad.AnnData(X=np.ones((1000, 3), dtype=np.int32))
    split_cells(a, stratify=False, fractions=(0.5, 0.25, 0.25), seed=3, key_added="split_b")
    counts = a.obs["split_b"].value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (500, 250, 250)
    assert a.uns["split_b"]["stratify"] is False or a.uns["split_b"]["stratify"] == False  # noqa: E712
    with pytest.raises(ValueError):
        split_cells(a, stratify=False, fractions=(0.5, 0.5, 0.5))


def test_split_cells_small_groups_keep_a_train_cell():
    a = simulate_perturbseq(n_cells=300, n_genes=200, true_ate_cells=10)
    a = a[a.obs.groupby("perturbation", observed=True).cumcount().to_numpy() < 2].copy()  # 2 cells each
    split_cells(a)
    tab = pd.crosstab(a.obs["perturbation"], a.obs["split"])
    assert (tab["train"] >= 1).all()


def test_split_summary(small_simulation):
    a = small_simulation.copy()
    split_combinations(a)
    a.obs["artifact_k3"] = a.obs["true_artifact"].astype(int)
    s = split_summary(a, artifact_key="artifact_k3")
    assert list(s.index[:3]) == ["train", "val", "test"]
    assert s["n_cells"].sum() == a.n_obs
    np.testing.assert_allclose(s["fraction"].sum(), 1.0)
    assert (s["n_pass"] + s["n_fail"] == s["n_cells"]).all()
    assert s["n_fail"].sum() == a.obs["artifact_k3"].sum()
    assert s.loc["test", "n_perturbations"] == 4


def test_heldout_perturbations_for_either_split_kind():
    from cradlekit.data import heldout_perturbations
    from cradlekit.errors import MissingKeyError

    adata = simulate_perturbseq(n_cells=600, n_genes=150, n_single=4, n_combinations=6, true_ate_cells=20, seed=3)
    with pytest.raises(MissingKeyError, match="split_cells"):
        heldout_perturbations(adata)
    split_combinations(adata, seed=0)
    held, split = heldout_perturbations(adata)
    assert held == sorted(map(str, adata.uns["split"]["heldout"])) and split is None
    assert all(isinstance(p, str) for p in held)
    split_cells(adata, seed=0)  # overwrites: now every perturbation has test cells
    held, split = heldout_perturbations(adata)
    labels = adata.obs["perturbation"].astype(str)
    in_test = set(labels[adata.obs["split"] == "test"])
    assert split == "test" and held == sorted(in_test - {"control"}) and "heldout" not in adata.uns["split"]
