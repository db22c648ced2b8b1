"""ComparisonExplorer: generated and observed cells in one embedding and in scanpy's dot plot (issue 21, item 5)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import cradlekit as ck
from cradlekit.widgets import ComparisonExplorer
from cradlekit.widgets._messages import NO_MODEL

FAST = {"method": "tsne", "n": 30, "wait": True}


@pytest.fixture(scope="module")
def setup(single_thread):
    adata = ck.data.simulate_perturbseq(n_cells=500, n_genes=200, n_single=4, n_combinations=4, true_ate_cells=20,
                                        seed=1)  # fmt: skip
    ck.qc.label_artifacts(adata)
    ck.data.split_combinations(adata, seed=0)
    ck.data.counterfactual_references(adata)
    model = ck.PerturbationModel(adata, latent_dim=4, hidden_dim=8, num_particles=1)
    model.train(max_epochs=2, batch_size=128, progress_bar=False)
    return adata, model


def test_generated_and_observed_cells_in_one_embedding_and_a_dot_plot(setup):
    adata, model = setup
    perts = ["KLF1", "CEBPA"]
    ce = ComparisonExplorer(model, adata, perturbations=perts, n_genes=2, **FAST)
    assert ce.message == "" and not ce.busy
    obs = ce.cells.obs
    assert list(obs["perturbation"].cat.categories) == ["control", *perts]
    n_gen = obs[obs["origin"] == "generated"]["perturbation"].value_counts()
    assert (n_gen == 30).all()  # n generated cells of each, the control included
    observed = obs[obs["origin"] == "observed"]
    originals = observed.index.str.removeprefix("observed:")
    assert (adata.obs.loc[originals, "artifact_k3"] == 0).all()  # QC-passed observed cells only
    assert observed["perturbation"].value_counts().max() <= 30
    assert list(ce.embedding.index) == list(ce.cells.obs_names)  # every compared cell in one embedding
    # the top genes of each perturbation: largest |mean lognorm(perturbation) - mean lognorm(control)|, observed
    X = ce.cells.layers["lognorm"].toarray()
    ctrl = X[((obs["perturbation"] == "control") & (obs["origin"] == "observed")).to_numpy()].mean(axis=0)
    for p in perts:
        diff = X[((obs["perturbation"] == p) & (obs["origin"] == "observed")).to_numpy()].mean(axis=0) - ctrl
        assert set(ce.genes[p]) == set(ce.cells.var_names[np.argsort(-np.abs(diff))[:2]])
    # the numbers behind the dot plot and the library size the generated cells were drawn at
    summary = ce.tables()["top_genes"]
    assert summary.loc[("KLF1", ce.genes["KLF1"][0]), "generated cells"] == 30
    median = float(np.median(np.asarray(adata.X.sum(axis=1)).ravel()))
    assert f"library size {median:,.0f} (the data's median)" in ce.note
    assert -1 <= ce.agreement().dropna().min() and ce.agreement().dropna().max() <= 1
    fig = ce.static_figure()
    titles = " ".join(t.get_text() for ax in fig.axes for t in ax.texts) + " ".join(ax.get_title() for ax in fig.axes)
    assert "observed and generated cells, one embedding" in titles and "% of cells" in titles  # scanpy's dot plot
    markers = {c.get_gid() for ax in fig.axes for c in ax.collections}
    assert {"observed", "generated"} <= markers
    view = ce.view
    assert view.genes_image.widget.value[:4] == b"\x89PNG" and "library size" in view.note.value
    view.plot.value = "matrixplot"  # redraws only
    assert ce.plot == "matrixplot" and ce.cells is not None and not ce.busy


def test_construction_returns_at_once_and_can_be_cancelled(setup, monkeypatch):
    import cradlekit.widgets.comparison as comparison

    adata, model = setup
    gate = threading.Event()
    real = comparison.embed_cells
    monkeypatch.setattr(comparison, "embed_cells", lambda *a, **kw: gate.wait(60) and real(*a, **kw))
    ce = ComparisonExplorer(model, adata, method="tsne", n=10)
    assert ce.busy and "generated and observed cells" in ce.busy_title and ce.cells is None
    assert ce.perturbations == ce.default_perturbations() and 0 < len(ce.perturbations) <= 6
    held = set(map(str, adata.uns["split"]["heldout"]))
    assert ce.perturbations[0] in held  # held-out combinations first
    assert ce.cancel() and not ce.busy and "Cancelled" in ce.message
    gate.set()
    assert ce.wait_task(60) and ce.cells is None  # the cancelled result is thrown away
    ce.n = 12  # from code: computed inline
    assert ce.cells is not None and (ce.cells.obs["origin"] == "generated").sum() == 12 * (len(ce.perturbations) + 1)


def test_bad_input_is_a_message(setup):
    adata, model = setup
    ce = ComparisonExplorer(None, adata, **FAST)
    assert ce.message == NO_MODEL and ce.cells is None and ce.static_figure()
    ce = ComparisonExplorer(model, adata, perturbations=["KLF1+NOTAGENE"], **FAST)
    assert "cannot generate" in ce.message and ce.cells is None
    ce.perturbations = []
    assert ce.message.startswith("Nothing selected")
