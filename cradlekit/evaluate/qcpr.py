"""QC pass rate (QCPR) of generated cells under the **data's** stored thresholds (paper Table 2, SPEC §4).

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

from .._keys import QC_KS, artifact_key
from .._validation import check_obs_key
from ..qc import apply_thresholds, pass_rate

__all__ = ["qc_pass_rate"]


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
        return pd.Series([100.0 * pass_rate(labelled, k) for k in ks], index=index, name="qcpr")
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
