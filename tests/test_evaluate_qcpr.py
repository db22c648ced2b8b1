"""QCPR: % of generated cells passing the REFERENCE data's stored thresholds, per k."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradlekit.errors import MissingKeyError
from cradlekit.evaluate import qc_pass_rate
from cradlekit.qc import label_artifacts

pytestmark = pytest.mark.filterwarnings("ignore:QC criterion 'doublet' skipped:UserWarning")


@pytest.fixture
def reference(make_qc_adata):
    ref = make_qc_adata(n_cells=300, seed=0)
    ref.obs["doublet_call"] = False  # the reference keeps the doublet criterion (not skipped)
    label_artifacts(ref, precomputed={"predicted_doublet": "doublet_call"}, run_scrublet=False)
    return ref


def crafted_generated(reference: ad.AnnData) -> ad.AnnData:
    """10 cells: 6 clean, 1 doublet, 1 failing only at k = 3, 2 failing at every k.

    Expected QCPR: k = 3: 6/10 = 60 %; k = 4, 5: 7/10 = 70 %.
    """
    thr = reference.uns["qc"]["thresholds"]
    names = list(reference.var_names)
    mt = [names.index(g) for g in ("MT-CO1", "MT-ND1", "MT-ATP6")]
    clean_rows = np.flatnonzero(reference.obs["artifact_k3"].to_numpy() == 0)[:8]  # pass at every k
    X = reference.X[clean_rows].toarray().astype(np.int64)
    # cell 7: add MT-CO1 counts so that % mito lies between the k = 3 and k = 4 upper thresholds
    hi3, hi4 = thr["k3"]["mito"]["upper"], thr["k4"]["mito"]["upper"]
    target = (hi3 + hi4) / 2
    total, mito = X[7].sum(), X[7, mt].sum()
    X[7, mt[0]] += int(np.ceil((target * total - 100 * mito) / (100 - target)))
    pct = 100 * X[7, mt].sum() / X[7].sum()
    assert hi3 < pct < hi4
    # cells 8, 9: every count in mitochondrial genes (100 % mito, 3 genes) / one count in total
    all_mito = np.zeros(len(names), dtype=np.int64)
    all_mito[mt] = [700, 200, 100]
    nearly_empty = np.zeros(len(names), dtype=np.int64)
    nearly_empty[names.index("GENE5")] = 1
    X = np.vstack([X, all_mito, nearly_empty])
    gen = ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), var=pd.DataFrame(index=names))
    gen.obs_names = [f"generated_{i}" for i in range(10)]
    gen.obs["perturbation"] = ["A"] * 5 + ["B"] * 5
    gen.obs["predicted_doublet"] = np.arange(10) == 6  # cell 6: a doublet (stands in for scrublet)
    return gen


def test_exactly_m_of_n_fail_per_k(reference):
    gen = crafted_generated(reference)
    before = gen.copy()
    qcpr = qc_pass_rate(gen, reference, run_scrublet=False)
    assert isinstance(qcpr, pd.Series) and qcpr.name == "qcpr"
    assert list(qcpr.index) == [3, 4, 5]
    np.testing.assert_allclose(qcpr.to_numpy(), [60.0, 70.0, 70.0])
    assert list(gen.obs.columns) == list(before.obs.columns)  # generated left unchanged
    assert "qc" not in gen.uns
    # stored uns['qc'] works as the reference too, and a subset of ks
    from_uns = qc_pass_rate(gen, reference.uns["qc"], ks=(4,), run_scrublet=False)
    assert from_uns.to_dict() == {4: 70.0}


def test_per_group_and_inplace(reference):
    gen = crafted_generated(reference)
    table = qc_pass_rate(gen, reference, run_scrublet=False, groupby="perturbation", inplace=True)
    # A: cells 0-4 all clean; B: cells 5 (clean), 6 (doublet), 7 (k3 only), 8, 9 (fail)
    expected = pd.DataFrame({3: [100.0, 20.0], 4: [100.0, 40.0], 5: [100.0, 40.0]}, index=["A", "B"])
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy())
    assert list(table.index) == ["A", "B"] and list(table.columns) == [3, 4, 5]
    assert gen.obs["artifact_k3"].tolist() == [0] * 6 + [1] * 4  # written in place
    assert gen.uns["qc"]["origin"] == "apply_thresholds"


def test_thresholds_come_from_reference_not_generated(reference, make_qc_adata):
    low_library = make_qc_adata(n_cells=100, seed=1, lib_scale=0.1)  # most cells below the data's UMI cut
    low_library.obs["predicted_doublet"] = False
    qcpr = qc_pass_rate(low_library, reference, run_scrublet=False)
    assert qcpr[3] < 20.0
    self_labelled = label_artifacts(low_library, run_scrublet=False, copy=True)
    assert 100 * (1 - self_labelled.obs["artifact_k3"].mean()) > 60.0


def two_states_with_doublets(names: list[str], seed: int = 5) -> tuple[ad.AnnData, np.ndarray]:
    """150 + 150 cells of two states (genes 13-72 or 73-132 up 8-fold) and 30 doublets, each the sum
    of one cell of each state: doublets scrublet can find. Returns the cells and the doublet truth."""
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.6, 1.0, size=len(names))
    mu[:3] *= 8.0  # mitochondrial
    mu[3:7] *= 6.0  # ribosomal
    mu[7:9] *= 0.05  # hemoglobin

    def state(genes: slice, n: int) -> np.ndarray:
        m = mu.copy()
        m[genes] *= 8.0
        lam = rng.lognormal(np.log(2000.0), 0.35, size=n)[:, None] * m / m.sum()
        return rng.negative_binomial(4, 4.0 / (4.0 + lam))

    a, b = state(slice(13, 73), 180), state(slice(73, 133), 180)
    X = np.vstack([a[:150], b[:150], a[150:] + b[150:]])
    gen = ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), var=pd.DataFrame(index=names))
    gen.obs_names = [f"generated_{i}" for i in range(X.shape[0])]
    return gen, np.r_[np.zeros(300, dtype=bool), np.ones(30, dtype=bool)]


def test_scrublet_on_generated_cells_and_a_hand_count(reference):
    """Scrublet runs on the generated cells and finds injected doublets; QCPR equals a hand count.

    Oracles: the injected doublet truth, and the five MAD criteria recomputed with numpy from the
    reference's stored thresholds (strict inequalities, as on the design page). Calling 30 of 330 cells at random
    would find ~3 of the 30 doublets (recall ~0.09), so recall >= 0.5 cannot come from chance.
    """
    names = list(reference.var_names)
    gen, truth = two_states_with_doublets(names)
    qcpr = qc_pass_rate(gen, reference, seed=0, inplace=True)
    assert gen.uns["qc"]["scrublet"]["ran"]
    called = gen.obs["predicted_doublet"].to_numpy().astype(bool)
    assert called[truth].mean() >= 0.5, called[truth].mean()  # measured: 28 of 30
    assert called[~truth].mean() <= 0.1, called[~truth].mean()

    X = gen.X.toarray()
    total, n_genes = X.sum(1), (X > 0).sum(1)
    pct = {group: 100 * X[:, [names.index(g) for g in genes]].sum(1) / total
           for group, genes in (("mito", ["MT-CO1", "MT-ND1", "MT-ATP6"]),
                                ("ribo", ["RPL13A", "RPS4X", "RPLP0", "RPS27A"]), ("hb", ["HBB", "HBA1"]))}
    thr = reference.uns["qc"]["thresholds"]
    for k in (3, 4, 5):
        t = thr[f"k{k}"]
        fails = (total < t["total_counts"]["lower"]) | (n_genes < t["n_genes"]["lower"]) | called
        for group in ("mito", "ribo", "hb"):
            fails |= pct[group] > t[group]["upper"]
        assert qcpr[k] == pytest.approx(100 * (1 - fails.mean()), abs=1e-9), k
        assert (gen.obs[f"artifact_k{k}"].to_numpy() == fails).all()
    assert qcpr[3] < qcpr[5] < 100 * (1 - called.mean()) + 1e-9  # MAD criteria matter, doublets fail at every k


def test_errors(reference):
    gen = crafted_generated(reference)
    with pytest.raises(MissingKeyError, match="k=\\['3.5'\\] not stored"):
        qc_pass_rate(gen, reference, ks=(3.5,), run_scrublet=False)
    with pytest.raises(MissingKeyError, match="groupby column 'cond'"):
        qc_pass_rate(gen, reference, groupby="cond", run_scrublet=False)
    unlabelled = ad.AnnData(X=np.ones((3, 2)))
    with pytest.raises(MissingKeyError):
        qc_pass_rate(gen, unlabelled, run_scrublet=False)


def test_data_pass_rates_same_basis_is_the_ceiling(make_qc_adata):
    """Labelled on its own genes, the data's QC-passed cells pass every criterion (100 %) under the
    thresholds QCPR applies; all cells pass at the labelled rate. Oracle: the label columns themselves."""
    from cradlekit.evaluate import data_pass_rates
    from cradlekit.qc import label_artifacts

    adata = make_qc_adata(n_cells=400, seed=3)
    label_artifacts(adata, ks=(3,), run_scrublet=False, precomputed={})
    rates = data_pass_rates(adata, 3)
    passed = rates.loc["QC-passed cells"].drop("doublet")  # doublet skipped: no calls
    assert np.allclose(passed.to_numpy(), 100.0)
    assert rates.loc["all cells", "all"] == pytest.approx(100 * (adata.obs["artifact_k3"] == 0).mean())
    assert rates.loc["all cells", "all"] < 100  # the synthetic data has failures


def test_data_pass_rates_on_the_panel_basis_can_fall_below_100(make_qc_adata):
    """Labelled with full-transcriptome metrics from obs, judged on the panel: a hand count of the panel
    thresholds on the panel metrics gives the same rate, and it is below 100 % for passed cells here."""
    from cradlekit.evaluate import data_pass_rates
    from cradlekit.qc import label_artifacts

    adata = make_qc_adata(n_cells=400, seed=4)
    rng = np.random.default_rng(0)
    X = np.asarray(adata.X.toarray())
    X[:30] //= 10  # 30 shallow cells on the panel...
    adata.X = sp.csr_matrix(X)
    adata.obs["full_counts"] = 5000 + rng.normal(0, 50, size=adata.n_obs)  # ...that are not shallow on the full basis
    adata.obs["full_genes"] = (X > 0).sum(1) + rng.integers(0, 100, size=adata.n_obs)
    label_artifacts(adata, ks=(3,), run_scrublet=False,
                    precomputed={"total_counts": "full_counts", "n_genes_by_counts": "full_genes"})
    rates = data_pass_rates(adata, 3)
    panel = adata.uns["qc"]["panel"]["thresholds"]["k3"]
    low = panel["total_counts"]["lower"]
    passed = adata.obs["artifact_k3"].to_numpy() == 0
    hand = 100 * (X[passed].sum(1) > low).mean()
    assert rates.loc["QC-passed cells", "total_counts"] == pytest.approx(hand)
    assert rates.loc["QC-passed cells", "total_counts"] < 100
