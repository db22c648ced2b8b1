"""Calibrated metrics: ATE-ρ centred on the mean effect, and target-gene signs (numpy oracles)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cradlekit.evaluate import ate_pearson, centered_ate_pearson, target_sign_agreement


def _frame(values, rows, genes) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(values, dtype=np.float64), index=rows, columns=genes)


@pytest.fixture
def effects():
    rng = np.random.default_rng(0)
    genes = [f"g{i}" for i in range(40)]
    shared = rng.normal(0.0, 1.0, 40)  # every perturbation shifts cells the same way...
    own = rng.normal(0.0, 0.3, (5, 40))  # ...plus its own effect
    rows = [f"P{i}" for i in range(5)]
    return _frame(shared + own, rows, genes), pd.Series(shared, index=genes), rows, genes


def test_centred_rho_equals_numpy_pearson_of_the_differences(effects):
    data, shared, rows, genes = effects
    model = _frame(data.to_numpy() + np.random.default_rng(1).normal(0, 0.2, data.shape), rows, genes)
    expected = np.corrcoef((model - shared).to_numpy().ravel(), (data - shared).to_numpy().ravel())[0, 1]
    assert centered_ate_pearson(model, data, reference=shared) == pytest.approx(expected, abs=1e-12)
    # a Series reference is aligned by gene name, not by position
    assert centered_ate_pearson(model, data, reference=shared[::-1]) == pytest.approx(expected, abs=1e-12)


def test_the_shared_shift_wins_ate_rho_but_not_the_centred_one(effects):
    data, shared, rows, genes = effects
    constant = _frame(np.tile(shared.to_numpy(), (5, 1)), rows, genes)
    assert ate_pearson(constant, data) > 0.9  # a constant prediction looks excellent on ATE-rho
    assert np.isnan(centered_ate_pearson(constant, data, reference=shared))  # and has nothing to say here
    shuffled = _frame(data.to_numpy()[[1, 2, 3, 4, 0]], rows, genes)  # right shift, wrong perturbation
    assert ate_pearson(shuffled, data) > 0.8
    assert abs(centered_ate_pearson(shuffled, data, reference=shared)) < 0.3


def test_centred_rho_refuses_a_reference_of_the_wrong_length(effects):
    data, shared, _, _ = effects
    with pytest.raises(ValueError, match="one finite value per gene"):
        centered_ate_pearson(data, data, reference=shared.to_numpy()[:-1])


def test_target_sign_against_a_known_direction_and_the_data():
    genes = ["KLF1", "CEBPA", "GATA1", "other"]
    rows = ["KLF1", "CEBPA", "GATA1+KLF1"]
    model = _frame([[-0.9, 0.0, 0.1, 0.2], [0.1, 0.5, 0.0, 0.0], [0.3, 0.0, -0.2, 0.1]], rows, genes)
    data = _frame([[-1.0, 0.0, 0.0, 0.1], [0.0, -0.4, 0.0, 0.0], [-0.5, 0.0, -0.3, 0.0]], rows, genes)
    down = target_sign_agreement(model, direction="down", perturbations=rows)
    # targets judged: KLF1 in KLF1 (-0.9, agrees), CEBPA in CEBPA (+0.5, no), GATA1 (-0.2, yes), KLF1 (+0.3, no)
    assert down.n == 4 and down.fraction == pytest.approx(0.5)
    assert list(down.per_target["agrees"]) == [True, False, True, False]
    up = target_sign_agreement(model, direction="up", perturbations=rows)
    assert up.fraction == pytest.approx(0.5)
    by_data = target_sign_agreement(model, direction="data", data=data)
    assert by_data.fraction == pytest.approx(0.5) and by_data.n == 4
    strong = target_sign_agreement(model, direction="data", data=data, min_effect=0.45)
    assert strong.n == 2 and strong.fraction == pytest.approx(0.5)  # KLF1 in KLF1 (agrees), KLF1 in GATA1+KLF1 (not)


def test_target_sign_without_targets_in_the_panel_is_nan():
    model = _frame([[0.1, -0.2]], ["MAPK1"], ["g1", "g2"])
    out = target_sign_agreement(model, direction="down")
    assert out.n == 0 and np.isnan(out.fraction)
    with pytest.raises(ValueError, match="need the data ATE"):
        target_sign_agreement(model, direction="data")
