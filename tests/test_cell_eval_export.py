"""Predictions in cell-eval's layout, and cell-eval's own metrics on them (the optional package)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradlekit.evaluate.cell_eval import PERT_COL, baseline_cells, cell_eval_layout, has_cell_eval, run_cell_eval


def _cells(seed=0, n=40, genes=30):
    rng = np.random.default_rng(seed)
    labels = np.repeat(["ctrl", "A", "B"], n)
    mu = rng.gamma(2.0, 2.0, genes)
    shift = {
        "ctrl": np.ones(genes),
        "A": np.where(np.arange(genes) < 5, 4.0, 1.0),
        "B": np.where(np.arange(genes) >= 25, 0.2, 1.0),
    }
    X = np.stack([rng.poisson(mu * shift[lab] * rng.uniform(0.5, 2.0)) for lab in labels]).astype(np.float32)
    X[3] = 0  # an empty cell: dropped (its normalisation is 0 / 0)
    return ad.AnnData(
        sp.csr_matrix(X),
        obs=pd.DataFrame({"guide": labels}, index=[f"c{i}" for i in range(len(labels))]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(genes)]),
    )


def test_layout_is_ln1p_of_counts_per_10k_with_labels_in_target_gene():
    cells = _cells()
    out = cell_eval_layout(cells, perturbation_key="guide", control_label="ctrl", keep=["A"])
    X = cells.X.toarray().astype(np.float64)
    keep = np.isin(cells.obs["guide"], ["ctrl", "A"]) & (X.sum(axis=1) > 0)
    expected = np.log1p(1e4 * X[keep] / X[keep].sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out.X.toarray(), expected, rtol=1e-6, atol=1e-6)  # float32 storage
    assert list(out.obs[PERT_COL].astype(str)) == list(cells.obs["guide"][keep])
    assert out.n_obs == 79 and list(out.var_names) == list(cells.var_names)


def test_baseline_cells_are_the_control_mean_shifted_by_the_prediction():
    real = cell_eval_layout(_cells(), perturbation_key="guide", control_label="ctrl")
    ate = pd.DataFrame([np.full(30, 0.5), np.full(30, -20.0)], index=["A", "B"], columns=real.var_names)
    pred = baseline_cells(ate, real, control_label="ctrl", n_cells={"A": 7, "B": 3})
    ctrl_mean = real[real.obs[PERT_COL] == "ctrl"].X.toarray().mean(axis=0)
    labels = pred.obs[PERT_COL].astype(str).to_numpy()
    assert (labels == "A").sum() == 7 and (labels == "B").sum() == 3 and (labels == "ctrl").sum() == 39
    np.testing.assert_allclose(pred.X.toarray()[labels == "A"], np.tile(ctrl_mean + 0.5 * np.log(2), (7, 1)), rtol=1e-5)
    assert np.all(pred.X.toarray()[labels == "B"] == 0)  # a log-expression cannot fall below 0: clipped
    with pytest.raises(ValueError, match="every gene"):
        baseline_cells(ate.iloc[:, :10], real, control_label="ctrl")


@pytest.mark.skipif(not has_cell_eval(), reason="the optional cell-eval package is not installed (cradlekit[evaluate])")
def test_cell_eval_scores_a_perfect_prediction_one_and_a_swapped_one_below(tmp_path):
    real = cell_eval_layout(_cells(seed=1), perturbation_key="guide", control_label="ctrl")
    _, perfect = run_cell_eval(real.copy(), real, control_label="ctrl", out_dir=tmp_path / "perfect")
    assert perfect["pearson_delta"] == pytest.approx(1.0)
    swapped = real.copy()
    swapped.obs[PERT_COL] = swapped.obs[PERT_COL].astype(str).replace({"A": "B", "B": "A"}).astype("category")
    _, wrong = run_cell_eval(swapped, real, control_label="ctrl", out_dir=tmp_path / "swapped")
    assert wrong["pearson_delta"] < 0.5
    assert (tmp_path / "perfect" / "pred.h5ad").exists() and (tmp_path / "perfect" / "real.h5ad").exists()
