"""The simple baselines (cradlekit.baselines) against independent numpy computations.

Every expected value here is computed directly from the count matrix with numpy (normalise, mask,
average), never through cradlekit's ATE code, so a wrong cell mask, split or label in the library
would show up as a difference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cradlekit as ck
from cradlekit.baselines import (
    BASELINES,
    additive_baseline,
    linear_baseline,
    mean_baseline,
    no_change_baseline,
    predict_baseline,
    training_ate,
)
from cradlekit.baselines.linear import ridge_bilinear
from cradlekit.baselines.training_effects import single_effects


@pytest.fixture(scope="module")
def screen():
    """A small simulated screen, QC-labelled (no scrublet) and split by combinations."""
    adata = ck.data.simulate_perturbseq(
        n_cells=2500, n_genes=160, n_single=6, n_combinations=6, true_ate_cells=50, seed=3
    )
    ck.qc.label_artifacts(adata, ks=(3,), run_scrublet=False)
    ck.data.split_combinations(adata, holdout_fraction=0.34, seed=1)
    return adata


def _numpy_means(adata) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mean log2(1e4 x / sum + 1) of QC-passed training cells per label, and of the controls (numpy only)."""
    X = adata.X.toarray().astype(np.float64)
    Y = np.log2(1e4 * X / X.sum(axis=1, keepdims=True) + 1.0)
    use = (adata.obs["split"].astype(str).to_numpy() == "train") & (adata.obs["artifact_k3"].to_numpy() == 0)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    means = {p: Y[use & (labels == p)].mean(axis=0) for p in np.unique(labels[use])}
    return means, means.pop("control")


def test_training_ate_matches_numpy(screen):
    means, control = _numpy_means(screen)
    ate = training_ate(screen)
    assert sorted(ate.obs_names) == sorted(means)
    for p in ate.obs_names:
        np.testing.assert_allclose(ate[p].X.ravel(), means[p] - control, rtol=0, atol=1e-10)


def test_mean_and_no_change_baselines_match_numpy(screen):
    means, control = _numpy_means(screen)
    expected = np.mean([m - control for m in means.values()], axis=0)
    held = [str(p) for p in screen.uns["split"]["heldout"]]
    pred = mean_baseline(screen, perturbations=held)
    assert list(pred.obs_names) == held
    for p in held:
        np.testing.assert_allclose(pred[p].X.ravel(), expected, rtol=0, atol=1e-10)
    zero = no_change_baseline(screen, perturbations=held)
    assert zero.shape == (len(held), screen.n_vars) and not np.any(zero.X)


def test_additive_baseline_sums_the_singles_training_effects(screen):
    means, control = _numpy_means(screen)
    held = [str(p) for p in screen.uns["split"]["heldout"]]
    pred = additive_baseline(screen, perturbations=held)
    checked = 0
    for p in held:
        a, b = p.split("+")
        if a in means and b in means:  # both singles observed: the textbook additive prediction
            np.testing.assert_allclose(
                pred[p].X.ravel(), (means[a] - control) + (means[b] - control), rtol=0, atol=1e-10
            )
            checked += 1
    assert checked >= 1
    single = sorted(p for p in means if "+" not in p)[0]
    np.testing.assert_allclose(additive_baseline(screen, perturbations=[single]).X.ravel(), means[single] - control,
                               rtol=0, atol=1e-10)


def _ate_frame(rows: dict[str, list[float]]):
    import anndata as ad

    frame = pd.DataFrame(rows).T
    return ad.AnnData(frame.to_numpy(dtype=np.float64), obs=pd.DataFrame(index=frame.index),
                      var=pd.DataFrame(index=[f"g{i}" for i in range(frame.shape[1])]))


def test_single_effects_derives_targets_seen_only_in_combinations():
    effects, derived = single_effects(_ate_frame({
        "X": [1.0, 0.0], "T+X": [3.0, 1.0],   # T only with an observed X: ATE(T+X) - ATE(X)
        "A+B": [2.0, 4.0],                      # A and B only together: minimum norm, half each
    }), "control")
    np.testing.assert_allclose(effects["X"], [1.0, 0.0])
    np.testing.assert_allclose(effects["T"], [2.0, 1.0])
    np.testing.assert_allclose(effects["A"], [1.0, 2.0])
    np.testing.assert_allclose(effects["B"], [1.0, 2.0])
    assert derived == ["A", "B", "T"]


