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


def test_scrublet_runs_on_generated(reference, make_qc_adata):
    gen = make_qc_adata(n_cells=120, seed=3)
    qcpr = qc_pass_rate(gen, reference, ks=(5,), seed=0)
    labelled = gen.copy()
    from cradlekit.qc import apply_thresholds

    apply_thresholds(labelled, reference, ks=(5,), seed=0)
    assert labelled.uns["qc"]["scrublet"]["ran"]
    assert qcpr[5] == pytest.approx(100 * (1 - labelled.obs["artifact_k5"].mean()))


def test_errors(reference):
    gen = crafted_generated(reference)
    with pytest.raises(MissingKeyError, match="k=\\['3.5'\\] not stored"):
        qc_pass_rate(gen, reference, ks=(3.5,), run_scrublet=False)
    with pytest.raises(MissingKeyError, match="groupby column 'cond'"):
        qc_pass_rate(gen, reference, groupby="cond", run_scrublet=False)
    unlabelled = ad.AnnData(X=np.ones((3, 2)))
    with pytest.raises(MissingKeyError):
        qc_pass_rate(gen, unlabelled, run_scrublet=False)
