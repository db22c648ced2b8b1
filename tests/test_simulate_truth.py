"""Fresh artifact-free cells from the simulator's truth (the ceiling of a model's QCPR)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import cradlekit as ck
from cradlekit.data import simulate_clean_cells, true_ate_frame
from cradlekit.errors import MissingKeyError


@pytest.fixture(scope="module")
def screen():
    return ck.data.simulate_perturbseq(n_cells=1500, n_genes=150, n_single=5, n_combinations=4, true_ate_cells=3000,
                                       seed=2)


def test_clean_cells_reproduce_the_true_ate(screen):
    truth = true_ate_frame(screen)
    labels = ["control", *truth.index]
    cells = simulate_clean_cells(screen, labels, n=3000, seed=5)
    assert cells.shape == (3000 * len(labels), screen.n_vars) and sp.issparse(cells.X)
    X = cells.X.toarray().astype(np.float64)
    np.testing.assert_allclose(X.sum(axis=1).mean(), 1e4, rtol=0.02)  # the requested library size
    Y = np.log2(1e4 * X / X.sum(axis=1, keepdims=True) + 1.0)
    groups = cells.obs["perturbation"].astype(str).to_numpy()
    control = Y[groups == "control"].mean(axis=0)
    ate = np.stack([Y[groups == p].mean(axis=0) - control for p in truth.index])
    # independent draws (another seed) of the same process: Monte-Carlo error only
    err = np.abs(ate - truth.to_numpy())
    assert np.corrcoef(ate.ravel(), truth.to_numpy().ravel())[0, 1] > 0.97
    assert np.median(err) < 0.05


def test_clean_cells_have_no_artifact_so_they_pass_qc_more_often_than_the_data(screen):
    ck.qc.label_artifacts(screen, ks=(3,), run_scrublet=False)
    labels = sorted(set(screen.obs["perturbation"].astype(str)))
    cells = simulate_clean_cells(screen, labels, n=200, library_size=3000.0, seed=1)
    rate = ck.evaluate.qc_pass_rate(cells, screen, ks=[3], run_scrublet=False, groupby="perturbation", inplace=True)
    data_rate = 100 * (screen.obs["artifact_k3"] == 0).mean()
    assert float(rate.iloc[:, 0].mean()) > data_rate + 5  # the data hold ~18 % injected artifacts


def test_clean_cells_need_a_simulated_screen(screen, make_qc_adata):
    with pytest.raises(MissingKeyError, match="simulate_perturbseq"):
        simulate_clean_cells(make_qc_adata(n_cells=50, n_genes=40), ["control"])
    with pytest.raises(MissingKeyError, match="not perturbations of this simulated screen"):
        simulate_clean_cells(screen, ["NOPE"])
    with pytest.raises(ValueError, match="n must be >= 1"):
        simulate_clean_cells(screen, ["control"], n=0)


def test_clean_cells_on_a_panel_screen_follow_the_full_screen_restricted_to_the_panel(screen):
    """A screen written on a panel (some simulated genes dropped, as write_example_screen does) keeps
    the simulation's truth for every simulated gene; clean cells come on the panel's genes at the
    requested library size, with the full screen's gene proportions renormalised over the panel."""
    panel_genes = screen.var_names[10:]  # drop ten simulated genes
    panel = screen[:, panel_genes].copy()
    label = str(true_ate_frame(screen).index[0])
    full = simulate_clean_cells(screen, [label], n=3000, seed=3)
    on_panel = simulate_clean_cells(panel, [label], n=3000, seed=4)
    assert list(on_panel.var_names) == list(panel_genes)
    np.testing.assert_allclose(on_panel.X.sum(axis=1).mean(), 1e4, rtol=0.02)
    expected = np.asarray(full.X[:, 10:].mean(axis=0)).ravel()
    expected *= 1e4 / expected.sum()
    observed = np.asarray(on_panel.X.mean(axis=0)).ravel()
    assert np.corrcoef(np.log1p(expected), np.log1p(observed))[0, 1] > 0.99
    with pytest.raises(MissingKeyError, match="not among the simulated genes"):
        other = panel.copy()
        other.var_names = [f"X{i}" for i in range(other.n_vars)]
        simulate_clean_cells(other, [label], n=5)
