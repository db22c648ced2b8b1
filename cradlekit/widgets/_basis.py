"""The QC basis a widget shows, said in words: the data's own QC metrics, or the genes in the counts.

:func:`cradlekit.qc.label_artifacts` judges the data on its own metrics, which may come from ``obs``
columns (full-transcriptome library size, genes, %mito of a screen measured on a gene panel). When
they do, it also keeps thresholds recomputed on the genes in the counts (``uns['qc']['panel']``):
generated cells have only those genes, so they can only be judged on that basis
(:func:`cradlekit.qc.apply_thresholds` picks it). The widgets name the basis of every comparison
with these helpers and show the two side by side where they differ.

``"reference"``
    The data's QC labels: the metrics as :func:`~cradlekit.qc.label_artifacts` used them.
``"panel"``
    Metrics and thresholds recomputed on the genes in the counts (only when the labels used
    ``obs`` metrics).
"""

from __future__ import annotations

import re

import pandas as pd
from anndata import AnnData

from ..qc import read_qc_uns
from ..qc.checks import describe_metric_sources
from ..qc.metrics import compute_metrics

__all__ = ["BASES", "has_panel", "basis_name", "basis_sentence", "panel_metrics", "metric_label"]

BASES = ("reference", "panel")
_LAYER = re.compile(r"""^adata\.layers\[(['"])(.+)\1\]$""")


def has_panel(adata: AnnData) -> bool:
    """Whether the QC labels used ``obs`` metrics, so that a second (panel) basis exists."""
    return "panel" in adata.uns.get("qc", {})


def _from_obs(record) -> bool:
    return any(str(s).startswith("obs[") for s in dict(record.get("metric_source", {})).values())


def basis_name(adata: AnnData, basis: str) -> str:
    """A short name: ``"full-transcriptome metrics (obs)"``, ``"the 299-gene panel"`` or ``"the 2,000 genes"``."""
    record = read_qc_uns(adata)
    if basis == "panel":
        return f"the {adata.n_vars:,}-gene panel"
    return "the data's metrics from obs (full transcriptome)" if _from_obs(record) else f"the {adata.n_vars:,} genes"


def basis_sentence(adata: AnnData, basis: str) -> str:
    """One sentence naming the basis and where each of its metrics came from."""
    record = read_qc_uns(adata)
    n = adata.n_vars
    if basis == "panel":
        sources = describe_metric_sources(record["panel"]["metric_source"], n_genes=n)
        return (f"QC basis: the {n:,} genes in the counts (metrics and MAD thresholds recomputed on them; generated "
                f"cells have only these genes). {sources}.")  # fmt: skip
    sources = describe_metric_sources(record.get("metric_source", {}), n_genes=n)
    return f"QC basis: the data's QC labels. {sources}." if sources else "QC basis: the data's QC labels."


def panel_metrics(adata: AnnData) -> pd.DataFrame:
    """The QC metrics of every cell recomputed on the genes in the counts (the ``panel`` basis)."""
    record = read_qc_uns(adata)
    m = _LAYER.match(str(record.get("counts", "")))
    symbols = str(record.get("gene_symbols", "var_names"))
    gene_symbols = None if symbols == "var_names" else symbols
    return compute_metrics(adata, layer=m.group(2) if m else None, gene_symbols=gene_symbols,
                           precomputed=None, validate=False, warn_missing=False).table  # fmt: skip


def metric_label(metric: str, source: str) -> str:
    """Axis label of a metric with its source: ``total_counts = obs['total_counts_full']`` or ``... (299 genes)``."""
    source = str(source)
    if source.startswith("obs["):
        return f"{metric} = {source}"
    match = re.search(r"\((\d+) genes\)", source)
    genes = f"{int(match.group(1)):,} genes" if match else "the counts"
    if metric.startswith("pct_counts_"):
        inner = re.search(r"\((\d+ [^)]*)\)", source)
        genes = inner.group(1) if inner else genes
    return f"{metric} (from {genes})"

