"""The simulator's clean truth per cell and the rescue-vs-truth score (issue 19), each against an
independent numpy computation; the truth also against the simulated counts themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from cradlekit.data import simulate_perturbseq, true_clean_frequencies
from cradlekit.errors import MissingKeyError
from cradlekit.evaluate import rescue_truth_row, rescue_truth_scores
from cradlekit.evaluate.rescue_truth import profile_agreement


@pytest.fixture(scope="module")
def screen():
    return simulate_perturbseq(n_cells=1500, n_genes=150, true_ate_cells=20, seed=3)


def _truth_by_hand(adata, i):
    sim = adata.uns["simulation"]
    labels = list(np.asarray(sim["perturbations"]).astype(str))
    label = str(adata.obs["perturbation"].iloc[i])
    z = adata.obsm["true_basal"][i].astype(np.float64) + sim["perturbation_effects"][labels.index(label)]
    logits = np.array([sum(z[d] * sim["decoder_weight"][d, g] for d in range(z.size)) for g in range(adata.n_vars)])
    logits = logits + sim["gene_logit_baseline"]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_clean_truth_equals_an_independent_computation(screen):
    cells = [0, 7, 42, 1499]
    truth = true_clean_frequencies(screen, cells)
    for row, i in enumerate(cells):
        np.testing.assert_allclose(truth[row], _truth_by_hand(screen, i), rtol=1e-10)
    np.testing.assert_allclose(true_clean_frequencies(screen, screen.obs_names[cells]), truth)
    mask = np.zeros(screen.n_obs, dtype=bool)
    mask[cells] = True
    np.testing.assert_allclose(true_clean_frequencies(screen, mask), truth)
    genes = screen.var_names[::3]  # a gene subset is renormalised over its genes
    sub = true_clean_frequencies(screen[:, genes], cells)
    full = truth[:, ::3]
    np.testing.assert_allclose(sub, full / full.sum(1, keepdims=True), rtol=1e-10)


def test_clean_truth_is_what_the_counts_of_clean_cells_average_to(screen):
    clean = screen.obs["true_artifact_type"].astype(str).eq("none").to_numpy()
    truth = true_clean_frequencies(screen, clean)
    mu = truth * screen.obs["true_library_size"].to_numpy()[clean, None]  # each clean cell's expected counts
    theta = screen.var["true_inverse_dispersion"].to_numpy()
    expected, sd = mu.sum(0), np.sqrt((mu + mu**2 / theta).sum(0))  # negative-binomial sums
    observed = np.asarray(screen.X[clean].sum(0)).ravel()
    assert np.all(np.abs(observed - expected) < 4.5 * sd)
    assert observed.sum() / expected.sum() == pytest.approx(1.0, abs=0.01)
    # cell by cell: each clean cell's counts follow its own truth better than another cell's
    counts = screen.X[clean].toarray()
    own, _ = profile_agreement(counts, truth)
    other, _ = profile_agreement(counts, np.roll(truth, 1, axis=0))
    assert np.mean(own > other) > 0.9
    # a mitochondrial outlier's truth has the clean MT share; its counts do not
    mito = screen.obs["true_artifact_type"].astype(str).eq("high_mito").to_numpy()
    mt = screen.var["gene_class"].astype(str).eq("mt").to_numpy()
    counts = screen.X[mito].toarray()
    observed_share = counts[:, mt].sum(1) / counts.sum(1)
    truth_share = true_clean_frequencies(screen, mito)[:, mt].sum(1)
    assert np.median(observed_share / truth_share) > 1.5 and np.median(truth_share) < 0.08


def test_truth_needs_a_simulated_screen(screen):
    plain = AnnData(X=screen.X.copy(), obs=screen.obs.copy(), var=screen.var.copy())
    with pytest.raises(MissingKeyError, match="simulate_perturbseq"):
        true_clean_frequencies(plain)


def test_profile_agreement_equals_numpy_per_cell():
    rng = np.random.default_rng(0)
    a = rng.poisson(rng.gamma(1.0, 3.0, (6, 40))).astype(float)
    b = rng.dirichlet(np.ones(40), 6)
    a[5] = 0.0  # an empty profile: correlation undefined
    corr, rmse = profile_agreement(a, b)
    for i in range(6):
        ya = np.log2(1e4 * a[i] / max(a[i].sum(), 1) + 1)
        yb = np.log2(1e4 * b[i] / b[i].sum() + 1)
        assert rmse[i] == pytest.approx(np.sqrt(np.mean((ya - yb) ** 2)))
        if i < 5:
            assert corr[i] == pytest.approx(np.corrcoef(ya, yb)[0, 1])
    assert np.isnan(corr[5])


def test_rescue_truth_scores_and_row(screen):
    failed = np.flatnonzero(screen.obs["true_artifact"].to_numpy())[:60]
    names = screen.obs_names[failed]
    truth = true_clean_frequencies(screen, failed)
    expected = truth * 2000.0
    expected[::2] = screen.X[failed[::2]].toarray()  # half "rescued" perfectly, half left as observed
    rescued = AnnData(X=sp.csr_matrix(expected.astype(np.float32)),
                      obs=pd.DataFrame({"rescued_from": names}, index=[f"{n}-rescued" for n in names]),
                      var=pd.DataFrame(index=screen.var_names), layers={"expected": expected.astype(np.float32)})
    scores = rescue_truth_scores(rescued, screen)
    assert list(scores.index) == list(rescued.obs_names)
    assert (scores["artifact_type"].to_numpy() == screen.obs["true_artifact_type"].astype(str).to_numpy()[failed]).all()
    np.testing.assert_allclose(scores["truth_corr"].to_numpy()[1::2], 1.0, atol=1e-6)
    np.testing.assert_allclose(scores["truth_rmse"].to_numpy()[1::2], 0.0, atol=1e-4)
    np.testing.assert_allclose(scores["truth_corr"].to_numpy()[::2], scores["observed_truth_corr"].to_numpy()[::2],
                               rtol=1e-5)
    row = rescue_truth_row(scores)
    assert row["rescue_truth_n"] == 60
    for kind, group in scores.groupby("artifact_type"):
        assert row[f"rescue_truth_corr_{kind}"] == pytest.approx(group["truth_corr"].mean())
        assert row[f"observed_truth_rmse_{kind}"] == pytest.approx(group["observed_truth_rmse"].mean())
        assert row[f"rescue_truth_n_{kind}"] == len(group)
    with pytest.raises(KeyError, match="not in adata"):
        rescue_truth_scores(rescued, screen[:10])
