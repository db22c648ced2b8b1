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

from .._keys import CRITERIA, METRIC_OF_CRITERION  # the six criteria in display order (doublet: scrublet's call)
from ..errors import MissingKeyError
from ..qc import label_artifacts, qc_summary, read_qc_uns
from ..qc.thresholds import SIDE, fails, k_label, mad_threshold, robust_scale
from ._basis import BASES, basis_name, basis_sentence, has_panel, panel_metrics
from ._messages import NO_QC_LABELS, report_errors, set_message
from ._qc_draw import qc_figure
from ._qc_tables import categorical_columns, group_pass_table, references_note, threshold_note
from ._qc_view import QCExplorerView
from ._views import Controller

__all__ = ["QCExplorer", "CRITERIA"]

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
    basis : {"reference", "panel"}
        QC basis shown: the data's QC labels (``"reference"``: the metrics ``label_artifacts``
        used, e.g. full-transcriptome columns of ``obs``) or, when those came from ``obs``, the
        metrics and thresholds recomputed on the genes in the counts (``"panel"``, the basis
        generated cells are judged on). :attr:`basis_note` says which, :meth:`bases_table` shows
        both side by side. Labels are always written on the reference basis.
    group_by : str
        Any categorical ``obs`` column for :meth:`group_table` (``"perturbation"``, ``"split"``,
        a batch...; :attr:`group_options` lists them).
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
    basis = T.Enum(BASES, default_value="reference")
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
        self._bases: dict[str, tuple[dict, dict, dict]] = {}
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

    @T.validate("basis")
    def _valid_basis(self, proposal):
        if proposal["value"] == "panel" and not has_panel(self.adata):
            raise T.TraitError("basis='panel' needs QC labels made with metrics from obs (uns['qc']['panel'])")
        return proposal["value"]

    @T.observe("basis")
    def _on_basis(self, change) -> None:
        if self.ready and change["new"] in self._bases:
            self._values, self._stats, _ = self._bases[change["new"]]
            self._update()

    @property
    def bases(self) -> list[str]:
        """The QC bases this data has (``["reference"]``, or both when its labels used ``obs`` metrics)."""
        return ["reference", "panel"] if has_panel(self.adata) else ["reference"]

    @property
    def basis_note(self) -> str:
        """The shown basis in words, and where each metric came from (shown above the figure)."""
        return basis_sentence(self.adata, self.basis) if self.ready else ""

    @property
    def metric_sources(self) -> dict[str, str]:
        """``{criterion: where its metric came from}`` on the shown basis (``obs[...]`` or the counts)."""
        return dict(self._bases[self.basis][2]) if self.ready and self.basis in self._bases else {}

    @property
    def group_options(self) -> list[str]:
        """Categorical ``obs`` columns the per-group table can use."""
        return categorical_columns(self.adata.obs)

    def refresh(self) -> None:
        """Re-read ``uns['qc']`` and the metric columns (e.g. after running ``label_artifacts``)."""
        self.ready = False
        self._values, self._stats, self._bases = {}, {}, {}
        try:
            record = read_qc_uns(self.adata)
        except MissingKeyError:
            self.thresholds, self.counts, self.n_pass = {}, {}, 0
            set_message(self, NO_QC_LABELS, "warning")
            self.revision += 1
            return
        with report_errors(self, "read the QC labels"):
            self._bases = {b: self._read(record, b) for b in self.bases}
            if self.basis not in self._bases:
                self.set_trait("basis", "reference")
            self._values, self._stats, _ = self._bases[self.basis]
            self.ready = True
        if self.ready:
            self._update()
        else:
            self.thresholds, self.counts, self.n_pass = {}, {}, 0
            self.revision += 1

    def _read(self, record: Mapping, basis: str = "reference") -> tuple[dict, dict, dict]:
        """Metric values per criterion, ``(median, scale)`` per MAD criterion, and each metric's source."""
        skipped = {str(s) for s in np.asarray(record["skipped"]).tolist()}
        source = record["panel"] if basis == "panel" else record
        stored = source.get("stats", {})
        sources = {c: str(dict(source.get("metric_source", {})).get(METRIC_OF_CRITERION[c], "")) for c in CRITERIA}
        panel = panel_metrics(self.adata) if basis == "panel" else None
        if panel is not None:  # criteria without genes in the counts are skipped on the panel basis
            skipped |= {c for c in CRITERIA if c != "doublet" and str(stored.get(c, {}).get("scale_kind")) == "skipped"}
        guard = bool(record.get("mad_zero_guard", True))
        values, stats = {}, {}
        for criterion in CRITERIA:
            column = METRIC_OF_CRITERION[criterion]
            if criterion in skipped:
                continue
            if panel is not None and column in panel.columns:
                values[criterion] = panel[column].to_numpy(dtype=np.float64)
            else:
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
        return values, stats, sources

    def _judge(self, values: dict, stats: dict) -> tuple[dict, dict, np.ndarray]:
        """Thresholds at ``k``, failing cells per criterion and failing any, for one basis."""
        thresholds, failed = {}, {}
        any_fail = np.zeros(self.n_cells, dtype=bool)
        for criterion in CRITERIA:
            v = values.get(criterion)
            if v is None:  # skipped in the stored QC
                thresholds[criterion], failed[criterion] = float("nan"), np.zeros(self.n_cells, dtype=bool)
            elif criterion == "doublet":
                thresholds[criterion], failed[criterion] = float("nan"), v.astype(bool)
            else:
                median, scale = stats[criterion]
                thresholds[criterion] = t = mad_threshold(median, scale, self.k, SIDE[criterion])
                failed[criterion] = fails(v, t, SIDE[criterion])
            any_fail |= failed[criterion]
        return thresholds, failed, any_fail

    def _update(self) -> None:
        if not self.ready:
            return
        thresholds, failed, any_fail = self._judge(self._values, self._stats)
        counts = {}
        for criterion in CRITERIA:
            n_fail = int(failed[criterion].sum())
            counts[criterion] = {"n_pass": self.n_cells - n_fail, "n_fail": n_fail}
        n_fail = int(any_fail.sum())
        counts["any"] = {"n_pass": self.n_cells - n_fail, "n_fail": n_fail}
        self._failed, self._any_fail = failed, any_fail
        self.thresholds = thresholds
        self.counts = counts
        self.n_pass = self.n_cells - n_fail
        self.revision += 1

    def bases_table(self) -> pd.DataFrame:
        """Threshold and cells passing at ``k`` per criterion on each QC basis, side by side.

        Columns ``threshold (<basis>)`` and ``pass (<basis>)`` for ``reference`` and, when the
        labels used ``obs`` metrics, ``panel``; rows the six criteria and ``any``.
        """
        if not self.ready:
            raise ValueError(NO_QC_LABELS)
        out = {}
        for basis, (values, stats, _) in self._bases.items():
            thresholds, failed, any_fail = self._judge(values, stats)
            out[f"threshold ({basis})"] = [thresholds[c] for c in CRITERIA] + [float("nan")]
            out[f"pass ({basis})"] = [self.n_cells - int(failed[c].sum()) for c in CRITERIA] + \
                [self.n_cells - int(any_fail.sum())]  # fmt: skip
        return pd.DataFrame(out, index=pd.Index([*CRITERIA, "any"], name="criterion"))

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
        if len(self._bases) > 1:
            out["bases"] = self.bases_table()
        try:
            out[f"per_{self.group_by}"] = self.group_table()
        except ValueError:
            pass
        return out

    @property
    def skipped(self) -> list[str]:
        """Criteria skipped in the stored QC (no genes, no doublet call)."""
        return [c for c in CRITERIA if self.ready and c not in self._values]

    def export_label(self) -> str:
        """What the export files are named after (what is shown)."""
        return f"k{k_label(self.k)[1:]}" + (f"_{self.basis}" if len(self.bases) > 1 else "")

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
            if self.basis != "reference":  # labels are the data's own: compare with the reference basis
                previewed = self.bases_table().loc["any", "pass (reference)"]
                set_message(self, f"Wrote obs[{key!r}] on the reference basis ({basis_name(self.adata, 'reference')}; "
                            f"the panel basis shown is for comparing generated cells): {n_pass} of {self.n_cells} "
                            f"cells pass. Train with PerturbationModel(adata, artifact_key={key!r}).",
                            "info" if n_pass == previewed else "warning")  # fmt: skip
            elif n_pass != self.n_pass:
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
        return qc_figure(self)

    def _make_view(self):
        return QCExplorerView(self)
