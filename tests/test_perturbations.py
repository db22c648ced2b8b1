"""Perturbation labels: parsing, canonical form, standardisation, dosages and the errors they raise."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cradlekit.data.perturbations import (
    canonical_label,
    dosage_matrix,
    is_combination,
    parse_perturbation,
    perturbation_info,
    perturbation_targets,
    require_perturbations,
    standardize_perturbations,
)
from cradlekit.errors import EmptyPerturbationError, MissingKeyError, UnknownControlError


def _adata(labels, key="guide") -> ad.AnnData:
    obs = pd.DataFrame({key: labels}, index=[f"c{i}" for i in range(len(labels))])
    return ad.AnnData(X=np.ones((len(labels), 3), np.float32), obs=obs)


@pytest.mark.parametrize(
    "label, expected",
    [("KLF1", ("KLF1",)), ("B+A", ("A", "B")), ("A+B", ("A", "B")), ("control", ()), ("A+control", ("A",)),
     (" A + B ", ("A", "B")), ("A+A", ("A",))],
)
def test_parse_perturbation(label, expected):
    assert parse_perturbation(label) == expected


def test_parse_with_other_separator_and_control():
    assert parse_perturbation("B_A", sep="_") == ("A", "B")
    assert parse_perturbation("ctrl", control_label="ctrl") == ()


def test_canonical_label_round_trip():
    assert canonical_label(["SET", "KLF1"]) == "KLF1+SET"
    assert canonical_label([]) == "control" and canonical_label([], control_label="NT") == "NT"
    for label in ["KLF1", "CBL+CNN1", "control"]:
        assert canonical_label(parse_perturbation(label)) == label


@pytest.mark.parametrize(
    "labels, sep, control, extra",
    [
        (["non-targeting", "SET_KLF1", "KLF1_SET", "FOXO4"], "_", "non-targeting", ()),
        (["NT", "SET|KLF1", "KLF1|SET", "FOXO4"], "|", "NT", ()),
        (["ctrl", "SET+KLF1", "KLF1+SET", "FOXO4+ctrl"], "+", "ctrl", ()),
        (["control", "SET+KLF1", "KLF1+SET", "FOXO4+NT"], "+", "control", ("NT",)),
    ],
)
def test_standardize_separators_and_controls(labels, sep, control, extra):
    adata = _adata(labels)
    out = standardize_perturbations(
        adata, perturbation_key="guide", control_label=control, sep=sep, extra_control_labels=extra
    )
    assert out is adata
    assert list(adata.obs["perturbation"]) == ["control", "KLF1+SET", "KLF1+SET", "FOXO4"]
    assert list(adata.obs["guide"]) == labels  # original column untouched
    assert adata.uns["cradlekit"] == {"perturbation_key": "perturbation", "control_label": "control", "combo_sep": "+"}


def test_standardize_errors():
    with pytest.raises(UnknownControlError, match="'control'"):
        standardize_perturbations(_adata(["A", "B"]), perturbation_key="guide", control_label="control")
    with pytest.raises(MissingKeyError, match="condition"):
        standardize_perturbations(_adata(["A", "control"]), perturbation_key="condition", control_label="control")
    with pytest.raises(MissingKeyError, match="no label"):  # NaN must not become a perturbation 'nan'
        standardize_perturbations(_adata(["A", None, "control"]), perturbation_key="guide", control_label="control")


def test_perturbation_info_and_require():
    adata = _adata(["control", "A", "A+B"])
    with pytest.raises(MissingKeyError, match="standardize_perturbations"):
        perturbation_info(adata)
    standardize_perturbations(adata, perturbation_key="guide", control_label="control")
    assert perturbation_info(adata) == ("perturbation", "control")
    require_perturbations(adata, ["A", "A+B"])
    with pytest.raises(EmptyPerturbationError, match="'B'"):
        require_perturbations(adata, ["A", "B"])


def test_targets_and_combinations():
    labels = ["control", "B", "A+B", "C+A"]
    assert perturbation_targets(labels) == ["A", "B", "C"]
    np.testing.assert_array_equal(is_combination(labels), [False, False, True, True])
    assert (
        is_combination("KLF1+MAP2K6") is True and is_combination("KLF1") is False and is_combination("control") is False
    )


def test_dosage_matrix():
    adata = _adata(["control", "B", "B+A", "A", "control"])
    standardize_perturbations(adata, perturbation_key="guide", control_label="control")
    D, targets = dosage_matrix(adata)
    assert targets == ["A", "B"] and D.dtype == np.float32
    np.testing.assert_array_equal(D, [[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]])
    S, _ = dosage_matrix(adata, sparse=True, targets=["B", "A", "Z"])
    assert sp.issparse(S) and S.shape == (5, 3)
    np.testing.assert_array_equal(S.toarray()[:, 2], 0)  # listed but unseen target: zero column
    np.testing.assert_array_equal(S.toarray()[:, :2], D[:, ::-1])
    with pytest.raises(MissingKeyError, match="'B'"):
        dosage_matrix(adata, targets=["A"])
