"""The QC record: obs columns and ``uns['qc']`` written by label_artifacts and apply_thresholds."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import CRITERIA, QC_UNS_KEY, artifact_key, flag_key
from .._logging import logger
from ..errors import MissingKeyError
from .metrics import QCMetrics
from .thresholds import MAD_CRITERIA, SIDE, flag_table, k_label

__all__ = ["UNS_FORMAT_VERSION", "RULE", "read_qc_uns", "write_obs", "build_record"]

#: Version of the layout of ``uns['qc']``.
UNS_FORMAT_VERSION = 1
#: The decision rule, stored as text in ``uns['qc']['rule']``.
RULE = (
    "total_counts, n_genes fail if value < median - k*scale; mito, ribo, hb fail if "
    "value > median + k*scale (strict); scale = raw MAD, or the MAD of off-median cells "
    "when MAD == 0 and mad_zero_guard; doublet fails if predicted_doublet"
)
_FLAG_PREFIXES = tuple(flag_key(c, 1).removesuffix("1") for c in CRITERIA)  # "qc_fail_mito_k"
_ARTIFACT_PREFIX = artifact_key(1).removesuffix("1")  # "artifact_k"


def str_list(values: Iterable[str]) -> np.ndarray:
    """A list of strings that survives an h5ad round trip (object array, possibly empty)."""
    return np.array([str(v) for v in values], dtype=object)


def read_qc_uns(source: AnnData | Mapping) -> Mapping:
    """Return the QC record (``uns['qc']``) of an AnnData, or check a mapping that is one.

    Parameters
    ----------
    source
        A labelled AnnData, or its ``uns['qc']`` (also after an h5ad round trip).

    Returns
    -------
    Mapping
        The record, with at least ``ks``, ``thresholds`` and ``skipped``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        If the record is absent or incomplete.
    """
    if isinstance(source, AnnData):
        if QC_UNS_KEY not in source.uns:
            raise MissingKeyError(
                f"adata.uns[{QC_UNS_KEY!r}] not found: run cradlekit.qc.label_artifacts first"
            )
        source = source.uns[QC_UNS_KEY]
    if not isinstance(source, Mapping):
        raise TypeError(
            f"thresholds must be an AnnData or its uns[{QC_UNS_KEY!r}] mapping, "
            f"got {type(source).__name__}"
        )
    missing = [key for key in ("ks", "thresholds", "skipped") if key not in source]
    if missing:
        raise MissingKeyError(
            f"QC record lacks {missing}; expected the uns[{QC_UNS_KEY!r}] written by "
            "cradlekit.qc.label_artifacts"
        )
    for k in np.asarray(source["ks"]).ravel():
        label = k_label(float(k))
        if label not in source["thresholds"]:
            raise MissingKeyError(f"QC record lacks thresholds for {label!r}")
        for criterion in MAD_CRITERIA:
            per = source["thresholds"][label]
            if criterion not in per or SIDE[criterion] not in per[criterion]:
                raise MissingKeyError(
                    f"QC record lacks the {SIDE[criterion]!r} threshold of {criterion!r} at {label}"
                )
    return source


def plain(value):
    """Deep copy of a (possibly h5ad-read) record into plain dicts, floats and arrays."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_qc_label_column(name: str) -> bool:
    for prefix in (*_FLAG_PREFIXES, _ARTIFACT_PREFIX):
        if name.startswith(prefix) and re.fullmatch(r"\d+(p\d+)?", name[len(prefix) :]):
            return True
    return False


def write_obs(
    adata: AnnData,
    metrics: QCMetrics,
    doublets: pd.DataFrame | None,
    thresholds: dict,
    ks: tuple[float, ...],
) -> None:
    """Write metric columns, per-criterion flags and ``a_i`` for every ``k`` into ``adata.obs``.

    Flag and ``a_i`` columns left by an earlier run (any ``k``) are removed first, so that the
    columns present always come from the same run as ``uns['qc']``.
    """
    obs = adata.obs
    stale = [c for c in obs.columns if _is_qc_label_column(str(c))]
    if stale:
        logger.info(f"replacing {len(stale)} QC label columns from an earlier run")
        obs.drop(columns=stale, inplace=True)
    for column in metrics.table.columns:
        obs[column] = metrics.table[column].to_numpy()
    if doublets is not None:
        if "doublet_score" in doublets.columns:
            obs["doublet_score"] = doublets["doublet_score"].to_numpy(dtype=np.float64)
        obs["predicted_doublet"] = doublets["predicted_doublet"].to_numpy(dtype=bool)
        doublet_flags = doublets["predicted_doublet"].to_numpy(dtype=bool)
    else:
        doublet_flags = np.zeros(adata.n_obs, dtype=bool)
    flags = flag_table(metrics.table, thresholds, ks)
    for k in ks:
        any_fail = np.zeros(adata.n_obs, dtype=bool)
        for criterion in CRITERIA:
            f = doublet_flags if criterion == "doublet" else flags[(criterion, k_label(k))]
            obs[flag_key(criterion, k)] = f.copy()
            any_fail |= f
        obs[artifact_key(k)] = any_fail.astype(np.uint8)


def log_summary(adata: AnnData, ks: tuple[float, ...], what: str) -> None:
    """Log the number of artifact cells at each ``k``."""
    parts = []
    for k in ks:
        n = int(adata.obs[artifact_key(k)].sum())
        parts.append(f"k={k:g}: {n}/{adata.n_obs} ({100.0 * n / max(adata.n_obs, 1):.1f}%)")
    logger.info(f"{what}: artifact cells (a_i = 1) " + "; ".join(parts))


def build_record(
    *,
    origin: str,
    ks: tuple[float, ...],
    thresholds: dict,
    stats: dict,
    metrics: QCMetrics,
    gene_set_rules: Mapping[str, str],
    skipped: Iterable[str],
    scrublet: dict,
    counts: str,
    gene_symbols: str | None,
    n_cells: int,
    mad_zero_guard: bool,
) -> dict:
    """Assemble ``uns['qc']`` (h5ad-safe: no ``None``; NaN for missing numbers).

    See :func:`cradlekit.qc.label_artifacts` for the meaning of each field.
    """
    return {
        "format_version": UNS_FORMAT_VERSION,
        "origin": origin,
        "ks": np.asarray(ks, dtype=np.float64),
        "thresholds": thresholds,
        "stats": stats,
        "gene_sets": {
            c: {"n_genes": int(n), "rule": str(gene_set_rules[c])}
            for c, n in metrics.gene_set_sizes.items()
        },
        "skipped": str_list(skipped),
        "metric_source": dict(metrics.metric_source),
        "scrublet": scrublet,
        "counts": counts,
        "gene_symbols": gene_symbols or "var_names",
        "n_cells": int(n_cells),
        "mad_zero_guard": bool(mad_zero_guard),
        "rule": RULE,
    }
