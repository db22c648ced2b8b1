"""QC pass rate (QCPR) of generated cells under the **data's** stored thresholds (paper Table 2; design page,
"Metrics").

QCPR at MAD multiple ``k`` = 100 × (generated cells passing every QC criterion) / (generated cells).
The five MAD criteria use the thresholds stored in the reference data by
:func:`cradlekit.qc.label_artifacts` (never thresholds recomputed on the generated cells), with the
same one-sided strict rules; the doublet criterion runs scrublet on the generated cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import CRITERIA, QC_KS, artifact_key, flag_key
from .._validation import check_obs_key
from ..qc import apply_thresholds, pass_fraction

__all__ = ["qc_pass_rate", "criterion_pass_rates", "data_pass_rates"]


def criterion_pass_rates(labelled: AnnData, k: float) -> pd.Series:
    """Percentage of cells passing each QC criterion at ``k``, and all of them (``"all"``).

    Parameters
    ----------
    labelled
        Cells labelled by :func:`cradlekit.qc.label_artifacts` or :func:`cradlekit.qc.apply_thresholds`
        (e.g. generated cells, or the data on the generated cells' basis, :func:`data_pass_rates`).
    k
        MAD multiple.

    Returns
    -------
    pandas.Series
        Indexed by criterion (``total_counts``, ``n_genes``, ``mito``, ``ribo``, ``hb``,
        ``doublet``) then ``all``; a criterion that was skipped (no flag column) is NaN.
    """
    out = {}
    for criterion in CRITERIA:
        col = flag_key(criterion, k)
        out[criterion] = (
            100.0 * (1.0 - float(np.asarray(labelled.obs[col], dtype=np.float64).mean()))
            if col in labelled.obs and labelled.n_obs else np.nan
        )
    out["all"] = 100.0 * pass_fraction(labelled, k)
    return pd.Series(out, name=f"pass_rate_k{_k_value(k)}")


def data_pass_rates(
    reference: AnnData, k: float, *, layer: str | None = None, artifact_key_: str | None = None
) -> pd.DataFrame:
    """Per-criterion pass rates of the data's own cells under the thresholds QCPR applies.

    QCPR judges generated cells on the modelled genes (the *panel* basis when the data were
    labelled with full-transcriptome metrics from ``obs``). This applies the same thresholds to the
    data's cells on the same genes, with the data's own doublet calls, so a generated cell's rate
    can be read beside the data's: ``all cells`` and ``QC-passed cells`` (``artifact_k<k> == 0``,
    labelled on the data's own basis). QC-passed cells score below 100 % here exactly when the
    panel metrics disagree with the full-transcriptome ones the labels used.

    Returns
    -------
    pandas.DataFrame
        Rows ``all cells`` and ``QC-passed cells``, columns as :func:`criterion_pass_rates`.
    """
    cols = [c for c in ("predicted_doublet",) if c in reference.obs]
    data = AnnData(X=reference.layers[layer] if layer else reference.X, obs=reference.obs[cols].copy(),
                   var=pd.DataFrame(index=reference.var_names))
    labelled = apply_thresholds(data, reference, ks=[k], run_scrublet=False, copy=True)
    passed = np.asarray(reference.obs[artifact_key_ or artifact_key(k)], dtype=np.int64) == 0
    rows = {
        "all cells": criterion_pass_rates(labelled, k),
        "QC-passed cells": criterion_pass_rates(labelled[passed], k),
    }
    return pd.DataFrame(rows).T


def qc_pass_rate(
    generated: AnnData,
    reference: AnnData | Mapping,
    *,
    ks: Iterable[float] = QC_KS,
    run_scrublet: bool = True,
    seed: int = 0,
    layer: str | None = None,
    groupby: str | None = None,
    inplace: bool = False,
) -> pd.Series | pd.DataFrame:
    """Percentage of generated cells that pass the reference data's QC thresholds, per ``k``.

    Parameters
    ----------
    generated
        Generated cells × genes of integer counts (e.g. ``model.generate(n=100)``: 100 cells per
        perturbation, artifact off, library size ``1e4``), gene symbols in ``var_names``.
    reference
        The data labelled by :func:`cradlekit.qc.label_artifacts`, or its ``uns['qc']``.
        If the reference skipped a criterion (e.g. the doublet call), it is skipped here too.
    ks
        MAD multiples (each must be stored in the reference).
    run_scrublet
        Call doublets among the generated cells with scrublet (seeded). ``False``: use
        ``generated.obs['predicted_doublet']`` if present, else skip the doublet criterion
        (with a warning).
    seed
        scrublet's ``random_state``.
    layer
        Layer of ``generated`` with the counts; ``None`` uses ``X``.
    groupby
        ``obs`` column (e.g. ``"perturbation"``): also report the QCPR of each group.
    inplace
        Write the QC columns of :func:`cradlekit.qc.apply_thresholds` into ``generated``;
        by default a copy is labelled and ``generated`` is left unchanged.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        Without ``groupby``: QCPR in percent (0-100) indexed by ``k`` (name ``"qcpr"``).
        With ``groupby``: one row per group, one column per ``k``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        No QC record in the reference, a ``k`` it does not store, a missing layer or column.
    cradlekit.errors.InvalidCountsError
        Generated values that are not non-negative integer counts.
    """
    ks = tuple(ks)
    if groupby is not None:
        check_obs_key(generated, groupby, what="groupby column")
    labelled = apply_thresholds(
        generated, reference, ks=ks, layer=layer, run_scrublet=run_scrublet, seed=seed, copy=not inplace
    )
    labelled = generated if inplace else labelled
    index = pd.Index([_k_value(k) for k in ks], name="k")
    if groupby is None:
        return pd.Series([100.0 * pass_fraction(labelled, k) for k in ks], index=index, name="qcpr")
    columns = {}
    for k, label in zip(ks, index, strict=True):  # a few ks; cells are grouped by pandas
        passed = 1.0 - np.asarray(labelled.obs[artifact_key(k)], dtype=np.float64)
        columns[label] = 100.0 * pd.Series(passed, index=labelled.obs_names).groupby(
            labelled.obs[groupby].to_numpy(), sort=True
        ).mean()
    table = pd.DataFrame(columns)
    table.columns.name = "k"
    table.index.name = groupby
    return table


def _k_value(k: float) -> int | float:
    k = float(k)
    return int(k) if k.is_integer() else k
