"""Labels that are not what they seem (issue 20, item 6): an empty member ('+', 'A+', '+B', 'A++B') is
refused instead of becoming the control or a single; labels that look missing ('nan', 'None') or that
differ from the control only in case ('Control') are warned about (they stay targets)."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradlekit import errors
from cradlekit.data import canonicalize_labels, parse_perturbation, setup


def _screen(labels) -> ad.AnnData:
    obs = pd.DataFrame({"guide": labels}, index=[f"c{i}" for i in range(len(labels))])
    X = np.random.default_rng(0).poisson(2.0, (len(labels), 6)).astype(np.float32)
    return ad.AnnData(X, obs=obs)


@pytest.mark.parametrize("bad", ["+", "A+", "+B", "A++B", " + "])
def test_a_label_with_an_empty_member_is_refused(bad):
    labels = ["control"] * 3 + ["A"] * 3 + ["A+B"] * 2 + [bad] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused, not repaired with a warning
        with pytest.raises(ValueError) as err:
            canonicalize_labels(pd.Series(labels), control_label="control", what="adata.obs['guide']")
    assert isinstance(err.value, errors.InvalidLabelError)
    message = str(err.value)
    assert "2 of 10 cells" in message and repr(bad) in message and "empty member" in message
    with pytest.raises(errors.InvalidLabelError):
        parse_perturbation(bad)


def test_setup_refuses_a_plus_instead_of_making_it_the_control():
    adata = _screen(["NT"] * 5 + ["A"] * 5 + ["+"] * 3)
    with pytest.raises(errors.InvalidLabelError, match="3 of 13 cells"):
        setup(adata, perturbation_key="guide", control_label="NT")
    assert "perturbation" not in adata.obs  # nothing written


@pytest.mark.parametrize("missing", ["nan", "NaN", "None", "NA"])
def test_labels_that_look_missing_are_warned_about(missing):
    adata = _screen(["NT"] * 5 + ["A"] * 5 + [missing] * 4)
    with pytest.warns(UserWarning, match="look like a missing value") as record:
        setup(adata, perturbation_key="guide", control_label="NT")
    (warning,) = [w for w in record if "missing value" in str(w.message)]
    assert "4 cells" in str(warning.message) and repr(missing) in str(warning.message)
    assert (adata.obs["perturbation"] == missing).sum() == 4  # still a target: a warning, not a change


def test_a_label_that_differs_from_the_control_only_in_case_is_warned_about():
    adata = _screen(["control"] * 5 + ["Control"] * 3 + ["A"] * 4 + ["A+CONTROL"] * 2)
    with pytest.warns(UserWarning, match="only in case") as record:
        setup(adata, perturbation_key="guide", control_label="control")
    (warning,) = [w for w in record if "only in case" in str(w.message)]
    message = str(warning.message)
    assert "5 cells" in message and "'Control' ~ 'control'" in message
    assert "extra_control_labels=['CONTROL', 'Control']" in message  # the way on
    assert (adata.obs["perturbation"] == "Control").sum() == 3  # still a target, as the warning says
    again = _screen(["control"] * 5 + ["Control"] * 3 + ["A"] * 4 + ["A+CONTROL"] * 2)
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        setup(again, perturbation_key="guide", control_label="control", extra_control_labels=["Control", "CONTROL"])
    assert not [w for w in quiet if "only in case" in str(w.message)]  # followed: no warning, controls
    assert (again.obs["perturbation"] == "control").sum() == 8


def test_ordinary_labels_raise_no_label_warning():
    adata = _screen(["NT"] * 5 + ["A"] * 5 + ["B+A"] * 3 + ["NANOG"] * 2)  # NANOG is a gene, not 'nan'
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        setup(adata, perturbation_key="guide", control_label="NT")
    assert not [w for w in record if "missing value" in str(w.message) or "only in case" in str(w.message)]
