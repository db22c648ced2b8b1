"""Per-criterion against single-u in a grid's rows (issue 19): the paired comparison and the tables of
chapter 9, on a hand-made results frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cradlekit.experiments.which_artifact import (
    artifact_comparison,
    artifact_pairs,
    criterion_qcpr_table,
    rescue_truth_table,
)


def _runs() -> pd.DataFrame:
    rows = []
    for seed in range(5):
        for model, shift in (("cradle", 0.0), ("cradle_per_criterion", 0.05), ("cvae", -0.1)):
            rows.append({
                "model": model, "k": 3.0, "seed": seed, "heldout_ate_pearson": 0.8 + shift + 0.01 * seed,
                "heldout_true_ate_pearson": 0.9 + shift, "qcpr": 98.0 + 10 * shift, "qcpr_mito": 97.0 + 20 * shift,
                "data_qcpr_mito": 99.0 + 0.1 * seed, "truth_qcpr_mito": 99.5, "data_qcpr": 99.0, "truth_qcpr": 99.4,
                "rescue_truth_corr": (0.7 + shift + 0.01 * seed) if model != "cvae" else np.nan,
                "rescue_truth_corr_high_mito": (0.6 + 2 * shift) if model != "cvae" else np.nan,
                "observed_truth_corr": 0.5 + 0.01 * seed, "observed_truth_corr_high_mito": 0.4,
            })
    return pd.DataFrame(rows)


def test_comparison_is_paired_per_criterion_minus_single_u():
    runs = _runs()
    assert artifact_pairs(runs) == [("cradle_per_criterion", "cradle")]
    table = artifact_comparison(runs, k=3).set_index("metric")
    assert set(table["reference"]) == {"cradle_per_criterion"} and set(table["other"]) == {"cradle"}
    assert table.loc["rescue_truth_corr", "mean_diff"] == pytest.approx(0.05)
    assert table.loc["rescue_truth_corr_high_mito", "mean_diff"] == pytest.approx(0.1)
    assert table.loc["qcpr_mito", "mean_diff"] == pytest.approx(1.0)
    assert (table["n"] == 5).all() and (table["wins"] == 5).all()
    assert "qcpr_doublet" not in table.index  # metrics the rows lack are left out
    assert artifact_comparison(runs[runs["model"] != "cradle"]).empty


def test_tables_put_the_observed_cells_data_and_truth_beside_the_models():
    runs = _runs()
    labels = {"cradle": "single u", "cradle_per_criterion": "per criterion"}
    rescue = rescue_truth_table(runs, ["cradle", "cradle_per_criterion"], labels)
    assert list(rescue.index) == ["single u", "per criterion", "observed cells (before rescue)"]
    assert list(rescue.columns) == ["all", "high_mito"]
    assert rescue.loc["observed cells (before rescue)", "high_mito"].startswith("0.400") and "(5)" in rescue.iloc[2, 1]
    qcpr = criterion_qcpr_table(runs, ["cradle", "cradle_per_criterion"], labels)
    assert list(qcpr.index)[-2:] == ["data: QC-passed cells", "truth: clean cells of the simulator"]
    assert qcpr.loc["truth: clean cells of the simulator", "mito"].startswith("99.50") and "(5)" in qcpr.loc[
        "truth: clean cells of the simulator", "mito"]
