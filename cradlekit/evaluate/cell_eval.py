"""Predictions in the layout of the field's evaluator, `cell-eval` (Arc Institute), and its metrics on them.

`cell-eval <https://github.com/ArcInstitute/cell-eval>`_ scores a predicted AnnData against a real
one, cell by cell: ``pearson_delta``, differential-expression overlap, discrimination and more.
cradlekit does not re-implement those metrics; it writes both sides in cell-eval's layout and, when
the optional package is installed (``pip install 'cradlekit[evaluate]'``), runs it:

* one AnnData per side, cells × genes, ``X`` the log-normalised expression
  ``ln(1 + 1e4 · x / Σx)`` (scanpy's ``normalize_total(target_sum=1e4)`` + ``log1p``; the same
  library size on both sides, so that cell-eval does not re-normalise either);
* the perturbation in ``obs[pert_col]`` (default ``"target_gene"``, cell-eval's CLI default), the
  controls under ``control_label`` on both sides.

A model's side is its generated cells (artifact off). A baseline, which predicts only a mean effect,
is written as cell-eval builds its own mean baseline: every predicted cell of a perturbation is the
control mean plus the predicted effect (:func:`baseline_cells`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._atomic import write_h5ad_atomic
from .._validation import get_counts
from .agreement import ATE, _frame

__all__ = ["cell_eval_layout", "baseline_cells", "write_cell_eval", "run_cell_eval", "has_cell_eval", "PERT_COL"]

#: The perturbation column of the written files (cell-eval's command-line default).
PERT_COL = "target_gene"
_TARGET_SUM = 1e4


def has_cell_eval() -> bool:
    """Whether the optional ``cell-eval`` package is importable."""
    return importlib.util.find_spec("cell_eval") is not None


def cell_eval_layout(
    cells: AnnData, *, perturbation_key: str, control_label: str, keep: Sequence[str] | None = None,
    pert_col: str = PERT_COL, output_control: str | None = None,
) -> AnnData:
    """Counts (observed or generated) as cell-eval reads them: ``ln(1 + 1e4 x / Σx)``, labels in ``pert_col``.

    Parameters
    ----------
    cells
        Cells × genes of raw or sampled counts (``X``).
    perturbation_key, control_label
        Where the labels are and which one is the control.
    keep
        Perturbations to keep besides the control; ``None`` keeps every cell.
    pert_col
        Column written for cell-eval.
    output_control
        Control label written (default ``control_label``).

    Returns
    -------
    AnnData
        Float32 CSR ``X``, ``obs[pert_col]`` (strings), the genes of ``cells``. Cells with zero
        counts are dropped (their normalisation is undefined).
    """
    labels = cells.obs[perturbation_key].astype(str).to_numpy()
    mask = np.ones(cells.n_obs, dtype=bool) if keep is None else np.isin(labels, [control_label, *keep])
    X = get_counts(cells, None)
    X = (
        sp.csr_matrix(X[np.flatnonzero(mask)], dtype=np.float64)
        if not sp.issparse(X)
        else sp.csr_matrix(X[np.flatnonzero(mask)], dtype=np.float64)
    )
    totals = np.asarray(X.sum(axis=1)).ravel()
    nonzero = totals > 0
    X, labels = X[np.flatnonzero(nonzero)], labels[mask][nonzero]
    X = sp.diags(_TARGET_SUM / totals[nonzero]) @ X
    X.data = np.log1p(X.data)
    labels = np.where(labels == control_label, output_control or control_label, labels)
    obs = pd.DataFrame({pert_col: pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(labels))])
    return AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=obs, var=pd.DataFrame(index=cells.var_names.astype(str)))


def baseline_cells(
    prediction: ATE,
    real: AnnData,
    *,
    control_label: str,
    n_cells: int | dict[str, int] = 100,
    pert_col: str = PERT_COL,
) -> AnnData:
    """Cells for a mean-effect prediction: the real controls' mean, shifted by each predicted ATE.

    Parameters
    ----------
    prediction
        Perturbations × genes ATE in cradlekit's metric space (``log2(1e4 x / Σx + 1)``).
    real
        The real side, from :func:`cell_eval_layout` (its controls give the mean).
    control_label
        The control label in ``real.obs[pert_col]``.
    n_cells
        Cells per perturbation (an int, or per perturbation, e.g. the real counts).
    pert_col
        The perturbation column.

    Returns
    -------
    AnnData
        ``n`` identical cells per perturbation, ``ln(2) · ATE`` added to the controls' mean in
        cell-eval's ``ln(1 + ·)`` space (clipped at 0, a log-expression's floor), followed by
        the real control cells.
    """
    frame = _frame(prediction, "prediction")
    genes = real.var_names.astype(str)
    frame = frame.reindex(columns=genes)
    if frame.isna().any().any():
        raise ValueError("the prediction must hold every gene of the real cells")
    controls = real[real.obs[pert_col].astype(str) == control_label]
    mean = np.asarray(controls.X.mean(axis=0)).ravel()
    blocks, labels = [], []
    for p, row in frame.iterrows():
        n = int(n_cells[p] if isinstance(n_cells, dict) else n_cells)
        profile = np.clip(mean + np.log(2.0) * row.to_numpy(), 0.0, None)
        blocks.append(np.repeat(profile[None, :], n, axis=0))
        labels += [p] * n
    X = np.vstack(blocks) if blocks else np.zeros((0, len(genes)))
    obs = pd.DataFrame({pert_col: labels}, index=[f"p{i}" for i in range(len(labels))])
    pred = AnnData(X=sp.csr_matrix(X, dtype=np.float32), obs=obs, var=pd.DataFrame(index=genes))
    ctrl = AnnData(X=sp.csr_matrix(controls.X, dtype=np.float32), obs=controls.obs[[pert_col]].astype(str),
                   var=pd.DataFrame(index=genes))
    out = AnnData(X=sp.vstack([pred.X, ctrl.X]).tocsr(), obs=pd.concat([pred.obs, ctrl.obs]), var=pred.var)
    out.obs[pert_col] = pd.Categorical(out.obs[pert_col].astype(str))
    out.obs_names_make_unique()
    return out


def write_cell_eval(pred: AnnData, real: AnnData, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``pred.h5ad`` and ``real.h5ad`` (atomically) for ``cell-eval run -ap pred.h5ad -ar real.h5ad``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "pred.h5ad", out / "real.h5ad"
    write_h5ad_atomic(pred, paths[0])
    write_h5ad_atomic(real, paths[1])
    return paths


def run_cell_eval(
    pred: AnnData, real: AnnData, *, control_label: str, out_dir: str | os.PathLike, pert_col: str = PERT_COL,
    profile: str = "full", num_threads: int = 1,
) -> tuple[pd.DataFrame, pd.Series]:
    """Run cell-eval's ``MetricsEvaluator`` on the two sides (written to ``out_dir`` first).

    Parameters
    ----------
    pred, real
        From :func:`cell_eval_layout` / :func:`baseline_cells`, the same genes and control label.
    control_label, pert_col
        The control label and the perturbation column.
    out_dir
        Folder for the two h5ad files and cell-eval's CSV outputs.
    profile
        cell-eval's metric profile (``"full"``, ``"minimal"``, ...).
    num_threads
        Threads of its differential expression.

    Returns
    -------
    per_perturbation, aggregate
        cell-eval's results (one row per perturbation) and the mean of each metric over the
        perturbations (cell-eval's ``agg_results`` "mean" row).

    Raises
    ------
    ImportError
        cell-eval is not installed (``pip install 'cradlekit[evaluate]'``).
    """
    if not has_cell_eval():
        raise ImportError("run_cell_eval needs the optional cell-eval package: pip install 'cradlekit[evaluate]'")
    from cell_eval import MetricsEvaluator

    write_cell_eval(pred, real, out_dir)
    evaluator = MetricsEvaluator(
        adata_pred=pred, adata_real=real, control_pert=control_label, pert_col=pert_col,
        num_threads=int(num_threads), outdir=str(out_dir),
    )
    results, agg = evaluator.compute(profile=profile, write_csv=True)
    per = results.to_pandas()
    agg = agg.to_pandas()
    mean = (
        agg.loc[agg.iloc[:, 0].astype(str) == "mean"].iloc[0, 1:]
        if "statistic" in agg.columns
        else agg.mean(numeric_only=True)
    )
    return per, pd.to_numeric(pd.Series(mean), errors="coerce")


def cell_eval_row(
    aggregate: pd.Series, *, prefix: str = "celleval_", metrics: Sequence[str] | None = None
) -> dict[str, Any]:
    """cell-eval's aggregate metrics as result-row columns (``celleval_<metric>``)."""
    keep = aggregate.index if metrics is None else [m for m in metrics if m in aggregate.index]
    return {f"{prefix}{m}": float(aggregate[m]) for m in keep}