def test_ridge_bilinear_without_penalty_is_least_squares():
    rng = np.random.default_rng(0)
    G, P = rng.normal(size=(30, 4)), rng.normal(size=(3, 12))
    W_true = rng.normal(size=(4, 3))
    Y = G @ W_true @ P + 0.01 * rng.normal(size=(30, 12))
    # independent: vec(G W P) = (P^T kron G) vec(W), solved by numpy's least squares
    expected = np.linalg.lstsq(np.kron(P.T, G), Y.T.ravel(), rcond=None)[0].reshape(3, 4).T
    np.testing.assert_allclose(ridge_bilinear(Y, G, P, 0.0), expected, rtol=1e-8, atol=1e-10)
    shrunk = ridge_bilinear(Y, G, P, 1e3)
    assert np.linalg.norm(shrunk) < 0.5 * np.linalg.norm(expected)


def test_linear_baseline_is_linear_in_the_perturbation_embedding(screen):
    means, control = _numpy_means(screen)
    singles = sorted(p for p in means if "+" not in p)
    a, b = singles[0], singles[1]
    pred = linear_baseline(screen, perturbations=[a, b, f"{a}+{b}"], perturbation_embedding="training_data")
    center = pred.uns["baseline"]
    # G W (P_a + P_b) + c = (pred_a - c) + (pred_b - c) + c, with c the mean training effect of each gene
    fit = linear_baseline(screen, perturbations=singles, perturbation_embedding="training_data")
    c = np.mean([means[p] - control for p in means if all(t in singles for t in p.split("+"))], axis=0)
    np.testing.assert_allclose(pred[f"{a}+{b}"].X.ravel(), pred[a].X.ravel() + pred[b].X.ravel() - c, atol=1e-9)
    assert center["n_components"] >= 1 and fit.n_obs == len(singles)
    # the fit explains the training effects it was fitted on far better than their mean does
    truth = np.concatenate([means[p] - control for p in singles])
    r_linear = np.corrcoef(np.concatenate([fit[p].X.ravel() for p in singles]), truth)[0, 1]
    r_mean = np.corrcoef(np.tile(c, len(singles)), truth)[0, 1]
    assert r_linear > r_mean + 0.2


def test_linear_baseline_refuses_target_gene_embedding_without_the_targets(screen):
    ate = training_ate(screen)
    absent = [t for p in ate.obs_names for t in str(p).split("+") if t not in screen.var_names]
    if absent:
        with pytest.raises(ValueError, match="needs every target in the gene panel"):
            linear_baseline(screen, perturbation_embedding="target_gene")
    else:  # the simulator puts its targets in the panel: the authors' embedding is usable
        assert (
            linear_baseline(screen, perturbation_embedding="target_gene").uns["baseline"]["perturbation_embedding"]
            == "target_gene"
        )


def test_predict_baseline_by_name_and_errors(screen):
    assert set(BASELINES) == {"no_change", "mean", "additive", "linear"}
    held = [str(p) for p in screen.uns["split"]["heldout"]]
    by_name = predict_baseline("mean", screen, perturbations=held)
    np.testing.assert_array_equal(by_name.X, mean_baseline(screen, perturbations=held).X)
    with pytest.raises(ValueError, match="unknown baseline"):
        predict_baseline("median", screen)
    unsplit = screen.copy()
    del unsplit.obs["split"]
    with pytest.raises(ck.errors.MissingKeyError, match="split the data first"):
        mean_baseline(unsplit)


def test_a_target_without_training_cells_is_not_predicted(screen):
    held = [str(p) for p in screen.uns["split"]["heldout"]]
    data = screen.copy()
    a = held[0].split("+")[0]
    drop = data.obs["perturbation"].astype(str).str.split("+").map(lambda t: a in t) & (data.obs["split"] != "test")
    data = data[~drop.to_numpy()].copy()
    pred = additive_baseline(data, perturbations=held)
    assert held[0] in pred.uns["baseline"]["not_predicted"]
    assert held[0] not in pred.obs_names
