"""Label layouts of the published datasets: per-dataset obs normalisers, layout -> dataset-style labels.

A normaliser ``fn(obs, entry, **options) -> Labels`` reads ``obs`` the way the authors' code reads
that file (see the manifest's ``notes``) and returns one label per cell (targets of a
combination joined by ``sep``), the control label, and optionally a mask of cells to keep.
:func:`cradlekit.data.readers.standardize_dataset` then turns these labels into the canonical
``obs['perturbation']`` with :func:`~cradlekit.data.perturbations.standardize_perturbations`.
Normalisers are registered by name (the manifest's ``normalizer`` field); add your own with
:func:`register_normalizer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._keys import CONTROL_LABEL
from .._logging import logger
from ..errors import MissingKeyError
from .manifest import DatasetEntry

__all__ = ["Labels", "register_normalizer", "get_normalizer", "require_obs_columns"]


@dataclass
class Labels:
    """What a normaliser returns.

    Attributes
    ----------
    labels
        Dataset-style label per cell (index aligned with ``obs``); targets of a combination joined
        by ``sep``, controls ``control_label``.
    control_label, sep, extra_control_labels
        Passed to :func:`~cradlekit.data.perturbations.standardize_perturbations`.
    keep
        Boolean mask of cells to keep (``None``: all).
    info
        Facts recorded in ``uns['cradlekit']['dataset']`` (label source, cells dropped ...).
    """

    labels: pd.Series
    control_label: str
    sep: str = "+"
    extra_control_labels: tuple[str, ...] = ()
    keep: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


Normalizer = Callable[..., Labels]
_NORMALIZERS: dict[str, Normalizer] = {}


def register_normalizer(name: str) -> Callable[[Normalizer], Normalizer]:
    """Decorator registering ``fn(obs, entry, **options) -> Labels`` under ``name``."""

    def deco(fn: Normalizer) -> Normalizer:
        _NORMALIZERS[name] = fn
        return fn

    return deco


def get_normalizer(name: str) -> Normalizer:
    """The normaliser registered as ``name``; :class:`MissingKeyError` lists the known ones."""
    if name not in _NORMALIZERS:
        raise MissingKeyError(f"no obs normaliser named {name!r}; registered: {sorted(_NORMALIZERS)}")
    return _NORMALIZERS[name]


def require_obs_columns(obs: pd.DataFrame, columns: Sequence[str], entry: DatasetEntry) -> list[str]:
    """Return ``columns`` or raise :class:`MissingKeyError` naming the dataset and what is absent."""
    missing = [c for c in columns if c not in obs.columns]
    if missing:
        raise MissingKeyError(
            f"{entry.name}: column(s) {missing} not found in obs (available: {list(obs.columns)[:40]})"
        )
    return list(columns)



def _labels_from_indicators(indicators: np.ndarray, targets: Sequence[str], index: pd.Index) -> pd.Series:
    """Cells x targets boolean matrix -> 'A+B' labels ('control' for none), one pass per pattern."""
    patterns, inverse = np.unique(indicators, axis=0, return_inverse=True)
    names = np.array(
        ["+".join(t for t, on in zip(targets, row, strict=True) if on) or CONTROL_LABEL for row in patterns],
        dtype=object,
    )
    return pd.Series(names[np.asarray(inverse).ravel()], index=index)


def _indicator(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(dtype=float) > 0


@register_normalizer("canonical")
def _canonical(obs: pd.DataFrame, entry: DatasetEntry) -> Labels:
    """Labels already written as 'A+B' with literal control labels (PerturBench subset)."""
    key = require_obs_columns(obs, [entry.perturbation_key], entry)[0]
    controls = entry.control_labels or (CONTROL_LABEL,)
    return Labels(
        obs[key], control_label=controls[0], sep=entry.combo_sep or "+",
        extra_control_labels=tuple(controls[1:]), info={"label_source": f"obs[{key!r}]"},
    )


def _parse_norman_guide_identity(values: pd.Series, control: re.Pattern) -> pd.Series:
    """'KLF1_NegCtrl0__KLF1_NegCtrl0' -> 'KLF1'; 'A_B__A_B' -> 'A+B'; NegCtrl-only -> control."""
    mapping = {}
    for v in pd.unique(values.astype(str)):
        tokens = [t for t in v.split("__")[0].split("_") if t and not control.match(t)]
        mapping[v] = "+".join(sorted(set(tokens))) or CONTROL_LABEL
    return values.astype(str).map(mapping)


@register_normalizer("norman")
def _norman(obs: pd.DataFrame, entry: DatasetEntry, *, one_hot_prefix: str = "guide_") -> Labels:
    """Norman 2019: targets from the one-hot ``guide_<GENE>`` columns, as the authors' code does.

    No guide column set means control. Without one-hot columns the labels are parsed from
    ``guide_identity`` (NegCtrl<k> tokens are controls); with both, disagreements are logged.
    """
    control = re.compile(entry.control_pattern or r"^NegCtrl\d+$")
    cols = [c for c in obs.columns if str(c).startswith(one_hot_prefix) and c not in ("guide_identity", "guide_ids")]
    info: dict[str, Any] = {}
    if cols:
        ind = np.column_stack([_indicator(obs[c]) for c in cols])
        labels = _labels_from_indicators(ind, [c[len(one_hot_prefix):] for c in cols], obs.index)
        info["label_source"] = f"one-hot obs columns {one_hot_prefix}<GENE> ({len(cols)} targets)"
        if "guide_identity" in obs.columns:
            parsed = _parse_norman_guide_identity(obs["guide_identity"], control)
            canon = labels.map(lambda s: "+".join(sorted(s.split("+"))))
            n_bad = int((canon.to_numpy() != parsed.to_numpy()).sum())
            info["guide_identity_disagreements"] = n_bad
            if n_bad:
                logger.warning(
                    "%s: %d cells' guide_identity disagrees with the one-hot guide columns", entry.name, n_bad
                )
    elif "guide_identity" in obs.columns:
        labels = _parse_norman_guide_identity(obs["guide_identity"], control)
        info["label_source"] = "obs['guide_identity'] (no one-hot guide columns)"
    else:
        require_obs_columns(obs, ["guide_identity"], entry)
    return Labels(labels, control_label=CONTROL_LABEL, info=info)


_DIXIT_NOT_GUIDES = {
    "cluster", "combined_guides", "guide", "batch", "UMI_count", "ngenes", "n_genes_by_counts", "total_counts",
    "log1p_n_genes_by_counts", "log1p_total_counts", "total_counts_mt", "pct_counts_mt", "log1p_total_counts_mt",
    "total_counts_ribo", "pct_counts_ribo", "log1p_total_counts_ribo", "total_counts_hb", "pct_counts_hb",
    "log1p_total_counts_hb", "doublet_score", "predicted_doublet",
}


@register_normalizer("dixit")
def _dixit(
    obs: pd.DataFrame, entry: DatasetEntry, *, max_targets: int | None = 2, unassigned: str = "control"
) -> Labels:
    """Dixit 2016: one target per guide column; INTERGENIC guides and no guide are control.

    Reads the figshare layout (``sg<GENE>_<k>`` boolean columns) or the authors' preprocessed
    layout (one 0/1 column per gene, selected by the authors' rule). Cells with more than
    ``max_targets`` target genes are dropped (the authors keep <= 2). ``unassigned="drop"``
    drops cells without any detected guide instead of counting them as controls.
    """
    if unassigned not in ("control", "drop"):
        raise ValueError(f"unassigned must be 'control' or 'drop', got {unassigned!r}")
    guide_re = re.compile(r"^sg(?P<gene>.+)_\d+$")
    control = re.compile(entry.control_pattern or r"^INTERGENIC")
    columns = [str(c) for c in obs.columns]
    gene_of = {c: m["gene"] for c in columns if (m := guide_re.match(c))}
    layout = "figshare sg<GENE>_<k> guide columns"
    if not gene_of:
        layout = "authors' per-gene columns"
        gene_of = {
            c: c for c in columns
            if c not in _DIXIT_NOT_GUIDES and "INTERGENIC" not in c and "_" not in c and _is_binary(obs[c])
        }
    if not gene_of:
        raise MissingKeyError(f"{entry.name}: no guide indicator columns found in obs {columns[:40]}")
    genes = sorted(set(gene_of.values()))
    per_gene = np.zeros((len(obs), len(genes)), dtype=bool)
    for c, g in gene_of.items():
        per_gene[:, genes.index(g)] |= _indicator(obs[c])
    n_targets = per_gene.sum(axis=1)
    keep = np.ones(len(obs), dtype=bool) if max_targets is None else n_targets <= max_targets
    ctrl_cols = [c for c in columns if control.match(c)]
    has_control_guide = np.zeros(len(obs), dtype=bool)
    for c in ctrl_cols:
        has_control_guide |= _indicator(obs[c])
    no_guide = (n_targets == 0) & ~has_control_guide
    if unassigned == "drop":
        keep &= ~no_guide
    info = {
        "label_source": layout,
        "cells_dropped_too_many_targets": int((~keep & ~no_guide).sum()),
        "cells_without_guide": int(no_guide.sum()),
        "unassigned_cells": unassigned,
    }
    labels = _labels_from_indicators(per_gene, genes, obs.index)
    return Labels(labels, control_label=CONTROL_LABEL, keep=keep, info=info)


def _is_binary(values: pd.Series) -> bool:
    if values.dtype == bool:
        return True
    num = pd.to_numeric(values, errors="coerce")
    return bool(num.notna().all() and num.isin([0, 1]).all())


@register_normalizer("adamson")
def _adamson(obs: pd.DataFrame, entry: DatasetEntry) -> Labels:
    """Adamson 2016 (scPerturb): drop '*' and unlabelled cells; '(mod)' vectors are controls.

    Other labels keep the text before the first '_' (the target gene), as in the authors' code.
    Labels containing 'neg_ctrl' are also controls (none in experiment 10X010).
    """
    key = require_obs_columns(obs, [entry.perturbation_key], entry)[0]
    raw = obs[key]
    missing = raw.isna().to_numpy()
    star = (raw.astype(str) == "*").to_numpy()
    control = re.compile(entry.control_pattern or r"\(mod\)")
    mapping = {
        v: "non-targeting" if (control.search(v) or "neg_ctrl" in v.lower()) else v.split("_")[0]
        for v in pd.unique(raw[~(missing | star)].astype(str))
    }
    labels = raw.astype(str).map(mapping).fillna("non-targeting")
    info = {"label_source": f"obs[{key!r}] text before '_'", "cells_dropped_unlabelled": int(missing.sum()),
            "cells_dropped_star": int(star.sum())}
    return Labels(labels, control_label="non-targeting", keep=~(missing | star), info=info)


@register_normalizer("replogle")
def _replogle(
    obs: pd.DataFrame,
    entry: DatasetEntry,
    *,
    level: str = "guide_pair",
    n_control_cells: int | None = None,
    seed: int = 0,
) -> Labels:
    """Replogle 2022: controls are sgID_AB values containing 'non-targeting' (authors' rule).

    ``level="guide_pair"`` labels '<gene>_<transcript>' (one per sgRNA pair, matching the authors'
    sgID_AB encoding without its '+'/'|' characters); ``level="gene"`` labels the target gene.
    ``n_control_cells`` subsamples the non-targeting cells (seeded).
    """
    if level not in ("guide_pair", "gene"):
        raise ValueError(f"level must be 'guide_pair' or 'gene', got {level!r}")
    needed = ["gene", "sgID_AB"] + (["transcript"] if level == "guide_pair" else [])
    require_obs_columns(obs, needed, entry)
    pattern = entry.control_pattern or "non-targeting"
    is_control = obs["sgID_AB"].astype(str).str.contains(pattern, regex=True).to_numpy()
    labels = obs["gene"].astype(str)
    if level == "guide_pair":
        labels = labels + "_" + obs["transcript"].astype(str)
        n_pairs, n_labels = obs.loc[~is_control, "sgID_AB"].nunique(), labels[~is_control].nunique()
        if n_pairs != n_labels:
            logger.warning("%s: %d sgRNA pairs but %d gene_transcript labels", entry.name, n_pairs, n_labels)
    labels = labels.where(~is_control, "non-targeting")
    keep = np.ones(len(obs), dtype=bool)
    if n_control_cells is not None and is_control.sum() > n_control_cells:
        ctrl_idx = np.flatnonzero(is_control)
        drop = np.random.default_rng(seed).choice(ctrl_idx, size=len(ctrl_idx) - n_control_cells, replace=False)
        keep[drop] = False
    info = {
        "label_source": f"{level} level (controls: sgID_AB matches {pattern!r})",
        "control_cells_kept": int((keep & is_control).sum()),
    }
    return Labels(labels, control_label="non-targeting", keep=keep, info=info)
