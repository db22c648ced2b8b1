"""Figure 3 (cradlekit.pl.qc_violins): panels, thresholds, shading, doublets, skipped criteria, errors."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from cradlekit._keys import CRITERIA, METRIC_OF_CRITERION
from cradlekit.data.simulate import simulate_perturbseq
from cradlekit.errors import EmptyPerturbationError, MissingKeyError
from cradlekit.pl import qc_violins
from cradlekit.pl._style import CRITERION_TITLES
from cradlekit.qc import HB_GENES, apply_thresholds, label_artifacts
from cradlekit.qc.thresholds import SIDE

PERT = "CEBPA"
MAD = ("total_counts", "n_genes", "mito", "ribo", "hb")


@pytest.fixture(scope="module")
def data():
    adata = simulate_perturbseq(n_cells=600, n_genes=200, n_single=4, n_combinations=2, true_ate_cells=50, seed=0)
    label_artifacts(adata, seed=0)
    return adata


@pytest.fixture(scope="module")
def generated():
    """Raw generated-like counts (no QC columns), a different seed and no injected artifacts."""
    return simulate_perturbseq(
        n_cells=300, n_genes=200, n_single=4, n_combinations=2, true_ate_cells=50, seed=1, artifact_rate=0.0
    )


@pytest.fixture(scope="module")
def labelled_generated(data, generated):
    return apply_thresholds(generated, data, ks=[3], seed=0, copy=True)


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def _by_gid(ax, gid):
    artists = [*ax.patches, *ax.lines, *ax.collections]
    return [a for a in artists if a.get_gid() == gid]


def _threshold(data, criterion, k=3):
    return data.uns["qc"]["thresholds"][f"k{k}"][criterion][SIDE[criterion]]


def test_six_panels_threshold_lines_and_regions(data, labelled_generated):
    fig = qc_violins(data, labelled_generated, perturbation=PERT)
    axes = _panels(fig)
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes] == [CRITERION_TITLES[c] for c in CRITERIA]
    assert fig.get_suptitle().startswith(PERT)
    for ax, criterion in zip(axes[:5], MAD, strict=True):
        thr = _threshold(data, criterion)
        (line,) = _by_gid(ax, "threshold")
        assert isinstance(line, Line2D) and line.get_linestyle() == ":"
        np.testing.assert_allclose(line.get_ydata(), [thr, thr])
        (fail,) = _by_gid(ax, "fail_region")
        (ok,) = _by_gid(ax, "pass_region")
        assert isinstance(fail, Rectangle) and isinstance(ok, Rectangle)
        lo, hi = ax.get_ylim()
        if SIDE[criterion] == "lower":  # fails below the lower threshold
            assert fail.get_y() == pytest.approx(lo) and fail.get_y() + fail.get_height() == pytest.approx(thr)
            assert ok.get_y() == pytest.approx(thr) and ok.get_y() + ok.get_height() == pytest.approx(hi)
        else:  # fails above the upper threshold
            assert fail.get_y() == pytest.approx(thr) and fail.get_y() + fail.get_height() == pytest.approx(hi)
            assert ok.get_y() + ok.get_height() == pytest.approx(thr)
        bodies = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bodies) == 2
        assert [b.get_gid() for b in bodies] == ["data", "generated"]
        n_data = int((data.obs["perturbation"] == PERT).sum())
        assert ax.get_xticklabels()[0].get_text().startswith(f"data\nn={n_data}")
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "data", "generated", "QC threshold (k = 3)", "passes", "fails"
    ]  # fmt: skip


def test_pass_percentage_under_each_violin(data, labelled_generated):
    fig = qc_violins(data, labelled_generated, perturbation=PERT, criteria=["total_counts"])
    (ax,) = _panels(fig)
    thr = _threshold(data, "total_counts")
    cells = data.obs[data.obs["perturbation"] == PERT]
    pct = 100.0 * (cells["total_counts"] >= thr).mean()
    assert f"{pct:.0f}% pass" in ax.get_xticklabels()[0].get_text()


@pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped:UserWarning")
def test_generated_metrics_computed_on_a_copy(data, generated):
    before = list(generated.obs.columns)
    fig = qc_violins(data, generated, perturbation=PERT, criteria=["mito"], run_scrublet=False)
    assert list(generated.obs.columns) == before  # caller's object untouched
    (ax,) = _panels(fig)
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2


def test_metrics_already_in_obs_are_used(data, labelled_generated):
    gen = labelled_generated.copy()
    gen.obs["total_counts"] = 1.0  # far below the data's lower threshold
    fig = qc_violins(data, gen, perturbation=PERT, criteria=["total_counts"])
    (ax,) = _panels(fig)
    assert "0% pass" in ax.get_xticklabels()[1].get_text()
    assert ax.get_ylim()[0] < 1.0


def test_doublet_score_mode_uses_each_sets_scrublet_threshold(data, labelled_generated):
    fig = qc_violins(data, labelled_generated, perturbation=PERT, criteria=["doublet"], doublet="score")
    (ax,) = _panels(fig)
    lines = _by_gid(ax, "threshold")
    cuts = [d.uns["qc"]["scrublet"]["threshold"]["all"] for d in (data, labelled_generated)]
    assert len(lines) == 2
    for line, cut, x in zip(lines, cuts, (1, 2), strict=True):
        np.testing.assert_allclose(line.get_ydata(), [cut, cut])
        assert min(line.get_xdata()) < x < max(line.get_xdata())
    assert len(_by_gid(ax, "fail_region")) == 2 and len(_by_gid(ax, "pass_region")) == 2
    assert ax.get_ylabel() == "doublet_score"
    # auto picks the score view when both sets have scores and one threshold each
    auto = _panels(qc_violins(data, labelled_generated, perturbation=PERT, criteria=["doublet"]))[0]
    assert auto.get_ylabel() == "doublet_score"


def test_doublet_fraction_mode_bars(data, labelled_generated):
    fig = qc_violins(data, labelled_generated, perturbation=PERT, criteria=["doublet"], doublet="fraction")
    (ax,) = _panels(fig)
    ok, bad = _by_gid(ax, "pass_region"), _by_gid(ax, "fail_region")
    assert len(ok) == len(bad) == 2
    for adata, p, b in zip((data, labelled_generated), ok, bad, strict=True):
        called = adata.obs.loc[adata.obs["perturbation"] == PERT, "predicted_doublet"].to_numpy(dtype=bool)
        assert b.get_height() == pytest.approx(100.0 * called.mean())
        assert p.get_height() + b.get_height() == pytest.approx(100.0)
    assert ax.get_ylim() == (0.0, 100.0)


def test_skipped_criteria_get_a_panel(data, generated):
    nohb = data[:, ~data.var_names.isin(HB_GENES)].copy()
    nohb.obs = nohb.obs[["perturbation"]].copy()
    del nohb.uns["qc"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        label_artifacts(nohb, run_scrublet=False)  # hb: no genes; doublet: no call
        gen = generated[:, ~generated.var_names.isin(HB_GENES)].copy()
        fig = qc_violins(nohb, gen, perturbation=PERT, run_scrublet=False)
    axes = _panels(fig)
    assert len(axes) == 6
    for ax, criterion in zip(axes, CRITERIA, strict=True):
        texts = " ".join(t.get_text() for t in ax.texts)
        if criterion in ("hb", "doublet"):
            assert "skipped" in texts
            assert not _by_gid(ax, "threshold") and not ax.collections
        else:
            assert "skipped" not in texts
            assert len(_by_gid(ax, "threshold")) == 1


def test_combination_label_in_either_order(data, labelled_generated):
    shared = set(data.obs["perturbation"]) & set(labelled_generated.obs["perturbation"])
    combo = sorted(p for p in shared if "+" in p)[0]
    a, b = combo.split("+")
    fig = qc_violins(data, labelled_generated, perturbation=f"{b}+{a}", criteria=["mito"])
    assert len([c for c in _panels(fig)[0].collections if isinstance(c, PolyCollection)]) == 2


def test_draws_into_given_axes(data, labelled_generated):
    from matplotlib.figure import Figure

    fig = Figure()
    axes = fig.subplots(1, 2)
    out = qc_violins(data, labelled_generated, perturbation=PERT, criteria=["total_counts", "mito"], axes=axes)
    assert out is fig
    assert [ax.get_title() for ax in axes] == ["UMI counts", "Mitochondrial %"]
    assert axes[-1].get_legend() is not None
    with pytest.raises(ValueError, match="expected 2"):
        qc_violins(data, labelled_generated, perturbation=PERT, criteria=["mito", "hb"], axes=axes[:1])


def test_empty_perturbation_errors(data, labelled_generated):
    with pytest.raises(EmptyPerturbationError, match="NOPE.*data and generated"):
        qc_violins(data, labelled_generated, perturbation="NOPE")
    gen = labelled_generated[labelled_generated.obs["perturbation"] != PERT].copy()
    with pytest.raises(EmptyPerturbationError, match="no cells in generated"):
        qc_violins(data, gen, perturbation=PERT)


def test_unlabelled_data_and_unknown_k(data, generated, labelled_generated):
    with pytest.raises(MissingKeyError, match="label_artifacts"):
        qc_violins(generated, generated, perturbation=PERT)  # generated carries no uns['qc']
    with pytest.raises(MissingKeyError, match="k=6"):
        qc_violins(data, labelled_generated, perturbation=PERT, k=6)
    with pytest.raises(ValueError, match="criteria"):
        qc_violins(data, labelled_generated, perturbation=PERT, criteria=["umi"])
    with pytest.raises(ValueError, match="doublet"):
        qc_violins(data, labelled_generated, perturbation=PERT, doublet="violin")
    assert set(METRIC_OF_CRITERION) == set(CRITERIA)
