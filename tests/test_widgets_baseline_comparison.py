"""PerturbationExplorer's comparison of one perturbation's prediction with the baselines', against numpy.

Every expected value is computed here from the count matrix (normalise, mask, average, correlate), never
through cradlekit's ATE or baseline code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cradlekit as ck
from cradlekit.baselines import BASELINE_LABELS
from cradlekit.widgets._baseline_comparison import baseline_comparison


@pytest.fixture(scope="module")
def screen():
    adata = ck.data.simulate_perturbseq(n_cells=2500, n_genes=160, n_single=6, n_combinations=6,
                                        true_ate_cells=50, seed=3)
    ck.qc.label_artifacts(adata, ks=(3,), run_scrublet=False)
    ck.data.split_combinations(adata, holdout_fraction=0.34, seed=1)
    return adata


def _log_means(adata, use: np.ndarray) -> dict[str, np.ndarray]:
    X = adata.X.toarray().astype(np.float64)
    Y = np.log2(1e4 * X / X.sum(axis=1, keepdims=True) + 1.0)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    return {p: Y[use & (labels == p)].mean(axis=0) for p in np.unique(labels[use])}


def test_model_and_additive_rows_match_numpy(screen):
    passed = screen.obs["artifact_k3"].to_numpy() == 0
    train = screen.obs["split"].astype(str).to_numpy() == "train"
    combo = str(screen.uns["split"]["heldout"][0])
    every = _log_means(screen, passed)
    observed = every[combo] - every["control"]
    fit = _log_means(screen, passed & train)
    additive = sum(fit[s] - fit["control"] for s in combo.split("+"))
    rng = np.random.default_rng(0)
    model = pd.Series(observed + rng.normal(0, 0.3, observed.size), index=screen.var_names)

    table = baseline_comparison(model, screen, combo, artifact_key="artifact_k3", model_label="my model")
    assert list(table.index) == ["my model", *(BASELINE_LABELS[b] for b in ("mean", "additive", "linear"))]
    np.testing.assert_allclose(table.loc["my model", "ATE-ρ"], np.corrcoef(model, observed)[0, 1], atol=1e-10)
    r2 = 1 - np.sum((observed - model) ** 2) / np.sum((observed - observed.mean()) ** 2)
    np.testing.assert_allclose(table.loc["my model", "ATE-R²"], r2, atol=1e-10)
    np.testing.assert_allclose(table.loc[BASELINE_LABELS["additive"], "ATE-ρ"],
                               np.corrcoef(additive, observed)[0, 1], atol=1e-8)
    top = lambda v: set(np.argsort(-np.abs(v), kind="stable")[:50])  # noqa: E731
    expected_jaccard = len(top(additive) & top(observed)) / len(top(additive) | top(observed))
    assert table.loc[BASELINE_LABELS["additive"], "top-50 Jaccard"] == pytest.approx(expected_jaccard)
    assert (table["note"] == "").all()


def test_a_baseline_that_cannot_predict_says_why_and_no_data_gives_an_empty_table(screen):
    combo = str(screen.uns["split"]["heldout"][0])
    single = combo.split("+")[0]
    has_single = screen.obs["perturbation"].astype(str).str.split("+").map(lambda members: single in members)
    # no training cell carries the single at all (alone or in a combination): nothing to add up
    other = screen[~(has_single.to_numpy() & (screen.obs["split"].astype(str) == "train").to_numpy())].copy()
    model = pd.Series(np.zeros(screen.n_vars), index=screen.var_names)
    table = baseline_comparison(model, other, combo, artifact_key="artifact_k3", baselines=["additive"])
    row = table.loc[BASELINE_LABELS["additive"]]
    assert np.isnan(row["ATE-ρ"]) and row["note"]  # the reason is stated, not a crash
    assert np.isnan(table.loc["model", "ATE-ρ"])  # a constant prediction has no correlation
    none = screen[screen.obs["perturbation"].astype(str) != combo].copy()
    assert baseline_comparison(model, none, combo, artifact_key="artifact_k3").empty
