"""One-sided median ± k·MAD rules, strictness at the boundary and the MAD = 0 guard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cradlekit.qc import fails, mad, mad_threshold, robust_scale
from cradlekit.qc.thresholds import compute_thresholds, flag_table, k_label, normalize_ks


def test_mad_is_raw_and_hand_computed():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    # median 3; |x - 3| = 2, 1, 0, 1, 97 -> median 1 (no 1.4826 factor)
    assert mad(x) == 1.0
    rs = robust_scale(x)
    assert (rs.median, rs.mad, rs.scale, rs.kind) == (3.0, 1.0, 1.0, "mad")
    assert mad_threshold(3.0, 1.0, 3, "upper") == 6.0
    assert mad_threshold(3.0, 1.0, 3, "lower") == 0.0
    assert mad(np.array([1.0, np.nan, 3.0, 2.0])) == 1.0  # NaN ignored: median 2, devs 1,1,0


def _metrics(values_lower, values_upper):
    n = len(values_lower)
    return pd.DataFrame(
        {
            "total_counts": values_lower,
            "n_genes_by_counts": np.full(n, 7.0),
            "pct_counts_mt": values_upper,
            "pct_counts_ribo": np.full(n, 1.0),
            "pct_counts_hb": np.zeros(n),
        }
    )


def test_boundary_is_strict_and_one_sided():
    x = np.array([8.0, 12.0, 13.0, 14.0, 15.0, 16.0, 20.0])
    # median 14; |x - 14| = 6, 2, 1, 0, 1, 2, 6 -> MAD 2. k=3: lower 8, upper 20 (exactly hit).
    metrics = _metrics(x, x)
    stats, thr = compute_thresholds(metrics, (3, 2.5))
    assert stats["total_counts"]["median"] == 14.0 and stats["total_counts"]["mad"] == 2.0
    assert thr["k3"]["total_counts"] == {"lower": 8.0}
    assert thr["k3"]["mito"] == {"upper": 20.0}
    assert thr["k2p5"]["total_counts"]["lower"] == 9.0
    flags = flag_table(metrics, thr, (2.5, 3))
    assert not flags[("total_counts", "k3")].any()  # 8 is not < 8
    assert not flags[("mito", "k3")].any()  # 20 is not > 20
    assert flags[("total_counts", "k2p5")].tolist() == [True] + [False] * 6  # low tail only
    assert flags[("mito", "k2p5")].tolist() == [False] * 6 + [True]  # high tail only
    assert fails([7.999, 8.0, 8.001], 8.0, "lower").tolist() == [True, False, False]
    assert fails([19.999, 20.0, 20.001], 20.0, "upper").tolist() == [False, False, True]
    assert not fails([1.0, 2.0], float("nan"), "upper").any()


def test_mad_zero_guard_hemoglobin_mostly_zero():
    rng = np.random.default_rng(0)
    hb = np.zeros(200)
    nonzero = rng.uniform(0.01, 0.05, size=20)  # 10 % of cells, tiny values
    hb[:20] = nonzero
    rs = robust_scale(hb)
    assert rs.mad == 0.0 and rs.median == 0.0
    assert rs.kind == "mad_off_median"
    assert rs.scale == pytest.approx(np.median(nonzero))
    for k in (3, 4, 5):
        t = mad_threshold(rs.median, rs.scale, k, "upper")
        assert fails(hb, t, "upper").sum() < 20  # not every non-zero cell
        assert fails(hb, t, "upper").sum() == 0
    # the published rule (no guard) flags every non-zero cell
    raw = robust_scale(hb, mad_zero_guard=False)
    assert raw.scale == 0.0 and fails(hb, mad_threshold(0.0, 0.0, 3, "upper"), "upper").sum() == 20
    # a real outlier still fails with the guard
    hb_out = hb.copy()
    hb_out[-1] = 5.0
    rs = robust_scale(hb_out)
    flagged = fails(hb_out, mad_threshold(rs.median, rs.scale, 3, "upper"), "upper")
    assert np.flatnonzero(flagged).tolist() == [199]


def test_mad_zero_guard_constant_metric_flags_nothing():
    rs = robust_scale(np.full(50, 2.0))
    assert (rs.median, rs.scale, rs.kind) == (2.0, 0.0, "constant")
    assert not fails(np.full(50, 2.0), mad_threshold(2.0, 0.0, 3, "upper"), "upper").any()


def test_skipped_criterion_has_nan_thresholds():
    x = np.arange(10.0)
    stats, thr = compute_thresholds(_metrics(x, x), (3,), skipped=["hb"])
    assert stats["hb"]["scale_kind"] == "skipped"
    assert np.isnan(thr["k3"]["hb"]["upper"])
    assert not flag_table(_metrics(x, x), thr, (3,))[("hb", "k3")].any()


def test_normalize_ks():
    assert normalize_ks((5, 3, 4, 3)) == (3.0, 4.0, 5.0)
    assert normalize_ks(3.5) == (3.5,) and k_label(3.5) == "k3p5" and k_label(4.0) == "k4"
    with pytest.raises(ValueError, match="at least one"):
        normalize_ks(())
    with pytest.raises(ValueError, match="positive finite"):
        normalize_ks((3, -1))
