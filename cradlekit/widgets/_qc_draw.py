"""The figure of a :class:`~cradlekit.widgets.QCExplorer`: one histogram per criterion at ``k``."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .._keys import CRITERIA, METRIC_OF_CRITERION
from ..qc.thresholds import SIDE
from ._basis import basis_name, metric_label
from ._views import FAIL_COLOR, PASS_COLOR, THRESHOLD_COLOR

__all__ = ["qc_figure"]


def qc_figure(qc: Any) -> Figure:
    """Histograms of the six criteria of a QCExplorer with the threshold at ``k``, pass/fail regions,
    each axis naming its metric's source (an ``obs`` column or the genes of the counts)."""
    # a fixed layout: the constrained-layout solver would cost ~0.5 s of every slider move
    fig = Figure(figsize=(10.5, 5.6))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.09, top=0.89, wspace=0.28, hspace=0.5)
    axes = fig.subplots(2, 3, squeeze=False)
    for ax, criterion in zip(axes.ravel(), CRITERIA, strict=True):
        _draw_criterion(qc, ax, criterion)
    if qc.ready:
        pct = 100.0 * qc.n_pass / max(qc.n_cells, 1)
        fig.suptitle(f"QC at k = {qc.k:g} on {basis_name(qc.adata, qc.basis)}: {qc.n_pass} of {qc.n_cells} cells "
                     f"pass ({pct:.1f}%)")  # fmt: skip
    else:
        fig.suptitle("no QC labels: run cradlekit.qc.label_artifacts(adata)")
    return fig


def _draw_criterion(qc: Any, ax, criterion: str) -> None:
    ax.set_title(criterion, fontsize="medium")
    values = qc._values.get(criterion)
    if values is None:
        ax.text(0.5, 0.5, "skipped" if qc.ready else "no QC labels", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    c = qc.counts[criterion]
    if criterion == "doublet":
        ax.bar([0, 1], [c["n_pass"], c["n_fail"]], color=[PASS_COLOR, FAIL_COLOR], edgecolor="grey")
        ax.set_xticks([0, 1], ["singlet (pass)", "doublet (fail)"])
    else:
        finite = values[np.isfinite(values)]
        t = qc.thresholds[criterion]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if np.isfinite(t):
            lo, hi = min(lo, t), max(hi, t)
        pad = 0.03 * (hi - lo) if hi > lo else 1.0
        lo, hi = lo - pad, hi + pad
        if np.isfinite(t):
            fail_span = (lo, t) if SIDE[criterion] == "lower" else (t, hi)
            pass_span = (t, hi) if SIDE[criterion] == "lower" else (lo, t)
            ax.axvspan(*fail_span, color=FAIL_COLOR, alpha=0.35, lw=0, gid="fail_region")
            ax.axvspan(*pass_span, color=PASS_COLOR, alpha=0.35, lw=0, gid="pass_region")
            ax.axvline(t, color=THRESHOLD_COLOR, ls=":", lw=1.8, gid="threshold")
        ax.hist(finite, bins=40, range=(lo, hi), color="#636363", log=True)
        ax.set_xlim(lo, hi)
        source = qc.metric_sources.get(criterion, "")
        ax.set_xlabel(metric_label(METRIC_OF_CRITERION[criterion], source), fontsize="small")
        ax.set_ylabel("cells (log)", fontsize="small")
    ax.set_title(f"{criterion}: {c['n_pass']} pass, {c['n_fail']} fail", fontsize="medium")
