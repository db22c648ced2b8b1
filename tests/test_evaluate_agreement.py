"""ATE-ρ, ATE-R² (data as truth), top-k Jaccard and alignment by name, on hand-written matrices."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from cradlekit.errors import MissingKeyError
from cradlekit.evaluate import align_ate, ate_pearson, ate_r2, evaluate_perturbations, top_k_jaccard

PERTS = ["A", "B", "A+B"]
GENES = ["g0", "g1", "g2", "g3"]


def frame(values, index=PERTS, columns=GENES) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(values, dtype=float), index=index, columns=columns)


DATA = frame([[1.0, -2.0, 0.5, 0.0], [0.0, 3.0, -1.0, 0.25], [2.0, 0.0, 0.0, -0.5]])
MODEL = frame([[0.5, -1.5, 0.0, 0.5], [0.0, 2.0, -2.0, 0.0], [1.0, 0.5, 0.0, -0.5]])


def test_pearson_and_r2_equal_numpy_scipy_sklearn_on_flattened():
    x, y = DATA.to_numpy().ravel(), MODEL.to_numpy().ravel()
    r = ate_pearson(MODEL, DATA)
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert r == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    r2 = ate_r2(MODEL, DATA)
    assert r2 == pytest.approx(r2_score(x, y), abs=1e-12)  # y_true = data, as in the authors' eval.py
    assert r2 == pytest.approx(1 - ((x - y) ** 2).sum() / ((x - x.mean()) ** 2).sum(), abs=1e-12)
    assert r2 != pytest.approx(r2_score(y, x))  # not symmetric: direction matters
    assert ate_r2(DATA, MODEL) == pytest.approx(r2_score(y, x), abs=1e-12)


def test_known_values():
    data = frame(np.arange(12).reshape(3, 4))  # flattened 0..11: SS_tot = 143
    assert ate_pearson(data, data) == pytest.approx(1.0)
    assert ate_r2(data, data) == pytest.approx(1.0)
    reversed_ = frame(11 - np.arange(12).reshape(3, 4))
    assert ate_pearson(reversed_, data) == pytest.approx(-1.0)
    # Σ (d - (11 - d))² = 2 · (11² + 9² + 7² + 5² + 3² + 1²) = 572 → R² = 1 - 572/143 = -3
    assert ate_r2(reversed_, data) == pytest.approx(-3.0)
    shifted = data + 1.0  # r = 1 but R² = 1 - 12/143
    assert ate_pearson(shifted, data) == pytest.approx(1.0)
    assert ate_r2(shifted, data) == pytest.approx(1 - 12 / 143)


def test_alignment_by_name_anndata_and_frames():
    shuffled = MODEL.loc[["A+B", "A", "B"], ["g3", "g1", "g0", "g2"]]
    as_anndata = ad.AnnData(X=DATA.to_numpy(), obs=pd.DataFrame(index=PERTS), var=pd.DataFrame(index=GENES))
    assert ate_pearson(shuffled, as_anndata) == pytest.approx(ate_pearson(MODEL, DATA), abs=1e-12)
    assert ate_r2(shuffled, as_anndata) == pytest.approx(ate_r2(MODEL, DATA), abs=1e-12)
    m, d = align_ate(shuffled, as_anndata)
    assert list(m.index) == PERTS and list(m.columns) == GENES
    np.testing.assert_array_equal(m.to_numpy(), MODEL.to_numpy())


def test_alignment_errors():
    with pytest.raises(MissingKeyError, match=r"different perturbations: 1 only in data \['A\+B'\], 0 only in model"):
        ate_pearson(MODEL.loc[["A", "B"]], DATA)
    renamed = MODEL.rename(columns={"g3": "g9"})
    with pytest.raises(MissingKeyError, match=r"different genes.*\['g3'\].*\['g9'\]"):
        ate_r2(renamed, DATA)
    with pytest.raises(MissingKeyError, match="duplicate gene names"):
        ate_pearson(frame(MODEL.to_numpy(), columns=["g0", "g0", "g2", "g3"]), DATA)
    with pytest.raises(MissingKeyError, match=r"absent from the model ATE: \['A\+B'\]"):
        ate_pearson(MODEL.loc[["A", "B"]], DATA, perturbations=["A", "A+B"])
    nan = MODEL.copy()
    nan.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="model ATE contains NaN"):
        ate_r2(nan, DATA)
    with pytest.raises(TypeError, match="AnnData or a DataFrame"):
        ate_r2(MODEL.to_numpy(), DATA)


def test_subset_of_perturbations():
    sub = ["B", "A"]
    x = DATA.loc[sub].to_numpy().ravel()
    y = MODEL.loc[sub].to_numpy().ravel()
    # model may hold extra perturbations when a subset is asked for
    extra = pd.concat([MODEL, frame([[9, 9, 9, 9]], index=["C"])])
    assert ate_pearson(extra, DATA, perturbations=sub) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert ate_r2(extra, DATA, perturbations=sub) == pytest.approx(r2_score(x, y))


def test_constant_inputs_give_nan_with_warning():
    zeros = frame(np.zeros((3, 4)))
    with pytest.warns(RuntimeWarning, match="ATE-ρ undefined"):
        assert np.isnan(ate_pearson(zeros, DATA))
    with pytest.warns(RuntimeWarning, match="ATE-R² undefined"):
        assert np.isnan(ate_r2(DATA, zeros))


# Jaccard with hand-picked top sets, k = 2 over 6 genes.
J_GENES = [f"g{i}" for i in range(6)]
J_DATA = frame(
    [
        [5.0, -4.0, 1.0, 0.0, 0.0, 0.0],  # top2 {g0, g1}
        [0.0, 0.0, 1.0, -1.0, 1.0, 0.0],  # tie |1| on g2, g3, g4 → earlier genes: {g2, g3}
        [0.0, 0.0, 0.0, 0.0, -3.0, 2.0],  # top2 {g4, g5}
    ],
    columns=J_GENES,
)
J_MODEL = frame(
    [
        [0.1, -3.0, 2.0, 0.0, 0.0, 0.0],  # top2 {g1, g2} → |∩| 1, |∪| 3 → 1/3
        [0.0, 0.0, 0.0, 1.0, -1.0, 1.0],  # tie on g3, g4, g5 → {g3, g4} → 1/3
        [0.0, 0.0, 0.0, 0.0, 0.5, -0.5],  # tie → {g4, g5} → 1
    ],
    columns=J_GENES,
)


def test_top_k_jaccard_hand_picked_sets_and_ties():
    result = top_k_jaccard(J_MODEL, J_DATA, k=2)
    np.testing.assert_allclose(result.per_perturbation.loc[PERTS], [1 / 3, 1 / 3, 1.0])
    assert result.mean == pytest.approx(5 / 9)
    mean, per = result  # a named tuple
    assert per.name == "jaccard" and mean == result.mean
    # k = 1: data {g0}, {g2}, {g4}; model {g1}, {g3}, {g4}
    np.testing.assert_allclose(top_k_jaccard(J_MODEL, J_DATA, k=1).per_perturbation, [0.0, 0.0, 1.0])
    # every gene in both sets → 1; ties are broken by the DATA's gene order even if the model's differs
    assert top_k_jaccard(J_MODEL, J_DATA, k=6).mean == 1.0
    reordered = J_MODEL[J_GENES[::-1]]
    assert top_k_jaccard(reordered, J_DATA, k=2).mean == pytest.approx(5 / 9)
    with pytest.raises(ValueError, match="k must be between 1 and the number of genes"):
        top_k_jaccard(J_MODEL, J_DATA, k=7)
    sub = top_k_jaccard(J_MODEL, J_DATA, k=2, perturbations=["A+B"])
    assert list(sub.per_perturbation.index) == ["A+B"] and sub.mean == 1.0


def test_evaluate_perturbations_row():
    row = evaluate_perturbations(J_MODEL, J_DATA, k=2)
    assert row == {
        "ate_pearson": pytest.approx(ate_pearson(J_MODEL, J_DATA)),
        "ate_r2": pytest.approx(ate_r2(J_MODEL, J_DATA)),
        "jaccard": pytest.approx(5 / 9),
        "n_perturbations": 3,
        "n_genes": 6,
    }
    held_out = evaluate_perturbations(J_MODEL, J_DATA, k=2, perturbations=["B", "A+B"])
    x, y = J_DATA.loc[["B", "A+B"]].to_numpy().ravel(), J_MODEL.loc[["B", "A+B"]].to_numpy().ravel()
    assert held_out["ate_pearson"] == pytest.approx(pearsonr(x, y)[0])
    assert held_out["ate_r2"] == pytest.approx(r2_score(x, y))
    assert held_out["jaccard"] == pytest.approx((1 / 3 + 1) / 2)
    assert held_out["n_perturbations"] == 2
    table = pd.DataFrame([{"subset": "all", **row}, {"subset": "held_out", **held_out}])
    assert table.shape == (2, 6)
