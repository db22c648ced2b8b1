"""Paired comparisons over splits and the reproduction report's tables (no training: synthetic runs).

Oracles: scipy's Wilcoxon test called on hand-made differences, the bootstrap interval's coverage
measured over many simulated samples, and hand-computed per-gene Pearson contributions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cradlekit.experiments.paired import bootstrap_interval, paired_comparison, paired_differences
from cradlekit.experiments.report import per_combination, sign_genes


def _results(cradle, other):
    rows = [{"model": "cradle", "k": 3, "seed": s, "m": v} for s, v in enumerate(cradle)]
    rows += [{"model": "cvae", "k": 3, "seed": s, "m": v} for s, v in enumerate(other)]
    return pd.DataFrame(rows)


def test_paired_differences_align_on_seed_and_drop_missing():
    res = _results([0.5, 0.6, 0.7, np.nan], [0.1, 0.2, 0.9, 0.3])
    res = res.sample(frac=1.0, random_state=0)  # row order must not matter
    d = paired_differences(res, "cradle", "cvae", "m")
    assert list(d.index) == [0, 1, 2] and np.allclose(d.to_numpy(), [0.4, 0.4, -0.2])


def test_paired_comparison_matches_scipy_and_counts_wins():
    a, b = [0.71, 0.65, 0.80, 0.77, 0.69, 0.74, 0.70], [0.52, 0.61, 0.55, 0.60, 0.71, 0.58, 0.50]
    pc = paired_comparison(_results(a, b), "cradle", ["cvae"], ["m"])
    row = pc.iloc[0]
    diff = np.subtract(a, b)
    assert row["n"] == 7 and row["wins"] == 6
    assert row["mean_diff"] == pytest.approx(diff.mean())
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert row["min_possible_p"] == pytest.approx(2 / 2**7)
    assert row["ci_low"] < diff.mean() < row["ci_high"]


def test_a_model_without_values_gives_no_pairs():
    """sVAE+ has no held-out values: its comparison has n = 0 and no statistics, and no error."""
    pc = paired_comparison(_results([0.5, 0.6], [np.nan, np.nan]), "cradle", ["cvae"], ["m"])
    assert pc.loc[0, "n"] == 0 and np.isnan(pc.loc[0, "mean_diff"]) and np.isnan(pc.loc[0, "wilcoxon_p"])


def test_several_k_need_a_choice():
    res = pd.concat([_results([1, 2], [0, 0]), _results([1, 2], [0, 0]).assign(k=4)])
    with pytest.raises(ValueError, match="several k"):
        paired_differences(res, "cradle", "cvae", "m")
    assert paired_differences(res, "cradle", "cvae", "m", k=4).tolist() == [1, 2]


def test_bootstrap_interval_covers_the_mean_about_95_percent_of_the_time():
    """Coverage over 400 samples of n = 30 from N(1, 1): binomial(400, ~0.94) lies in [0.89, 0.98]
    with probability > 0.999 (a percentile interval under-covers slightly at small n)."""
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(400):
        low, high = bootstrap_interval(rng.normal(1.0, 1.0, size=30), n_boot=2000, seed=i)
        hits += low <= 1.0 <= high
    assert 0.89 <= hits / 400 <= 0.98


def test_per_combination_averages_over_the_splits_that_held_it_out():
    recs = [
        {
            "row": {"model": "cradle"},
            "heldout_per_perturbation": {"A+B": {"ate_pearson": 0.2}, "C+D": {"ate_pearson": -0.4}},
        },
        {"row": {"model": "cradle"}, "heldout_per_perturbation": {"A+B": {"ate_pearson": 0.6}}},
        {"row": {"model": "cvae"}, "heldout_per_perturbation": {"C+D": {"ate_pearson": 0.1}}},
    ]
    table = per_combination(recs, ["cradle", "cvae"])
    assert table.loc["A+B", "cradle"] == "0.40 (2)" and table.loc["C+D", "cradle"] == "-0.40 (1)"
    assert table.loc["A+B", "cvae"] == "–" and table.loc["C+D", "cvae"] == "0.10 (1)"


def test_sign_genes_contributions_sum_to_pearson_and_flag_hemoglobin():
    genes = ["HBG2", "GATA1", "KLF1", "MYC", "ACTB"]
    m = [2.0, 0.5, 0.1, -0.3, 0.0]
    d = [-1.5, 0.4, 0.2, -0.2, 0.1]
    rec = {"row": {"model": "cradle"}, "heldout_ate": {"genes": genes, "A+B": {"model": m, "data": d}}}
    table, hb_share = sign_genes([rec], "cradle", top=5)
    mm, dd = np.asarray(m), np.asarray(d)
    contrib = (mm - mm.mean()) * (dd - dd.mean()) / (5 * mm.std() * dd.std())
    assert contrib.sum() == pytest.approx(stats.pearsonr(m, d)[0])
    assert table.index[0] == "HBG2" and table.loc["HBG2", "hemoglobin"] == "yes"
    assert table.loc["HBG2", "mean contribution to r"] == pytest.approx(round(contrib[0], 4))
    assert table.loc["HBG2", "opposite sign (%)"] == 100.0
    assert hb_share == pytest.approx(contrib[0] / contrib[contrib < 0].sum())
