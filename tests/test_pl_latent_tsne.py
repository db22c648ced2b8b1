"""Figure 4 (cradlekit.pl.generated_tsne, embed_tsne) and the Norman pathway groups."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from cradlekit.data.simulate import simulate_perturbseq
from cradlekit.errors import MissingKeyError
from cradlekit.pl import NORMAN_PATHWAYS, embed_tsne, generated_tsne, norman_pathway_groups
from cradlekit.pl._style import ARTIFACT_COLORS, OTHER_COLOR

N_CELLS = 160


@pytest.fixture(scope="module")
def generated():
    """Generated-like cells: artifact-on cells are those with an injected artifact."""
    adata = simulate_perturbseq(n_cells=N_CELLS, n_genes=150, n_single=6, n_combinations=4, true_ate_cells=50, seed=2)
    adata.obs["generated_artifact"] = adata.obs["true_artifact"].to_numpy(dtype=bool)
    return adata


@pytest.fixture(scope="module")
def panels(generated):
    no_artifact = generated.copy()
    del no_artifact.obs["generated_artifact"]
    return {"CRADLE-VAE": generated, "CVAE": no_artifact, "SAMS-VAE": generated}


@pytest.fixture(scope="module")
def figure(panels):
    return generated_tsne(panels, top_n=3, perplexity=20)


def _points(ax):
    (scatter,) = ax.collections
    return scatter.get_offsets(), [to_hex(c) for c in scatter.get_facecolors()]


def test_embed_tsne_coordinates(generated):
    emb = embed_tsne(generated, n_pcs=10, perplexity=10, max_cells=80, seed=1)
    assert emb.shape == (80, 2) and list(emb.columns) == ["tsne1", "tsne2"]
    assert emb.index.isin(generated.obs_names).all() and emb.index.is_unique
    assert list(emb.index) == [n for n in generated.obs_names if n in set(emb.index)]  # adata order
    assert np.isfinite(emb.to_numpy()).all()
    again = embed_tsne(generated, n_pcs=10, perplexity=10, max_cells=80, seed=1)
    np.testing.assert_allclose(emb.to_numpy(), again.to_numpy())
    with pytest.raises(ValueError, match="at least 5"):
        embed_tsne(generated[:3])


def test_grid_titles_and_point_counts(figure, panels):
    axes = np.asarray(figure.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == list(panels)
    assert all(ax.get_title() == "" for ax in axes[1])
    assert axes[0, 0].get_ylabel() == "artifact" and axes[1, 0].get_ylabel() == "perturbation"
    for ax in axes.ravel():
        offsets, _ = _points(ax)
        assert len(offsets) == N_CELLS


def test_artifact_row_colours(figure, generated):
    axes = np.asarray(figure.axes).reshape(2, 3)
    n_on = int(generated.obs["generated_artifact"].sum())
    assert 0 < n_on < N_CELLS
    _, colors = _points(axes[0, 0])
    assert colors.count(ARTIFACT_COLORS["artifact on"]) == n_on
    assert colors.count(ARTIFACT_COLORS["artifact off"]) == N_CELLS - n_on
    _, colors = _points(axes[0, 1])  # model without artifact cells: one colour
    assert set(colors) == {ARTIFACT_COLORS["artifact off"]}
    assert any("no artifact" in t.get_text() for t in axes[0, 1].texts)
    legend = axes[0, -1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["artifact off", "artifact on"]


def test_group_row_top_n_legend_and_shared_colours(figure, generated):
    axes = np.asarray(figure.axes).reshape(2, 3)
    counts = generated.obs["perturbation"].astype(str).value_counts()
    top = sorted(counts.index, key=lambda p: (-counts[p], p))[:3]
    legend = axes[1, -1].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [*top, "other"]
    _, colors = _points(axes[1, 0])
    n_other = int((~generated.obs["perturbation"].astype(str).isin(top)).sum())
    assert colors.count(OTHER_COLOR) == n_other
    assert colors[:n_other] == [OTHER_COLOR] * n_other  # grey drawn first, underneath
    _, colors_sams = _points(axes[1, 2])
    assert sorted(colors) == sorted(colors_sams)  # same palette in every column
    assert axes[0, 0].get_legend() is None and axes[1, 0].get_legend() is None


def test_norman_groups_and_custom_mapping(generated):
    fig = generated_tsne({"m": generated}, color=["group"], groups="norman", perplexity=20)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "pathway"
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert labels <= {*NORMAN_PATHWAYS, "control", "other"}
    assert "control" in labels and "granulocyte/apoptosis" in labels
    fig = generated_tsne({"m": generated}, color=["group"], groups={"KLF1": "mine"}, perplexity=20)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert set(labels) == {"mine", "control", "other"}


def test_given_axes_and_errors(generated):
    fig = Figure()
    axes = fig.subplots(1, 2)
    out = generated_tsne({"a": generated, "b": generated}, color="artifact", axes=axes, max_cells=60, perplexity=10)
    assert out is fig
    assert [len(_points(ax)[0]) for ax in axes] == [60, 60]
    with pytest.raises(ValueError, match="expected 4"):
        generated_tsne({"a": generated, "b": generated}, axes=axes)
    with pytest.raises(ValueError, match="empty"):
        generated_tsne({})
    with pytest.raises(MissingKeyError, match="condition"):
        generated_tsne({"a": generated}, color=["group"], group_key="condition", max_cells=30, perplexity=5)


def test_norman_pathway_groups():
    assert set(NORMAN_PATHWAYS) == {
        "pro-growth", "megakaryocyte", "erythroid", "granulocyte/apoptosis", "G1 cell cycle", "pioneer factors"
    }  # fmt: skip
    every = [label for labels in NORMAN_PATHWAYS.values() for label in labels]
    assert len(every) == len(set(every))  # no perturbation in two groups
    assert all(label == "+".join(sorted(label.split("+"))) for label in every)  # canonical labels
    got = norman_pathway_groups(["KLF1", "ctrl+KLF1", "SAMD1+PTPN12", "control", "HK2", "CDKN1B+CDKN1C"])
    assert got == {
        "KLF1": "pro-growth", "ctrl+KLF1": "pro-growth", "SAMD1+PTPN12": "erythroid", "control": "control",
        "HK2": "other", "CDKN1B+CDKN1C": "G1 cell cycle",
    }  # fmt: skip


def test_norman_groups_of_local_subset(norman19_subset):
    groups = norman_pathway_groups(norman19_subset.obs["perturbation"].unique())
    assigned = {p: g for p, g in groups.items() if g not in ("other", "control")}
    assert assigned == {
        "BPGM+SAMD1": "erythroid", "CBL+CNN1": "erythroid", "PTPN12+PTPN9": "erythroid",
        "PTPN12+SAMD1": "erythroid", "CEBPE+RUNX1T1": "granulocyte/apoptosis", "KLF1": "pro-growth",
        "KLF1+MAP2K6": "pro-growth", "KLF1+TGFBR2": "pro-growth", "MAPK1": "megakaryocyte",
        "MAPK1+TGFBR2": "megakaryocyte", "MIDN": "pioneer factors",
    }  # fmt: skip
    assert list(groups.values()).count("other") == 22


@pytest.mark.filterwarnings("ignore:Observation names are not unique:UserWarning")
def test_concatenated_draws_with_duplicate_names(generated):
    """``anndata.concat`` of an artifact-off and an artifact-on draw repeats ``obs_names``."""
    import anndata as ad

    off, on = generated[:40].copy(), generated[:40].copy()
    off.obs["generated_artifact"], on.obs["generated_artifact"] = False, True
    both = ad.concat([off, on])
    assert not both.obs_names.is_unique
    fig = generated_tsne({"m": both}, color="artifact", perplexity=10)
    _, colors = _points(fig.axes[0])
    assert colors.count(ARTIFACT_COLORS["artifact on"]) == colors.count(ARTIFACT_COLORS["artifact off"]) == 40


def test_category_colors_stay_distinct_for_many_categories():
    """No two near-identical colours (CIELAB distance) among 30 or 50 categories, none grey, none near-white."""
    from matplotlib.colors import to_rgb

    from cradlekit.pl._style import OTHER_COLOR, _lab, category_colors

    for n in (9, 30, 50):
        colors = category_colors(n)
        assert len(set(colors)) == n and OTHER_COLOR not in colors
        lab = _lab(np.array([to_rgb(c) for c in colors]))
        dist = np.linalg.norm(lab[:, None] - lab[None], axis=2)[np.triu_indices(n, 1)]
        assert dist.min() > 20, (n, dist.min())  # scanpy's default_28 has two at ~10
        assert lab[:, 0].max() <= 80.5 and np.hypot(lab[:, 1], lab[:, 2]).min() > 25  # no pastel, no grey
    assert category_colors(12)[:5] == category_colors(40)[:5]  # stable when categories are added
