"""Per-criterion against single-``u`` CRADLE-VAE in a grid's finished runs (issue 19, book chapter 9).

The converged configs pair each per-criterion variant with the single-``u`` model of the same
objective (:data:`PAIRS`). :func:`artifact_comparison` reads the paired differences over splits of
the metrics that decide it (:data:`METRICS`): rescued profiles against the clean truth (simulator),
held-out ATE-ρ against the truth and the data, and QCPR per criterion.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .paired import paired_comparison
from .report_tables import summary_table

__all__ = ["PAIRS", "METRICS", "RESCUE_TYPES", "artifact_pairs", "artifact_comparison", "rescue_truth_table",
           "criterion_qcpr_table"]

#: (per-criterion variant, the single-u model it is compared with) in the converged configs.
PAIRS = (("cradle_per_criterion", "cradle"), ("cradle_unweighted_per_criterion", "cradle_unweighted"))
#: QC criteria of the QCPR columns.
_CRITERIA = ("total_counts", "n_genes", "mito", "ribo", "hb", "doublet")
#: Simulated artifact types of the rescue-vs-truth columns.
RESCUE_TYPES = ("low_umi", "high_mito", "high_ribo", "high_hb", "doublet", "none")
#: The metrics of the comparison (those a grid's rows have are used; higher is better for each).
METRICS = ("rescue_truth_corr", *(f"rescue_truth_corr_{t}" for t in RESCUE_TYPES), "heldout_true_ate_pearson",
           "heldout_ate_pearson", "qcpr", *(f"qcpr_{c}" for c in _CRITERIA))


def artifact_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The :data:`PAIRS` whose two models both have runs."""
    present = set(runs["model"]) if len(runs) else set()
    return [(a, b) for a, b in PAIRS if a in present and b in present]


def artifact_comparison(runs: pd.DataFrame, *, k: float = 3, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Paired differences (per-criterion − single ``u``) over splits, for each pair with runs.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`~cradlekit.experiments.paired.paired_comparison` (``reference`` the
        per-criterion variant, ``other`` its single-``u`` model) for the metrics the runs have;
        empty when no pair has runs.
    """
    frames = []
    for per_criterion, single in artifact_pairs(runs):
        have = [m for m in metrics if m in runs and runs.loc[runs["model"] == per_criterion, m].notna().any()]
        if have:
            frames.append(paired_comparison(runs, per_criterion, [single], have, k=k))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def rescue_truth_table(runs: pd.DataFrame, models: Sequence[str], labels: dict[str, str]) -> pd.DataFrame:
    """Mean ± sd over splits of the rescued profiles' correlation with the clean truth, per artifact type,
    with the observed cells' own correlation as the last row ("before rescue")."""
    columns = [c for c in ("rescue_truth_corr", *(f"rescue_truth_corr_{t}" for t in RESCUE_TYPES)) if c in runs]
    if not columns:
        return pd.DataFrame()
    table = summary_table(runs, models, labels, columns)
    observed = runs[runs["model"].isin(models)].drop_duplicates("seed")  # the same cells for every model of a split
    observed_columns = [c.replace("rescue_", "observed_") for c in columns if c.replace("rescue_", "observed_") in runs]
    before = summary_table(observed.assign(model="observed"), ["observed"],
                           {"observed": "observed cells (before rescue)"}, observed_columns)
    before.columns = [c.replace("observed_", "rescue_") for c in before.columns]
    table = pd.concat([table, before])
    return table.rename(columns=lambda c: c.removeprefix("rescue_truth_corr").removeprefix("_") or "all")


def criterion_qcpr_table(runs: pd.DataFrame, models: Sequence[str], labels: dict[str, str]) -> pd.DataFrame:
    """QCPR per criterion of generated artifact-free cells per model, beside the data's QC-passed cells and,
    on the simulator, fresh clean cells of the true process (the ceiling)."""
    columns = [f"qcpr_{c}" for c in _CRITERIA if f"qcpr_{c}" in runs] + ["qcpr"]
    table = summary_table(runs, models, labels, columns)
    for prefix, label in (("data_", "data: QC-passed cells"), ("truth_", "truth: clean cells of the simulator")):
        have = [c for c in columns if f"{prefix}{c}" in runs and runs[f"{prefix}{c}"].notna().any()]
        if have:
            per_split = runs[runs["model"].isin(models)].drop_duplicates("seed")  # one value per split
            extra = summary_table(per_split.assign(model=label), [label], {}, [f"{prefix}{c}" for c in have])
            extra.columns = have
            table = pd.concat([table, extra])
    return table.rename(columns=lambda c: c.removeprefix("qcpr_"))
