"""Verdicts of a grid against its baselines, in sentences a reader cannot misread.

A trained model "beats" a baseline on a metric when its paired difference over splits (model minus
baseline, same splits) has a 95 % bootstrap interval above 0; it "falls short" when the interval is
below 0; otherwise the two are not distinguishable with these splits. Only converged runs count
(:func:`cradlekit.experiments.tables.converged_runs`), and a model enters a verdict only with
:data:`MIN_SPLITS` splits paired with the baseline (fewer are named as too few to judge).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .paired import paired_comparison
from .tables import converged_runs

__all__ = ["against_baselines", "verdict_lines", "VERDICT_METRICS"]

#: Metrics the verdicts speak about (held out: what the models are for).
VERDICT_METRICS = {
    "heldout_ate_pearson": "held-out ATE-ρ",
    "heldout_ate_pearson_centered": "held-out ATE-ρ centred on the mean effect",
}


def against_baselines(
    results: pd.DataFrame, models: Sequence[str], baselines: Sequence[str], metrics: Sequence[str], *, k: float,
) -> pd.DataFrame:
    """Each trained model minus each baseline, paired over splits (converged runs only)."""
    runs, _ = converged_runs(results)
    present = set(runs["model"])
    frames = []
    for model in models:
        if model not in present:
            continue
        others = [b for b in baselines if b in present]
        if others:
            frames.append(paired_comparison(runs, model, others, metrics, k=k))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: Paired splits a model needs before a verdict names it (the evidence standard: at least five).
MIN_SPLITS = 5


def verdict_lines(
    results: pd.DataFrame, models: Sequence[str], baselines: Sequence[str], labels: dict[str, str], *, k: float,
) -> list[str]:
    """Markdown bullet sentences: per metric, the strongest baseline and how each trained model compares."""
    runs, _ = converged_runs(results[results["k"].astype(float) == float(k)])
    lines = []
    for metric, name in VERDICT_METRICS.items():
        if metric not in runs:
            continue
        means = runs.groupby("model")[metric].mean()
        base = [b for b in baselines if b in means.index and np.isfinite(means[b])]
        candidates = [m for m in models if m in means.index and np.isfinite(means[m])]
        if not base or not candidates:
            continue
        best = max(base, key=lambda b: means[b])
        pc = paired_comparison(runs, best, candidates, [metric], k=k)  # baseline minus model
        pairs = pc.groupby("other")["n"].max() if len(pc) else pd.Series(dtype=int)
        few = [m for m in candidates if int(pairs.get(m, 0)) < MIN_SPLITS]
        pc = pc[~pc["other"].isin(few)]
        trained = [m for m in candidates if m not in few]
        better = [r for _, r in pc.iterrows() if r["n"] and r["ci_high"] < 0]
        worse = [r for _, r in pc.iterrows() if r["n"] and r["ci_low"] > 0]
        head = f"- **{name}**: the strongest baseline is {labels.get(best, best)} ({means[best]:.3f})."
        if trained and not better:
            top = max(trained, key=lambda m: means[m])
            row = pc[pc["other"] == top].iloc[0]
            head += (
                f" **No trained model beats it**: the best, {labels.get(top, top)} ({means[top]:.3f}), differs by "
                f"{-row['mean_diff']:+.3f} (95 % CI [{-row['ci_high']:+.3f}, {-row['ci_low']:+.3f}], n = "
                f"{int(row['n'])} splits)"
            )
            head += f"; {len(worse)} of {len(trained)} trained models fall short of it." if worse else "."
        elif trained:
            names = ", ".join(f"{labels.get(r['other'], r['other'])} ({-r['mean_diff']:+.3f})" for r in better)
            head += f" Beaten (CI above 0) by {names}; {len(worse)} of {len(trained)} trained models fall short of it."
        if few:
            head += (f" Too few converged splits to judge (under {MIN_SPLITS}): "
                     + ", ".join(labels.get(m, m) for m in few) + ".")
        lines.append(head)
    return lines
