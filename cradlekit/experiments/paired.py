"""Paired comparisons of two models over the same splits (the paper reports none).

Every run of a grid with ``split.seed: run`` is one split; two models evaluated on the same seeds
saw the same held-out combinations, so their metric differences are paired. For each baseline:
the mean difference ``reference - baseline``, its 95 % percentile-bootstrap interval (resampling
the splits, seeded) and the two-sided Wilcoxon signed-rank p-value (exact for small n).

With n splits the smallest two-sided exact Wilcoxon p-value is ``2 / 2**n``: 0.0625 for 5 splits,
0.0156 for 7. A p-value can therefore not fall below 0.05 with fewer than 6 splits, whatever the
effect; the interval still says how large the difference is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["paired_differences", "bootstrap_interval", "paired_comparison"]


def paired_differences(
    results: pd.DataFrame, reference: str, other: str, metric: str, *, k: float | None = None
) -> pd.Series:
    """``reference - other`` of ``metric`` per seed (split), over the seeds both have a finite value.

    A model without any value (sVAE+ on unseen combinations) gives an empty series.

    Parameters
    ----------
    results
        A grid's results (columns ``model``, ``k``, ``seed`` and ``metric``).
    reference, other
        Model names (``model`` column).
    metric
        A metric column.
    k
        Restrict to one QC multiple (required when the results hold several).
    """
    frame = results if k is None else results[results["k"].astype(float) == float(k)]
    if frame["k"].nunique() > 1:
        raise ValueError(f"results hold several k ({sorted(frame['k'].unique())}): pass k=")
    values = frame.pivot_table(index="seed", columns="model", values=metric, aggfunc="first", dropna=False)
    for m in (reference, other):
        if m not in values:
            raise KeyError(f"no {metric!r} for model {m!r} in the results")
    diff = (pd.to_numeric(values[reference]) - pd.to_numeric(values[other])).dropna()
    diff.name = f"{reference}-{other}"
    return diff


def bootstrap_interval(
    values: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (resampled with replacement, seeded)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(int(n_boot), x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_comparison(
    results: pd.DataFrame,
    reference: str,
    others: Sequence[str],
    metrics: Sequence[str],
    *,
    k: float | None = None,
    n_boot: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """``reference`` against each of ``others`` on each metric, paired over splits.

    Returns
    -------
    pandas.DataFrame
        One row per (other, metric): ``n`` (splits), ``mean_diff`` (reference - other),
        ``ci_low``/``ci_high`` (95 % bootstrap), ``wins`` (splits where the reference is higher),
        ``wilcoxon_p`` (two-sided; NaN with fewer than 2 pairs or all differences 0),
        ``min_possible_p`` (the smallest p an exact test on n pairs can give).
    """
    rows = []
    for other in others:
        for metric in metrics:
            d = paired_differences(results, reference, other, metric, k=k)
            n = int(d.size)
            low, high = bootstrap_interval(d.to_numpy(), n_boot=n_boot, seed=seed)
            p = np.nan
            if n >= 2 and np.any(d.to_numpy() != 0):
                p = float(stats.wilcoxon(d.to_numpy(), zero_method="zsplit", alternative="two-sided").pvalue)
            rows.append({
                "reference": reference, "other": other, "metric": metric, "n": n,
                "mean_diff": float(d.mean()) if n else np.nan, "ci_low": low, "ci_high": high,  # NaN when n = 0
                "wins": int((d > 0).sum()), "wilcoxon_p": p, "min_possible_p": 2.0 / 2**n if n else np.nan,
            })
    return pd.DataFrame(rows)
