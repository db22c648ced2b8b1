"""Tables of a :class:`~cradlekit.widgets.QCExplorer`: pass rates per group, notes on thresholds."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["group_pass_table", "threshold_note", "references_note", "categorical_columns", "is_categorical"]

#: Most distinct values of a column that is offered for grouping (a per-group table longer than this
#: is not read) and most distinct integers still taken as categories (batch 1, 2, 3...).
MAX_GROUPS = 500
MAX_INTEGER_CATEGORIES = 30


def group_pass_table(
    adata: AnnData, failed: Mapping[str, np.ndarray], any_fail: np.ndarray, *, by: str, sort_by: str = "pass %",
    ascending: bool = True,
) -> pd.DataFrame:
    """Per group of ``obs[by]``: cells, % passing every criterion, % failing each criterion, the top failing one.

    Parameters
    ----------
    adata
        The cells (``obs[by]`` holds the groups).
    failed
        ``{criterion: boolean array}`` of cells failing each criterion.
    any_fail
        Cells failing any criterion.
    by
        ``obs`` column (``"perturbation"``, ``"split"``...).
    sort_by, ascending
        Column to sort on (``"pass %"``, ``"cells"``, ``"<criterion> fail %"``, or the group name: ``by``).

    Returns
    -------
    pandas.DataFrame
        Indexed by group; columns ``cells``, ``pass %``, ``<criterion> fail %`` for each criterion,
        ``most failed`` (the criterion failed by most cells of the group; ``—`` when none fails).
    """
    if by not in adata.obs.columns:
        raise ValueError(f"adata.obs[{by!r}] not found: pass rates per {by} need that column")
    groups = adata.obs[by].astype(str).to_numpy()
    frame = pd.DataFrame({f"{c} fail %": np.asarray(f, dtype=float) for c, f in failed.items()})
    frame["pass %"] = 1.0 - np.asarray(any_fail, dtype=float)
    frame["cells"] = 1.0
    grouped = frame.groupby(groups, sort=True)
    table = 100.0 * grouped.mean()
    table["cells"] = grouped["cells"].sum().astype(int)
    crit_cols = [f"{c} fail %" for c in failed]
    top = table[crit_cols].idxmax(axis=1).str.replace(" fail %", "", regex=False)
    table["most failed"] = np.where(table[crit_cols].max(axis=1) > 0, top, "—")
    table = table[["cells", "pass %", *crit_cols, "most failed"]]
    table.index.name = by
    if sort_by == by:
        return table.sort_index(ascending=ascending)
    if sort_by not in table.columns:
        raise ValueError(f"sort_by must be {by!r} or one of {list(table.columns)}, got {sort_by!r}")
    return table.sort_values(sort_by, ascending=ascending, kind="stable")


def is_categorical(values: pd.Series) -> bool:
    """Categorical, string, boolean, or integer with at most :data:`MAX_INTEGER_CATEGORIES` distinct values."""
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return True
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return True
    if pd.api.types.is_integer_dtype(dtype):
        return values.nunique() <= MAX_INTEGER_CATEGORIES
    return False


def categorical_columns(obs: pd.DataFrame) -> list[str]:
    """``obs`` columns that group cells (see :func:`is_categorical`) into 2 to :data:`MAX_GROUPS` groups.

    The split and perturbation come first when present; QC flag columns (``qc_fail_*``) last.
    """
    found = [str(c) for c in obs.columns if is_categorical(obs[c]) and 2 <= obs[c].nunique() <= MAX_GROUPS]
    first = [c for c in ("perturbation", "split") if c in found]
    flags = [c for c in found if c.startswith("qc_fail_")]
    return first + [c for c in found if c not in first and c not in flags] + flags


def threshold_note(criterion: str, threshold: float, side: str) -> str:
    """Why a threshold cannot reject any cell at this ``k`` (``""`` when it can)."""
    if not np.isfinite(threshold):
        return ""
    if side == "lower" and threshold <= 0:
        return "below 0: no cell can fail (median − k·MAD < 0)"
    if side == "upper" and criterion in ("mito", "ribo", "hb") and threshold >= 100:
        return "above 100 %: no cell can fail"
    return ""


def references_note(adata: AnnData, key: str) -> str:
    """A sentence when ``adata``'s counterfactual references were built from other labels than ``key``."""
    info = adata.uns.get("cf_reference")
    if not info or str(info.get("artifact_key", key)) == key:
        return ""
    built = str(info["artifact_key"])
    return (f"The counterfactual references (layers['cf_reference']) were built from obs[{built!r}]: rebuild them "
            f"with cradlekit.data.counterfactual_references(adata, artifact_key={key!r}) before training CRADLE-VAE "
            f"with these labels.")  # fmt: skip
