"""Warnings a biologist needs about a QC run: thresholds that cannot fail, metrics on a gene panel.

:func:`cannot_fail`
    A MAD threshold outside the range a metric can take (a lower threshold at or below 0 for
    counts or genes, an upper one at or above 100 % for a percentage) can never fail any cell,
    observed or generated: the criterion is switched off without anyone deciding so.
:func:`panel_warning`
    Library size, detected genes and %mito computed on a gene panel are not the full-transcriptome
    quantities the MAD rules were designed for: warn when the counts are a small panel or lack
    (most) mitochondrial genes and no full-transcriptome metrics were given.
:func:`doublet_panel_warning`
    scrublet scores cells on their highly variable genes: on a panel of a few hundred genes it may
    call few or no doublets whatever the truth; warn when it ran on such a panel.
:func:`describe_metric_sources`
    One line saying which metrics came from ``obs`` columns and which from the genes in the counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from .thresholds import MAD_CRITERIA, SIDE, k_label

__all__ = ["cannot_fail", "panel_warning", "doublet_panel_warning", "describe_metric_sources", "SMALL_PANEL_GENES",
           "MIN_MT_GENES"]

#: Fewer genes than this in the counts is treated as a panel (a full transcriptome has ~20,000).
SMALL_PANEL_GENES = 1000
#: The mitochondrial genome encodes 13 protein-coding genes; fewer ``MT-`` genes than this means
#: %mito is computed from a partial set.
MIN_MT_GENES = 10

#: The range each MAD criterion's metric can take.
_RANGE = {"total_counts": (0.0, np.inf), "n_genes": (0.0, np.inf), "mito": (0.0, 100.0),
          "ribo": (0.0, 100.0), "hb": (0.0, 100.0)}


def _warn(msg: str) -> None:
    warnings.warn(msg, UserWarning, stacklevel=4)


def cannot_fail(thresholds: dict, ks: tuple[float, ...], *, skipped=(), where: str = "") -> dict[str, list[str]]:
    """Criteria whose threshold no value of the metric can cross, per ``k``; warns when any.

    A cell fails a lower rule when its value is *below* the threshold, so a lower threshold at or
    below the metric's minimum (0) never fails; likewise an upper threshold at or above the
    maximum (100 %).

    Returns
    -------
    dict
        ``{k label: [criterion, ...]}`` for the ``k`` with such a criterion.
    """
    out: dict[str, list[str]] = {}
    details = []
    for k in ks:
        for criterion in MAD_CRITERIA:
            if criterion in skipped:
                continue
            side = SIDE[criterion]
            t = float(thresholds[k_label(k)][criterion][side])
            lo, hi = _RANGE[criterion]
            if (side == "lower" and t <= lo) or (side == "upper" and t >= hi):
                out.setdefault(k_label(k), []).append(criterion)
                details.append(f"{criterion} at k={k:g} (threshold {t:.4g}, {'below' if side == 'lower' else 'above'} "
                               f"every possible value)")
    if details:
        _warn(
            f"QC{where}: {len(details)} threshold(s) cannot fail any cell: {'; '.join(details)}. The MAD is large "
            "relative to the median (a skewed or mixed population, e.g. several batches or cell types): these "
            "criteria are in effect off. Consider a smaller k, batch_key= with batch_thresholds=True, or "
            "thresholds from a more homogeneous subset."
        )
    return out


def panel_warning(
    *, n_genes: int, n_mt_genes: int, metric_source: dict, whole_transcriptome: bool = False
) -> str | None:
    """Warn when QC metrics come from a gene panel instead of the full transcriptome.

    Parameters
    ----------
    n_genes
        Genes in the counts.
    n_mt_genes
        ``MT-`` genes among them.
    metric_source
        Where each metric came from (``obs[...]`` means given as precomputed).
    whole_transcriptome
        The counts are known to cover every gene (e.g. simulated data); only the MT check applies.

    Returns
    -------
    str or None
        The warning text, if one was issued.
    """
    computed = [m for m in ("total_counts", "n_genes_by_counts", "pct_counts_mt")
                if not str(metric_source.get(m, "")).startswith(("obs[", "skipped"))]
    if not computed:
        return None
    reasons = []
    if (
        n_genes < SMALL_PANEL_GENES
        and not whole_transcriptome
        and {"total_counts", "n_genes_by_counts"} & set(computed)
    ):
        reasons.append(f"the counts cover only {n_genes} genes (a panel, not a transcriptome)")
    if "pct_counts_mt" in computed and 0 < n_mt_genes < MIN_MT_GENES:  # none: skipped, warned elsewhere
        reasons.append(f"only {n_mt_genes} of the 13 mitochondrial genes are among them, so %mito is partial")
    if not reasons:
        return None
    msg = (
        f"QC metrics {computed} are computed from the genes in adata, but {' and '.join(reasons)}. Library size, "
        "detected genes and %mito on a panel differ from the full-transcriptome values the MAD rules are meant "
        "for. If your file has full-transcriptome metrics in obs, pass them: label_artifacts(adata, precomputed="
        "{'total_counts': ..., 'n_genes_by_counts': ..., 'pct_counts_mt': ...}) or cradlekit.data.setup(..., "
        "qc_metrics={...})."
    )
    _warn(msg)
    return msg


def doublet_panel_warning(
    *, n_genes: int, n_cells: int, scrublet: Mapping, whole_transcriptome: bool = False
) -> str | None:
    """Warn when scrublet called the doublets on a gene panel too small to support the calls.

    Parameters
    ----------
    n_genes, n_cells
        Genes and cells scrublet scored.
    scrublet
        The ``uns['qc']['scrublet']`` record (``source``, ``n_predicted``).
    whole_transcriptome
        The counts are known to cover every gene (e.g. simulated data).

    Returns
    -------
    str or None
        The warning text, if one was issued.
    """
    if str(scrublet.get("source", "")) != "scanpy.pp.scrublet" or n_genes >= SMALL_PANEL_GENES or whole_transcriptome:
        return None
    n = int(scrublet.get("n_predicted", 0))
    msg = (
        f"scrublet called {n} doublets ({100.0 * n / max(n_cells, 1):.1f}% of {n_cells} cells) on a panel of only "
        f"{n_genes} genes. It scores cells on their highly variable genes, and a panel this small may not "
        "support doublet calls (few or none whatever the true rate). Prefer doublet calls made on the full "
        "transcriptome (label_artifacts(..., precomputed={'predicted_doublet': column})), or read the doublet "
        "criterion as unreliable here."
    )
    _warn(msg)
    return msg


def describe_metric_sources(metric_source: Mapping, *, n_genes: int) -> str:
    """One line: which QC metrics came from ``obs`` columns, which from the ``n_genes`` genes of the counts.

    E.g. ``"QC metrics from obs: total_counts = obs['total_counts_full']; from the 299 genes in the
    counts: pct_counts_ribo, pct_counts_hb; skipped: pct_counts_mt"``.
    """
    sources = {str(m): str(src) for m, src in metric_source.items()}
    from_obs = [f"{m} = {src}" for m, src in sources.items() if src.startswith("obs[")]
    skipped = [m for m, src in sources.items() if src.startswith("skipped")]
    computed = [m for m, src in sources.items() if not src.startswith(("obs[", "skipped"))]
    parts = []
    if from_obs:
        parts.append("from obs: " + ", ".join(from_obs))
    if computed:
        parts.append(f"from the {n_genes} genes in the counts: " + ", ".join(computed))
    if skipped:
        parts.append("skipped: " + ", ".join(skipped))
    return ("QC metrics " + "; ".join(parts)) if parts else ""
