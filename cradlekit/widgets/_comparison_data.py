"""The cells of a :class:`~cradlekit.widgets.ComparisonExplorer`: observed and generated cells in one AnnData.

:func:`joint_cells` draws up to ``n`` observed cells of each perturbation (QC-passed ones by default:
generated cells with the artifact latent off are meant to be clean) and ``n`` generated cells, in one
AnnData with ``obs['perturbation']``, ``obs['origin']`` (``observed`` / ``generated``) and
``obs['group']`` (``"<perturbation> · <origin>"``, the rows of the dot plot). :func:`top_genes` picks
the genes each perturbation changes most. Both run in the controller's background thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..evaluate.log_normalize import perturbseq_normalize

__all__ = ["ORIGINS", "joint_cells", "top_genes", "group_label", "gene_summary"]

ORIGINS = ("observed", "generated")


def group_label(perturbation: str, origin: str) -> str:
    """Row label of the dot plot: ``"KLF1 · observed"``."""
    return f"{perturbation} · {origin}"


def joint_cells(
    adata: AnnData,
    generated: AnnData,
    perturbations: Sequence[str],
    *,
    n: int,
    seed: int,
    perturbation_key: str,
    artifact_key: str | None,
) -> AnnData:
    """Observed (up to ``n`` per perturbation, seeded; QC-passed when ``artifact_key`` is given) and generated cells.

    ``X`` holds counts (sparse, float32); ``layers['lognorm']`` the paper's ``log2(1e4·x/Σx + 1)``.
    """
    rng = np.random.default_rng(seed)
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    ok = np.ones(adata.n_obs, dtype=bool)
    if artifact_key is not None:
        ok = np.asarray(adata.obs[artifact_key], dtype=float) == 0
    rows = []
    for p in perturbations:
        idx = np.flatnonzero((labels == p) & ok)
        if idx.size > n:
            idx = np.sort(rng.choice(idx, size=n, replace=False))
        rows.append(idx)
    rows_obs = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    gen_labels = generated.obs["perturbation"].astype(str).to_numpy()
    keep_gen = np.isin(gen_labels, list(perturbations))
    X = sp.vstack([sp.csr_matrix(adata.X[rows_obs], dtype=np.float32),
                   sp.csr_matrix(generated.X[keep_gen], dtype=np.float32)]).tocsr()  # fmt: skip
    perts = np.concatenate([labels[rows_obs], gen_labels[keep_gen]])
    origin = np.repeat(ORIGINS, [rows_obs.size, int(keep_gen.sum())])
    names = [f"observed:{c}" for c in adata.obs_names[rows_obs]]
    names += [f"generated:{c}" for c in generated.obs_names[keep_gen]]
    order = list(perturbations)
    obs = pd.DataFrame({
        "perturbation": pd.Categorical(perts, categories=order),
        "origin": pd.Categorical(origin, categories=list(ORIGINS)),
        "group": pd.Categorical([group_label(p, o) for p, o in zip(perts, origin, strict=True)],
                                categories=[group_label(p, o) for p in order for o in ORIGINS]),
    }, index=pd.Index(names, name="cell"))  # fmt: skip
    cells = AnnData(X=X, obs=obs, var=adata.var[[]].copy())
    cells.layers["lognorm"] = sp.csr_matrix(perturbseq_normalize(cells, zero_total="zero", dtype=np.float32))
    return cells


def _means(cells: AnnData, mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return np.full(cells.n_vars, np.nan)
    return np.asarray(cells.layers["lognorm"][mask].mean(axis=0), dtype=np.float64).ravel()


def top_genes(cells: AnnData, perturbations: Sequence[str], control: str, n_genes: int) -> dict[str, list[str]]:
    """The ``n_genes`` genes each perturbation changes most against the control (largest absolute
    difference of mean ``lognorm``), from the observed cells when it has any, else from the generated ones."""
    out: dict[str, list[str]] = {}
    pert = cells.obs["perturbation"].astype(str).to_numpy()
    origin = cells.obs["origin"].astype(str).to_numpy()
    for p in perturbations:
        if p == control:
            continue
        source = "observed" if ((pert == p) & (origin == "observed")).any() else "generated"
        diff = _means(cells, (pert == p) & (origin == source)) - _means(cells, (pert == control) & (origin == source))
        if not np.isfinite(diff).any():
            continue
        order = np.argsort(-np.abs(np.nan_to_num(diff)), kind="stable")[:n_genes]
        out[p] = [str(cells.var_names[i]) for i in order]
    return out


def gene_summary(cells: AnnData, genes: dict[str, list[str]]) -> pd.DataFrame:
    """Mean ``lognorm`` and fraction of cells expressing each top gene, per perturbation and origin (the
    numbers behind the dot plot): one row per (perturbation, gene)."""
    rows = []
    group = cells.obs["group"].astype(str).to_numpy()
    for p, names in genes.items():
        for g in names:
            col = cells.var_names.get_loc(g)
            row = {"perturbation": p, "gene": g}
            for origin in ORIGINS:
                mask = group == group_label(p, origin)
                values = cells.layers["lognorm"][mask][:, col]
                values = np.asarray(values.toarray() if sp.issparse(values) else values).ravel()
                row[f"{origin} mean"] = float(values.mean()) if values.size else np.nan
                row[f"{origin} fraction"] = float((values > 0).mean()) if values.size else np.nan
                row[f"{origin} cells"] = int(values.size)
            rows.append(row)
    return pd.DataFrame(rows).set_index(["perturbation", "gene"]) if rows else pd.DataFrame()
