"""Figure 3 of the paper: QC metrics of one perturbation, data versus generated cells."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .._keys import CRITERIA, METRIC_OF_CRITERION, PERTURBATION_KEY, QC_UNS_KEY, UNS_KEY
from .._validation import check_obs_key
from ..data.perturbations import canonical_label, parse_perturbation
from ..errors import EmptyPerturbationError, MissingKeyError
from ..qc import apply_thresholds, read_qc_uns
from ..qc.thresholds import SIDE, k_label
from . import _style as st

__all__ = ["qc_violins", "panel_view"]

DoubletMode = Literal["auto", "score", "fraction"]
#: x range of a panel (sets at x = 1 and 2) and half the width a set's threshold segment covers.
_XLIM = (0.4, 2.6)
_HALF = 0.45


def qc_violins(
    data: AnnData,
    generated: AnnData,
    *,
    perturbation: str,
    k: float = 3,
    perturbation_key: str | None = None,
    criteria: Sequence[str] = CRITERIA,
    labels: tuple[str, str] = ("data", "generated"),
    doublet: DoubletMode = "auto",
    run_scrublet: bool = True,
    seed: int = 0,
    ncols: int | None = None,
    axes: Sequence[Axes] | np.ndarray | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Violins of each QC sub-criterion for one perturbation, data versus generated (Figure 3).

    One panel per criterion: violins of the observed (blue) and generated (green) cells of
    ``perturbation``, the **data's** threshold at MAD multiple ``k`` as a red dotted line, the
    values that pass shaded green and those that fail shaded red. Criteria are one-sided as in
    :mod:`cradlekit.qc.thresholds`: ``total_counts`` and ``n_genes`` fail *below* the lower
    threshold, ``mito``, ``ribo`` and ``hb`` (percent of counts) fail *above* the upper one.
    Under each violin: the number of cells and the percentage passing that criterion.

    The doublet criterion has no MAD threshold: scrublet calls doublets in each cell set with a
    threshold it chooses on that set's own score distribution (the QCPR applies scrublet to the
    generated cells; design page, "Metrics"). Hence ``doublet``:

    ``"score"``
        violins of ``obs['doublet_score']``; each set's own scrublet threshold (from its
        ``uns['qc']['scrublet']['threshold']``) is drawn as a red dotted segment across its own
        violin, with the pass/fail shading under and over it.
    ``"fraction"``
        one bar per set splitting 100 % of its cells into passing (green) and predicted doublets
        (red), from ``obs['predicted_doublet']``.
    ``"auto"`` (default)
        ``"score"`` when both sets have doublet scores and a single scrublet threshold each
        (scrublet run once, not per batch or chunk); otherwise ``"fraction"``.

    Parameters
    ----------
    data
        The observed cells, labelled by :func:`cradlekit.qc.label_artifacts` (metric columns in
        ``obs`` and thresholds in ``uns['qc']``).
    generated
        Generated cells (e.g. ``model.generate(n=100)``). Metric columns already in ``obs`` are
        used (e.g. after :func:`cradlekit.qc.apply_thresholds`); if any is missing, a copy of the
        whole of ``generated`` is labelled with ``apply_thresholds(copy, data, ks=[k])`` (the
        caller's object is not modified).
    perturbation
        The perturbation shown (e.g. ``"POLD3"``). A combination may be given in either order.
    k
        MAD multiple of the thresholds drawn; must be stored in ``data.uns['qc']``.
    perturbation_key
        ``obs`` column of the perturbation labels (in both objects); default: the key recorded in
        each object's ``uns['cradlekit']``, else ``"perturbation"``.
    criteria
        Sub-criteria shown, in this order (any of ``total_counts``, ``n_genes``, ``mito``,
        ``ribo``, ``hb``, ``doublet``). A criterion the data's QC skipped (genes absent,
        NaN threshold, no doublet call) gets a panel that says "skipped".
    labels
        Names of the two sets (tick labels and legend).
    doublet
        How the doublet criterion is drawn (see above).
    run_scrublet, seed
        Passed to :func:`~cradlekit.qc.apply_thresholds` when ``generated`` is labelled here.
    ncols
        Panels per row (default: 3); ignored with ``axes``.
    axes
        One Axes per criterion, all in one figure, to draw into instead of a new figure.
    figsize
        Size of a new figure (default: 3.2 × 3.4 inches per panel).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the panels (titles from :data:`cradlekit.pl._style.CRITERION_TITLES`;
        shadings, threshold lines and violins carry ``gid`` ``"pass_region"``, ``"fail_region"``,
        ``"threshold"``, ``"data"``/``"generated"`` for programmatic access).

    Raises
    ------
    cradlekit.errors.EmptyPerturbationError
        ``perturbation`` has no cell in ``data`` or in ``generated``.
    cradlekit.errors.MissingKeyError
        ``data`` is not labelled, ``k`` is not stored, a perturbation column or a data metric
        column is absent.
    cradlekit.errors.InvalidCountsError
        ``generated`` must be labelled here but does not hold integer counts (e.g. expected
        expression from ``predict_mean``).
    ValueError
        An unknown criterion, ``doublet`` mode, or a wrong number of ``axes``.
    """
    criteria = list(criteria)
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown or not criteria:
        raise ValueError(f"criteria must be a non-empty subset of {CRITERIA}, got {criteria}")
    if doublet not in ("auto", "score", "fraction"):
        raise ValueError(f"doublet must be 'auto', 'score' or 'fraction', got {doublet!r}")
    record = read_qc_uns(data)
    thresholds = record["thresholds"].get(k_label(k))
    if thresholds is None:
        stored = [f"{float(x):g}" for x in np.asarray(record["ks"]).ravel()]
        raise MissingKeyError(f"k={k:g} is not stored in data.uns['qc'] (stored: {stored})")
    skipped = {str(s) for s in np.asarray(record["skipped"]).tolist()}

    d_mask = _mask_of(data, perturbation, perturbation_key, "data")
    g_mask = _mask_of(generated, perturbation, perturbation_key, "generated cells")
    empty = [name for name, mask in (("data", d_mask), ("generated", g_mask)) if not mask.any()]
    if empty:
        raise EmptyPerturbationError(
            f"perturbation {perturbation!r} has no cells in {' and '.join(empty)} "
            f"(data has e.g. {_some_labels(data, perturbation_key)})"
        )
    gen = generated
    needed = [METRIC_OF_CRITERION[c] for c in criteria if c not in skipped]
    if any(m not in gen.obs.columns for m in needed):
        gen = apply_thresholds(generated, data, ks=[k], run_scrublet=run_scrublet, seed=seed, copy=True)
    data_view = data
    if "panel" in record and str(gen.uns.get("qc", {}).get("basis", "")) == "panel":
        # the generated cells were judged on the modelled genes only: show the data on that basis too
        data_view = panel_view(data, k)
        thresholds = data_view.uns["qc"]["thresholds"][k_label(k)]
    d_cells, g_cells = data_view[d_mask], gen[g_mask]

    if axes is None:
        ncols = min(ncols or 3, len(criteria))
        nrows = -(-len(criteria) // ncols)
        fig, grid = st.new_figure(nrows, ncols, figsize or (3.2 * ncols, 3.4 * nrows + 0.5))
        for ax in grid.ravel()[len(criteria) :]:
            ax.set_visible(False)
        panel_axes = list(grid.ravel()[: len(criteria)])
    else:
        panel_axes = list(st.as_axes_grid(axes, 1, len(criteria), what="axes").ravel())
        fig = panel_axes[0].get_figure(root=True)

    sets = ((labels[0], d_cells, data_view, st.DATA_COLOR), (labels[1], g_cells, gen, st.GENERATED_COLOR))
    for ax, criterion in zip(panel_axes, criteria, strict=True):
        ax.set_title(st.CRITERION_TITLES[criterion])
        if criterion == "doublet":
            _doublet_panel(ax, sets, skipped, doublet)
            continue
        side = SIDE[criterion]
        threshold = float(thresholds.get(criterion, {}).get(side, np.nan))
        metric = METRIC_OF_CRITERION[criterion]
        if criterion in skipped or not np.isfinite(threshold):
            _skipped(ax, "criterion skipped in the data's QC\n(genes absent or NaN threshold)")
            continue
        check_obs_key(data_view, metric, what="QC metric (run cradlekit.qc.label_artifacts)")
        values = [_finite(cells.obs[metric]) if metric in cells.obs else np.empty(0) for _, cells, _, _ in sets]
        _metric_panel(ax, sets, values, threshold, side, metric)

    handles = [
        Patch(facecolor=st.DATA_COLOR, alpha=st.VIOLIN_ALPHA, label=labels[0]),
        Patch(facecolor=st.GENERATED_COLOR, alpha=st.VIOLIN_ALPHA, label=labels[1]),
        Line2D([], [], **st.THRESHOLD_STYLE, label=f"QC threshold (k = {k:g})"),
        Patch(facecolor=st.PASS_COLOR, alpha=st.REGION_ALPHA, label="passes"),
        Patch(facecolor=st.FAIL_COLOR, alpha=st.REGION_ALPHA, label="fails"),
    ]
    if axes is None:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        fig.suptitle(f"{perturbation}: QC metrics of {labels[0]} and {labels[1]} cells (k = {k:g})")
    else:
        panel_axes[-1].legend(handles=handles, fontsize="small", loc="best")
    return fig


def panel_view(data: AnnData, k: float) -> AnnData:
    """The data's cells with QC metrics of the modelled genes only and the panel thresholds.

    Used when the data were labelled with full-transcriptome metrics from ``obs`` but generated
    cells (which have only the modelled genes) were judged on the panel basis.
    """
    doublets = {c: c for c in ("predicted_doublet", "doublet_score") if c in data.obs}
    view = AnnData(X=data.X, obs=data.obs[list(doublets)].copy(), var=data.var[[]].copy())
    apply_thresholds(view, data, ks=[k], precomputed=doublets or None, run_scrublet=False, basis="panel")
    return view


def _perturbation_column(adata: AnnData, key: str | None, what: str) -> pd.Series:
    key = key or adata.uns.get(UNS_KEY, {}).get("perturbation_key") or PERTURBATION_KEY
    return check_obs_key(adata, key, what=f"perturbation key of the {what}")


def _mask_of(adata: AnnData, perturbation: str, key: str | None, what: str) -> np.ndarray:
    """Cells of ``perturbation`` (exact label, else its canonical ``A+B`` form)."""
    labels = _perturbation_column(adata, key, what).astype(str).to_numpy()
    mask = labels == perturbation
    if not mask.any():
        control = adata.uns.get(UNS_KEY, {}).get("control_label", "control")
        canonical = canonical_label(parse_perturbation(perturbation, control_label=control), control_label=control)
        mask = labels == canonical
    return mask


def _some_labels(adata: AnnData, key: str | None, n: int = 5) -> list[str]:
    return sorted(pd.unique(_perturbation_column(adata, key, "data").astype(str)))[:n]


def _finite(values: pd.Series) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _skipped(ax: Axes, reason: str) -> None:
    ax.text(0.5, 0.5, f"skipped\n{reason}", ha="center", va="center", transform=ax.transAxes, fontsize="small")
    ax.set_xticks([])
    ax.set_yticks([])


def _tick(label: str, n: int, pct_pass: float) -> str:
    return f"{label}\nn={n}" + (f", {pct_pass:.0f}% pass" if np.isfinite(pct_pass) else "")


def _violins(ax: Axes, sets, values: list[np.ndarray]) -> None:
    for x, ((_, _, _, color), vals) in enumerate(zip(sets, values, strict=True), start=1):
        if vals.size == 0:
            ax.text(x, 0.5, "no values", ha="center", transform=ax.get_xaxis_transform(), fontsize="small")
            continue
        parts = ax.violinplot([vals], positions=[x], widths=0.8, showmedians=True, showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor(color)
            body.set_edgecolor(color)
            body.set_alpha(st.VIOLIN_ALPHA)
            body.set_gid(("data", "generated")[x - 1])
        parts["cmedians"].set_color("black")


def _limits(values: list[np.ndarray], thresholds: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if v.size] + [np.asarray([t]) for t in thresholds if np.isfinite(t)]
    both = np.concatenate(finite) if finite else np.asarray([0.0, 1.0])
    lo, hi = float(both.min()), float(both.max())
    pad = 0.06 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 1.0)
    return lo - pad, hi + pad


def _shade(ax: Axes, lo: float, hi: float, threshold: float, side: str, xmin: float = 0.0, xmax: float = 1.0) -> None:
    """Shade the failing and passing sides of ``threshold`` between ``lo`` and ``hi``."""
    fail, ok = ((lo, threshold), (threshold, hi)) if side == "lower" else ((threshold, hi), (lo, threshold))
    for (y0, y1), color, gid in ((fail, st.FAIL_COLOR, "fail_region"), (ok, st.PASS_COLOR, "pass_region")):
        span = ax.axhspan(y0, y1, xmin=xmin, xmax=xmax, color=color, alpha=st.REGION_ALPHA, lw=0, zorder=0)
        span.set_gid(gid)


def _metric_panel(ax: Axes, sets, values, threshold: float, side: str, metric: str) -> None:
    _violins(ax, sets, values)
    lo, hi = _limits(values, [threshold])
    _shade(ax, lo, hi, threshold, side)
    ax.axhline(threshold, **st.THRESHOLD_STYLE, gid="threshold")
    fails = np.less if side == "lower" else np.greater
    ticks = [
        _tick(label, cells.n_obs, 100.0 * (1.0 - fails(v, threshold).mean()) if v.size else np.nan)
        for (label, cells, _, _), v in zip(sets, values, strict=True)
    ]
    _finish(ax, ticks, (lo, hi), metric)
    ax.text(
        0.02, 0.98, f"fails {'<' if side == 'lower' else '>'} {threshold:.4g}",
        transform=ax.transAxes, ha="left", va="top", fontsize="x-small",
    )  # fmt: skip


def _scrublet_threshold(adata: AnnData) -> float:
    """The single scrublet threshold recorded in ``uns['qc']``; NaN if none or several."""
    scrub = adata.uns.get(QC_UNS_KEY, {}).get("scrublet", {})
    per_run = scrub.get("threshold", {}) if isinstance(scrub, Mapping) else {}
    values = list(per_run.values()) if isinstance(per_run, Mapping) else []
    return float(values[0]) if len(values) == 1 else float("nan")


def _doublet_panel(ax: Axes, sets, skipped: set[str], mode: DoubletMode) -> None:
    if "doublet" in skipped:
        _skipped(ax, "no doublet call in the data's QC")
        return
    scores = [_finite(c.obs["doublet_score"]) if "doublet_score" in c.obs else np.empty(0) for _, c, _, _ in sets]
    cuts = [_scrublet_threshold(parent) for _, _, parent, _ in sets]
    if mode == "auto":
        mode = "score" if all(s.size for s in scores) and all(np.isfinite(cuts)) else "fraction"
    if mode == "score":
        _violins(ax, sets, scores)
        lo, hi = _limits(scores, cuts)
        ticks = []
        for x, ((label, cells, _, _), cut) in enumerate(zip(sets, cuts, strict=True), start=1):
            called = cells.obs["predicted_doublet"] if "predicted_doublet" in cells.obs else None
            pct = 100.0 * (1.0 - np.asarray(called, dtype=bool).mean()) if called is not None else np.nan
            ticks.append(_tick(label, cells.n_obs, pct))
            if np.isfinite(cut):
                width = _XLIM[1] - _XLIM[0]  # the shading's x extent is in axes fractions
                x0, x1 = (x - _HALF - _XLIM[0]) / width, (x + _HALF - _XLIM[0]) / width
                _shade(ax, lo, hi, cut, "upper", x0, x1)
                ax.plot([x - _HALF, x + _HALF], [cut, cut], **st.THRESHOLD_STYLE, gid="threshold")
        _finish(ax, ticks, (lo, hi), "doublet_score")
        ax.set_xlabel("each set against its own scrublet threshold", fontsize="x-small")
        return
    ticks = []
    for x, (label, cells, _, color) in enumerate(sets, start=1):
        if "predicted_doublet" not in cells.obs:
            ticks.append(f"{label}\nno doublet call")
            continue
        pct_fail = 100.0 * float(np.asarray(cells.obs["predicted_doublet"], dtype=bool).mean())
        ax.bar(x, 100.0 - pct_fail, width=0.6, color=st.PASS_COLOR, edgecolor=color, lw=1.5, gid="pass_region")
        ax.bar(x, pct_fail, bottom=100.0 - pct_fail, width=0.6, color=st.FAIL_COLOR, edgecolor=color, lw=1.5,
               gid="fail_region")  # fmt: skip
        ticks.append(_tick(label, cells.n_obs, 100.0 - pct_fail))
    _finish(ax, ticks, (0.0, 100.0), "% of cells (red: predicted doublet)")


def _finish(ax: Axes, ticks: list[str], ylim: tuple[float, float], ylabel: str) -> None:
    ax.set_xticks([1, 2], ticks, fontsize="small")
    ax.set_xlim(*_XLIM)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
