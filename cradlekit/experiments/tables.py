"""Tables 2 and 3 of the paper from a results frame: mean ± sd over seeds, best bold, second underlined.

Rows are grouped by QC multiple ``k`` (the paper's 3σ/4σ/5σ), the models in the paper's order
inside each group; the ``k`` label is shown on the group's first row. Every metric is "higher is
better"; within each (dataset, k, metric) the best mean is bold and the second-best underlined,
compared at the displayed precision (equal displayed values get the same mark). QCPR is in %.

* Table 2: the simple baselines of :mod:`cradlekit.baselines` (no change, mean, additive, linear;
  not in the paper), then Conditional VAE, CPA-VAE, sVAE+, SAMS-VAE, CRADLE-VAE (those present).
* Table 3: CRADLE-VAE, CRADLE-VAE w/o CF, CRADLE-VAE w/o Causal (written when an ablation is present).

Besides the paper's columns, both tables show ``Held-out ATE-ρ (centred)``: ATE-ρ around the mean
training effect (:func:`cradlekit.evaluate.centered_ate_pearson`), which a constant prediction
cannot win.

**Converged runs only.** A row of a results frame with ``converged == False`` (a trained run that
hit its epoch cap before early stopping ended it) is left out of the means; the ``Seeds`` cell then
says how many were left out (e.g. ``3 (2 capped)``) and the model name carries a dagger. Results
written before the ``converged`` column existed are taken as they are.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import write_text_atomic

__all__ = ["MODEL_NAMES", "TABLE_COLUMNS", "TABLE2_MODELS", "TABLE3_MODELS", "BASELINE_MODELS", "summarize",
           "rank_marks", "render_table", "write_tables", "converged_runs"]

#: Display names (paper spelling).
MODEL_NAMES = {
    "no_change": "Baseline: no change", "mean": "Baseline: mean", "additive": "Baseline: additive",
    "linear": "Baseline: linear",
    "cvae": "Conditional VAE", "cpa_vae": "CPA-VAE", "svae_plus": "sVAE+", "sams_vae": "SAMS-VAE",
    "cradle": "CRADLE-VAE", "cradle_wo_cf": "CRADLE-VAE w/o CF", "cradle_wo_causal": "CRADLE-VAE w/o Causal",
}
BASELINE_MODELS = ("no_change", "mean", "additive", "linear")
TABLE2_MODELS = (*BASELINE_MODELS, "cvae", "cpa_vae", "svae_plus", "sams_vae", "cradle")
TABLE3_MODELS = ("cradle", "cradle_wo_cf", "cradle_wo_causal")
#: (results column, header, decimals of mean and sd).
TABLE_COLUMNS = (
    ("heldout_ate_pearson", "Held-out ATE-ρ", 4), ("heldout_ate_r2", "Held-out ATE-R²", 4),
    ("heldout_jaccard", "Held-out Jaccard", 4), ("heldout_ate_pearson_centered", "Held-out ATE-ρ (centred)", 4),
    ("all_ate_pearson", "All ATE-ρ", 4),
    ("all_ate_r2", "All ATE-R²", 4), ("all_jaccard", "All Jaccard", 4), ("qcpr", "QCPR (%)", 2),
)
_KEYS = ["dataset", "k", "model"]


def converged_runs(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The runs that support a verdict (``converged`` true, or no such column), and per
    (dataset, k, model) the number left out because they hit their epoch cap."""
    if "converged" not in results or results.empty:
        return results, pd.Series(dtype=int)
    ok = results["converged"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    capped = results[~ok].groupby(_KEYS, sort=False).size()
    return results[ok], capped


def summarize(results: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, sample sd (ddof 1) and number of seeds per (dataset, k, model) for each table column,
    over converged runs (see :func:`converged_runs`).

    Returns
    -------
    pandas.DataFrame
        Index ``(dataset, k, model)`` in dataset, k and paper model order; columns
        ``<metric>_mean``, ``<metric>_sd``, ``n_seeds`` (converged runs) and ``n_capped`` (runs left
        out because they hit their epoch cap).
    """
    every = results if models is None else results[results["model"].isin(models)]
    frame, capped = converged_runs(every)
    metrics = [c for c, _, _ in TABLE_COLUMNS if c in frame]
    values = frame[_KEYS + metrics].copy()
    values[metrics] = values[metrics].apply(pd.to_numeric, errors="coerce")
    grouped = values.groupby(_KEYS, sort=False)
    out = pd.concat(
        [grouped[metrics].mean().add_suffix("_mean"), grouped[metrics].std(ddof=1).add_suffix("_sd")], axis=1
    )
    out["n_seeds"] = grouped.size()
    missing = capped.index.difference(out.index)
    if len(missing):  # every run of a model capped: a row that says so, without numbers
        empty = pd.DataFrame(np.nan, index=missing, columns=out.columns, dtype=np.float64).assign(n_seeds=0)
        out = pd.concat([out, empty]) if len(out) else empty
    out["n_capped"] = capped.reindex(out.index).fillna(0).astype(int) if len(capped) else 0
    order = list(models) if models is not None else list(MODEL_NAMES)
    rank = {m: i for i, m in enumerate(order)}
    keys = pd.DataFrame(list(out.index), columns=_KEYS)
    keys["_m"] = keys["model"].map(lambda m: rank.get(m, len(rank)))
    keys["_d"] = keys["dataset"].map({d: i for i, d in enumerate(dict.fromkeys(every["dataset"]))})
    order_idx = keys.sort_values(["_d", "k", "_m", "model"], kind="stable").index
    return out.iloc[order_idx]


def rank_marks(summary: pd.DataFrame) -> pd.DataFrame:
    """``"best"``, ``"second"`` or ``""`` per (row, metric): within each (dataset, k), by displayed mean."""
    marks = pd.DataFrame("", index=summary.index, columns=[c for c, _, _ in TABLE_COLUMNS if f"{c}_mean" in summary])
    for col, _, digits in TABLE_COLUMNS:
        if col not in marks:
            continue
        shown = summary[f"{col}_mean"].round(digits)
        for _, group in shown.groupby(level=["dataset", "k"], sort=False):
            distinct = sorted(set(group.dropna()), reverse=True)
            for label, value in zip(("best", "second"), distinct, strict=False):
                marks.loc[group.index[group == value], col] = label
    return marks


def _cell(mean: float, sd: float, n: int, digits: int) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{mean:.{digits}f}"
    return text if n < 2 or sd is None or math.isnan(sd) else f"{text} ± {sd:.{digits}f}"


def _k_label(k: float) -> str:
    k = float(k)
    return f"{int(k) if k.is_integer() else k}σ"


def _rows(summary: pd.DataFrame, marks: pd.DataFrame) -> dict[str, list[list[tuple[str, str]]]]:
    """Per dataset, table rows of (text, mark) cells: model, QC thr., metrics, seeds."""
    cols = [(c, d) for c, _, d in TABLE_COLUMNS if c in marks]
    out: dict[str, list[list[tuple[str, str]]]] = {}
    last = None
    for (dataset, k, model), rec in summary.iterrows():
        rows = out.setdefault(str(dataset), [])
        first = (dataset, k) != last
        last = (dataset, k)
        capped = int(rec.get("n_capped", 0) or 0)
        cells = [(MODEL_NAMES.get(model, model) + (" †" if capped else ""), ""), (_k_label(k) if first else "", "")]
        for col, digits in cols:
            cells.append((_cell(rec[f"{col}_mean"], rec[f"{col}_sd"], int(rec["n_seeds"]), digits),
                          marks.loc[(dataset, k, model), col]))
        cells.append((f"{int(rec['n_seeds'])}" + (f" ({capped} capped)" if capped else ""), ""))
        rows.append(cells)
    return out


def _headers(marks: pd.DataFrame) -> list[str]:
    return ["Model", "QC thr.", *[h for c, h, _ in TABLE_COLUMNS if c in marks], "Seeds"]


def render_table(
    results: pd.DataFrame, models: Sequence[str], *, fmt: str = "md", title: str = "", standalone: bool = True
) -> str:
    """Render Table 2 or 3 (``models``: :data:`TABLE2_MODELS` or :data:`TABLE3_MODELS`) as Markdown or HTML.

    Parameters
    ----------
    results
        One row per run with ``dataset``, ``k``, ``model``, ``seed`` and the metric columns.
    models
        Models to show, in this order (absent ones are skipped).
    fmt
        ``"md"`` (bold ``**…**``, underline ``<u>…</u>``) or ``"html"`` (``<b>``, ``<u>``).
    title
        Heading / caption.
    standalone
        HTML only: a whole document (``True``) or just the tables and the note, to embed in a
        notebook or a page (``False``).
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"fmt must be 'md' or 'html', got {fmt!r}")
    summary = summarize(results, models)
    marks = rank_marks(summary)
    headers = _headers(marks)
    tables = _rows(summary, marks)
    note = (
        "Mean ± sd over converged seeds (early stopping ended the run); best in bold, second-best underlined "
        "per QC threshold and metric; QCPR in %; baselines generate no cells (no QCPR)."
        + (
            " † runs that hit their epoch cap are left out."
            if int(summary.get("n_capped", pd.Series([0])).sum())
            else ""
        )
    )
    if fmt == "md":
        return _markdown(tables, headers, title, note)
    return _html(tables, headers, title, note, standalone=standalone)


def _markdown(tables, headers, title, note) -> str:
    wrap = {"best": "**{}**", "second": "<u>{}</u>", "": "{}"}
    lines = [f"# {title}", ""] if title else []
    for dataset, rows in tables.items():
        lines += [f"## {dataset}", "", "| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
        lines += ["| " + " | ".join(wrap[m].format(t) for t, m in row) + " |" for row in rows]
        lines.append("")
    lines += [note, ""]
    return "\n".join(lines)


def _html(tables, headers, title, note, *, standalone: bool = True) -> str:
    wrap = {"best": "<b>{}</b>", "second": "<u>{}</u>", "": "{}"}
    parts = []
    if standalone:
        parts += ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">", f"<title>{html.escape(title)}</title>",
                  "<style>table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ccc}"
                  "td{text-align:right}td:first-child{text-align:left}</style></head><body>"]
        if title:
            parts.append(f"<h1>{html.escape(title)}</h1>")
    for dataset, rows in tables.items():
        # embedded in a page: compact, one line per cell (the page scrolls sideways if it must)
        style = "" if standalone else ' style="font-size:0.8em;white-space:nowrap"'
        parts.append(f"<table class=\"cradlekit-table\"{style}><caption>{html.escape(dataset)}</caption><thead><tr>")
        parts.append("".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{wrap[m].format(html.escape(t))}</td>" for t, m in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f"<p>{html.escape(note)}</p>")
    if standalone:
        parts += ["</body></html>", ""]
    return "\n".join(parts)


def write_tables(results: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """Write ``table2.md``/``.html`` (if a Table 2 model is present) and ``table3.md``/``.html``
    (if an ablation is present) into ``out``; return the paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    present = set(results["model"]) if len(results) else set()
    files: dict[str, Path] = {}
    specs = [("table2", TABLE2_MODELS, "Table 2: comparison with baselines", present & set(TABLE2_MODELS)),
             ("table3", TABLE3_MODELS, "Table 3: CRADLE-VAE ablations", present & set(TABLE3_MODELS[1:]))]
    for name, models, title, needed in specs:
        if not needed:
            continue
        for fmt, ext in (("md", "md"), ("html", "html")):
            path = out / f"{name}.{ext}"
            write_text_atomic(path, render_table(results, models, fmt=fmt, title=title))
            files[f"{name}_{ext}"] = path
    return files
