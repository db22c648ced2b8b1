"""Per-criterion QC pass rates and gene violins of a :class:`~cradlekit.widgets.PerturbationExplorer`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from .._keys import CRITERIA, artifact_key, flag_key
from ._latent_draw import gene_values
from ._views import DATA_COLOR, GENERATED_COLOR

__all__ = ["criteria_table", "doublet_statement", "gene_violins", "LABELS_COLUMN"]

#: Column of :func:`criteria_table` with the observed cells on their own QC labels (another basis).
LABELS_COLUMN = "data pass % (data's labels)"

_MAD = tuple(c for c in CRITERIA if c != "doublet")


def _rates(cells: AnnData, k: float) -> dict[str, float]:
    """% of cells passing each criterion, every MAD criterion, and all six, at ``k``."""
    out: dict[str, float] = {}
    if cells.n_obs == 0:
        return {}
    fails_mad = np.zeros(cells.n_obs, dtype=bool)
    for c in CRITERIA:
        col = flag_key(c, k)
        failed = np.asarray(cells.obs[col], dtype=bool) if col in cells.obs else np.zeros(cells.n_obs, dtype=bool)
        out[c] = 100.0 * (1.0 - failed.mean())
        if c != "doublet":
            fails_mad |= failed
    out["five MAD criteria"] = 100.0 * (1.0 - fails_mad.mean())
    col = artifact_key(k)
    out["all six (QCPR)"] = 100.0 * (1.0 - np.asarray(cells.obs[col], dtype=float).mean()) if col in cells.obs \
        else float("nan")  # fmt: skip
    return out


def criteria_table(
    generated: AnnData, data: AnnData | None, k: float, *, labelled: AnnData | None = None
) -> pd.DataFrame:
    """% passing per criterion at ``k``: generated cells vs the observed cells of the same perturbation,
    both on one QC basis; ``labelled``: the same observed cells on their own QC labels (another basis),
    as a third column :data:`LABELS_COLUMN`."""
    table = pd.DataFrame({"generated pass %": pd.Series(_rates(generated, k))})
    data_rates = _rates(data, k) if data is not None and data.n_obs else {}
    table["data pass %"] = pd.Series(data_rates).reindex(table.index) if data_rates else np.nan
    if labelled is not None and labelled.n_obs:
        table[LABELS_COLUMN] = pd.Series(_rates(labelled, k)).reindex(table.index)
    table.index.name = "criterion"
    return table


def doublet_statement(generated: AnnData, n_scored: int, scrublet_ran: bool) -> str:
    """How the doublet criterion of the generated cells was judged, in one sentence."""
    record = generated.uns.get("qc", {}).get("scrublet", {})
    if not scrublet_ran:
        return f"Doublets: not called ({record.get('source', 'skipped')}); the doublet criterion passes every cell."
    return (f"Doublets were judged by scrublet run on the {n_scored} generated cells alone (controls and the "
            "perturbation together, seeded). Generated cells are singlets by construction and scrublet is unreliable "
            "on a few hundred cells, so the headline uses the five MAD criteria and the doublet rate is shown "
            "apart.")  # fmt: skip


def gene_violins(groups: dict[str, np.ndarray], gene: str, title: str) -> Figure:
    """Violins of one gene's ``log2(1e4·x/Σx + 1)`` per group (data blue, generated green)."""
    fig = Figure(figsize=(5.6, 3.2), layout="constrained")
    ax = fig.subplots()
    names = [n for n, v in groups.items() if len(v)]
    values = [groups[n] for n in names]
    if not names:
        ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
        return fig
    parts = ax.violinplot(values, showmedians=True, widths=0.8)
    for body, name in zip(parts["bodies"], names, strict=True):
        body.set_facecolor(GENERATED_COLOR if name.startswith("generated") else DATA_COLOR)
        body.set_alpha(0.6)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={len(v)})" for n, v in zip(names, values, strict=True)],
                  fontsize="small")  # fmt: skip
    ax.set_ylabel(f"{gene} log2(1e4·x/Σx + 1)")
    ax.set_title(title, fontsize="medium")
    return fig


def gene_groups(data: AnnData | None, data_mask: np.ndarray | None, data_ctrl: np.ndarray | None,
                generated: AnnData, label: str, control: str, gene: str) -> dict[str, np.ndarray]:
    """Values of ``gene`` in the observed and generated control and perturbation cells."""
    gen_labels = generated.obs["perturbation"].astype(str).to_numpy()
    gen_values = gene_values(generated, gene)
    out: dict[str, np.ndarray] = {}
    if data is not None and data_ctrl is not None and data_ctrl.any():
        out[f"data {control}"] = gene_values(data[data_ctrl], gene)
    out[f"generated {control}"] = gen_values[gen_labels == control]
    if label != control:
        if data is not None and data_mask is not None and data_mask.any():
            out[f"data {label}"] = gene_values(data[data_mask], gene)
        out[f"generated {label}"] = gen_values[gen_labels == label]
    return out
