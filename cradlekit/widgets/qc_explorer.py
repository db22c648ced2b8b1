"""QCExplorer: choose the MAD multiple ``k``, watch the six QC criteria, write the labels back."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import traitlets as T
from anndata import AnnData
from matplotlib.figure import Figure

from .._keys import CRITERIA  # the six criteria in display order (doublet: scrublet's call)
from ..errors import MissingKeyError
from ..qc import label_artifacts, qc_summary, read_qc_uns
from ..qc.thresholds import SIDE, fails, k_label, mad_threshold, robust_scale
from ._messages import NO_QC_LABELS, report_errors, set_message
from ._qc_tables import group_pass_table, references_note, threshold_note
from ._qc_view import QCExplorerView
from ._views import FAIL_COLOR, PASS_COLOR, THRESHOLD_COLOR, Controller

__all__ = ["QCExplorer", "CRITERIA"]

_METRIC = {
    "total_counts": "total_counts", "n_genes": "n_genes_by_counts", "mito": "pct_counts_mt",
    "ribo": "pct_counts_ribo", "hb": "pct_counts_hb", "doublet": "predicted_doublet",
}  # fmt: skip
_OBS_SOURCE = re.compile(r"""^obs\[(['"])(.+)\1\]$""")
_LAYER = re.compile(r"""^adata\.layers\[(['"])(.+)\1\]$""")


class QCExplorer(Controller):
    """Explore the QC thresholds of a labelled AnnData at any MAD multiple ``k``.

    The per-criterion thresholds at ``k`` are ``median ± k·scale`` from the statistics that
    :func:`cradlekit.qc.label_artifacts` stored in ``uns['qc']`` (so ``k`` = 3, 4, 5 reproduce
    the stored labels exactly, and any other ``k`` follows the same rule); pass/fail counts
    update whenever ``k`` changes. :meth:`write_labels` writes the labels of the chosen ``k``
    into ``adata`` with :func:`~cradlekit.qc.label_artifacts`.

    Parameters
    ----------
    adata
        AnnData labelled by :func:`cradlekit.qc.label_artifacts` (otherwise the widget says so;
        label it and call :meth:`refresh`).
    k
        Initial MAD multiple.
    label_kwargs
        Extra arguments of :func:`~cradlekit.qc.label_artifacts` for :meth:`write_labels`. By
        default the layer, gene symbols, precomputed metric columns and MAD = 0 guard recorded in
        ``uns['qc']`` are reused, and scrublet is not rerun (its calls in ``obs`` are kept).

    Attributes
    ----------
    k : float
        The MAD multiple (``k_min`` ≤ k ≤ ``k_max`` in the slider).
    thresholds : dict
        ``{criterion: threshold}`` at ``k`` (NaN for a skipped criterion and for ``doublet``).
    counts : dict
        ``{criterion: {"n_pass": int, "n_fail": int}}`` for the six criteria and ``"any"``.
    n_pass, n_cells : int
        Cells passing every criterion at ``k``; cells in ``adata``.
    written_key : str
        ``obs`` column of ``a_i`` written by the last :meth:`write_labels` (e.g. ``artifact_k3p5``),
        ready for ``PerturbationModel(adata, artifact_key=...)``.
    group_by : str
        ``obs`` column of :meth:`group_table` (``"perturbation"``; ``"split"``...).
    sort_by, ascending
        Sort of :meth:`group_table` (``"pass %"`` ascending: the most affected groups first).

    Examples
    --------
    >>> from cradlekit.widgets import QCExplorer
    >>> qc = QCExplorer(adata)          # doctest: +SKIP
    >>> qc                              # the last line of a cell shows the widget  # doctest: +SKIP
    >>> qc.k = 3.5; qc.n_pass           # doctest: +SKIP
    >>> qc.write_labels()               # obs['artifact_k3p5'] and its flags  # doctest: +SKIP
    """

    k = T.Float(3.0, help="MAD multiple")
    thresholds = T.Dict(help="{criterion: threshold at k}")
    counts = T.Dict(help="{criterion: {'n_pass', 'n_fail'}} at k, plus 'any'")
    n_pass = T.Int(0, help="cells passing every criterion at k")
    n_cells = T.Int(0)
    written_key = T.Unicode("", help="obs column written by write_labels")
    ready = T.Bool(False, help="whether adata has QC labels")
    revision = T.Int(0, help="incremented after every update of the counts (views redraw on it)")
    group_by = T.Unicode("perturbation")
    sort_by = T.Unicode("pass %")
    ascending = T.Bool(True)

    presets = (3.0, 4.0, 5.0)
    k_min, k_max, k_step = 1.0, 10.0, 0.25

    def __init__(self, adata: AnnData, *, k: float = 3.0, label_kwargs: Mapping[str, Any] | None = None):
        super().__init__()
        self.adata = adata
        self.label_kwargs = dict(label_kwargs or {})
        self._failed: dict[str, np.ndarray] = {}
        self._any_fail = np.zeros(adata.n_obs, dtype=bool)
        self._values: dict[str, np.ndarray] = {}
        self._stats: dict[str, tuple[float, float]] = {}
        self.n_cells = int(adata.n_obs)
        self.set_trait("k", float(k))
        self.refresh()

    # ------------------------------------------------------------------ state
    @T.validate("k")
    def _valid_k(self, proposal):
        k = float(proposal["value"])
        if not np.isfinite(k) or k <= 0:
            raise T.TraitError(f"k must be a positive number, got {k}")
        return k

    @T.observe("k")
    def _on_k(self, change) -> None:
        self._update()

    def refresh(self) -> None:
        """Re-read ``uns['qc']`` and the metric columns (e.g. after running ``label_artifacts``)."""
        self.ready = False
        self._values, self._stats = {}, {}
        try:
            record = read_qc_uns(self.adata)
        except MissingKeyError:
            self.thresholds, self.counts, self.n_pass = {}, {}, 0
            set_message(self, NO_QC_LABELS, "warning")
            self.revision += 1
            return
        with report_errors(self, "read the QC labels"):
            self._values, self._stats = self._read(record)
            self.ready = True
        if self.ready:
            self._update()
        else:
            self.thresholds, self.counts, self.n_pass = {}, {}, 0
            self.revision += 1

    def _read(self, record: Mapping) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
        """Metric values per criterion and ``(median, scale)`` per MAD criterion."""
        skipped = {str(s) for s in np.asarray(record["skipped"]).tolist()}
        stored = record.get("stats", {})
        guard = bool(record.get("mad_zero_guard", True))
        values, stats = {}, {}
        for criterion in CRITERIA:
            column = _METRIC[criterion]
            if criterion in skipped:
                continue
            if column not in self.adata.obs.columns:
                raise MissingKeyError(f"adata.obs[{column!r}] not found: run cradlekit.qc.label_artifacts again")
            values[criterion] = np.asarray(self.adata.obs[column], dtype=np.float64)
            if criterion == "doublet":
                continue
            s = stored.get(criterion)
            if s is not None and np.isfinite(float(s.get("median", np.nan))):
                stats[criterion] = (float(s["median"]), float(s["scale"]))
            else:  # no stored statistics: the same robust scale, computed here
                rs = robust_scale(values[criterion], mad_zero_guard=guard)
                stats[criterion] = (rs.median, rs.scale)
        return values, stats

    def _update(self) -> None:
        if not self.ready:
            return
        thresholds, counts = {}, {}
        any_fail = np.zeros(self.n_cells, dtype=bool)
        for criterion in CRITERIA:
            values = self._values.get(criterion)
            if values is None:  # skipped in the stored QC
                thresholds[criterion] = float("nan")
                failed = np.zeros(self.n_cells, dtype=bool)
            elif criterion == "doublet":
                thresholds[criterion] = float("nan")
                failed = values.astype(bool)
            else:
                median, scale = self._stats[criterion]
                t = mad_threshold(median, scale, self.k, SIDE[criterion])
                thresholds[criterion] = t
                failed = fails(values, t, SIDE[criterion])
            any_fail |= failed
            self._failed[criterion] = failed
            n_fail = int(failed.sum())
            counts[criterion] = {"n_pass": self.n_cells - n_fail, "n_fail": n_fail}
        n_fail = int(any_fail.sum())
        counts["any"] = {"n_pass": self.n_cells - n_fail, "n_fail": n_fail}
        self._any_fail = any_fail
        self.thresholds = thresholds
        self.counts = counts
        self.n_pass = self.n_cells - n_fail
        self.revision += 1

    table_revision = T.Int(0, help="incremented when the per-group table's settings change")

    @T.observe("group_by", "sort_by", "ascending")
    def _on_table(self, change) -> None:
        self.table_revision += 1

    def group_table(self) -> pd.DataFrame:
        """Pass rates at ``k`` per group of ``obs[group_by]``: cells, ``pass %``, each criterion's
        ``fail %`` and the criterion that fails most, sorted by ``sort_by`` (see :attr:`sort_by`).

        Spots perturbation-specific artifact enrichment (a perturbation that kills cells fails
        ``n_genes`` or ``mito`` more often than the control).
        """
        if not self.ready:
            raise ValueError(NO_QC_LABELS)
        return group_pass_table(self.adata, self._failed, self._any_fail, by=self.group_by, sort_by=self.sort_by,
                                ascending=self.ascending)  # fmt: skip

    @property
    def threshold_notes(self) -> dict[str, str]:
        """``{criterion: note}`` for thresholds that cannot reject any cell at ``k`` (e.g. negative ones)."""
        notes = {c: threshold_note(c, self.thresholds.get(c, float("nan")), SIDE[c]) for c in CRITERIA if c in SIDE}
        return {c: n for c, n in notes.items() if n}

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables the widget shows, by name (exported as CSV); empty before there is a result."""
        if not self.ready:
            return {}
        rows = {c: {"threshold": self.thresholds.get(c, float("nan")), **self.counts[c]} for c in (*CRITERIA, "any")}
        out = {"criteria": pd.DataFrame.from_dict(rows, orient="index").rename_axis("criterion")}
        try:
            out[f"per_{self.group_by}"] = self.group_table()
        except ValueError:
            pass
        return out

    @property
    def skipped(self) -> list[str]:
        """Criteria skipped in the stored QC (no genes, no doublet call)."""
        return [c for c in CRITERIA if self.ready and c not in self._values]

    @property
    def artifact_key(self) -> str:
        """``obs`` column holding ``a_i`` at the current ``k`` (``artifact_k3``, ``artifact_k3p5``…)."""
        return f"artifact_{k_label(self.k)}"

    # ------------------------------------------------------------------ actions
    def _relabel_kwargs(self, record: Mapping) -> dict[str, Any]:
        """Arguments of ``label_artifacts`` that reproduce the stored run (its metric sources)."""
        kwargs: dict[str, Any] = {"mad_zero_guard": bool(record.get("mad_zero_guard", True))}
        pre = {}
        for metric, source in dict(record.get("metric_source", {})).items():
            m = _OBS_SOURCE.match(str(source))
            if m and m.group(2) in self.adata.obs.columns:
                pre[str(metric)] = m.group(2)
        kwargs["precomputed"] = pre or None
        symbols = str(record.get("gene_symbols", "var_names"))
        if symbols != "var_names":
            kwargs["gene_symbols"] = symbols
        m = _LAYER.match(str(record.get("counts", "")))
        if m:
            kwargs["layer"] = m.group(2)
        return kwargs

    def write_labels(self) -> str | None:
        """Write ``obs['artifact_k<k>']`` and the per-criterion flags of the current ``k``.

        Calls :func:`cradlekit.qc.label_artifacts` with the stored ``k`` values plus this one and
        ``run_scrublet=False`` (the doublet calls already in ``obs`` are kept, and so is the
        ``uns['qc']['scrublet']`` record of the run that made them).

        Returns
        -------
        str or None
            The ``obs`` column written (also in :attr:`written_key`), or ``None`` on failure (see
            :attr:`message`).
        """
        if not self.ready:
            set_message(self, NO_QC_LABELS, "warning")
            return None
        key, k = self.artifact_key, self.k
        done = None
        with report_errors(self, f"write the labels for k = {k:g}"):
            record = read_qc_uns(self.adata)
            stored = sorted(float(x) for x in np.asarray(record["ks"]).ravel())
            if k not in stored:
                kwargs = {**self._relabel_kwargs(record), **self.label_kwargs}
                scrublet = record.get("scrublet")
                label_artifacts(self.adata, ks=sorted({*stored, k}), run_scrublet=False, **kwargs)
                if scrublet is not None and kwargs.get("run_scrublet", False) is False:
                    self.adata.uns["qc"]["scrublet"] = scrublet
            n_pass = int((np.asarray(self.adata.obs[key]) == 0).sum())
            self.written_key = done = key
            if n_pass != self.n_pass:
                set_message(
                    self,
                    f"Wrote obs[{key!r}], but {n_pass} cells pass instead of the {self.n_pass} previewed: the "
                    "metrics were recomputed differently; pass label_kwargs= as in your label_artifacts call.",
                    "warning",
                )
            else:
                note = references_note(self.adata, key)
                set_message(
                    self,
                    f"Wrote obs[{key!r}] and its per-criterion flags: {n_pass} of {self.n_cells} cells pass. "
                    f"Train with PerturbationModel(adata, artifact_key={key!r})." + (f"\n{note}" if note else ""),
                    "warning" if note else "info",
                )
        return done

    def summary(self):
        """:func:`cradlekit.qc.qc_summary` of the labels stored in ``adata`` (all stored ``k``)."""
        return qc_summary(self.adata)

    # ------------------------------------------------------------------ figures and view
    def static_figure(self) -> Figure:
        """Histograms of the six criteria with the threshold at ``k`` and pass/fail regions."""
        # a fixed layout: the constrained-layout solver would cost ~0.5 s of every slider move
        fig = Figure(figsize=(10.5, 5.6))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.09, top=0.89, wspace=0.28, hspace=0.5)
        axes = fig.subplots(2, 3, squeeze=False)
        for ax, criterion in zip(axes.ravel(), CRITERIA, strict=True):
            self._draw_criterion(ax, criterion)
        if self.ready:
            pct = 100.0 * self.n_pass / max(self.n_cells, 1)
            fig.suptitle(f"QC at k = {self.k:g}: {self.n_pass} of {self.n_cells} cells pass ({pct:.1f}%)")
        else:
            fig.suptitle("no QC labels: run cradlekit.qc.label_artifacts(adata)")
        return fig

    def _draw_criterion(self, ax, criterion: str) -> None:
        ax.set_title(criterion, fontsize="medium")
        values = self._values.get(criterion)
        if values is None:
            ax.text(0.5, 0.5, "skipped" if self.ready else "no QC labels", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            return
        c = self.counts[criterion]
        if criterion == "doublet":
            ax.bar([0, 1], [c["n_pass"], c["n_fail"]], color=[PASS_COLOR, FAIL_COLOR], edgecolor="grey")
            ax.set_xticks([0, 1], ["singlet (pass)", "doublet (fail)"])
        else:
            finite = values[np.isfinite(values)]
            t = self.thresholds[criterion]
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
            ax.set_xlabel(_METRIC[criterion], fontsize="small")
            ax.set_ylabel("cells (log)", fontsize="small")
        ax.set_title(f"{criterion}: {c['n_pass']} pass, {c['n_fail']} fail", fontsize="medium")

    def _make_view(self):
        return QCExplorerView(self)
