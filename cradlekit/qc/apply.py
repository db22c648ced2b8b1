"""Apply a reference dataset's stored QC thresholds to other cells (e.g. generated cells, QCPR)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
from anndata import AnnData

from .._deprecated import module_getattr
from .._keys import QC_UNS_KEY, artifact_key
from .._logging import logger
from .._rows import check_counts_in_chunks
from .._validation import check_obs_key, get_counts
from ..errors import MissingKeyError
from .doublets import resolve_doublets
from .metrics import compute_metrics, counts_description
from .record import build_record, log_summary, plain, read_qc_uns, write_obs
from .thresholds import MAD_CRITERIA, SIDE, k_label, normalize_ks

__all__ = ["apply_thresholds", "pass_fraction"]


def apply_thresholds(
    adata_generated: AnnData,
    thresholds: AnnData | Mapping,
    *,
    ks: Iterable[float] | None = None,
    layer: str | None = None,
    precomputed: Mapping[str, str] | None = None,
    run_scrublet: bool = True,
    seed: int = 0,
    batch_key: str | None = None,
    gene_symbols: str | None = None,
    use_approx_neighbors: bool | None = None,
    basis: str = "auto",
    copy: bool = False,
) -> AnnData | None:
    """Flag cells with a reference dataset's **stored** thresholds (not recomputed ones).

    The metrics are computed on ``adata_generated`` as in
    :func:`cradlekit.qc.label_artifacts`; each MAD criterion is compared with the reference
    threshold under the same one-sided strict rule; scrublet runs on ``adata_generated``
    itself (doublets are a property of the generated cells, not a threshold). Criteria skipped
    in the reference stay skipped.

    Parameters
    ----------
    adata_generated
        Cells × genes AnnData of integer counts (e.g. cells sampled from a model).
    thresholds
        The reference AnnData labelled by :func:`~cradlekit.qc.label_artifacts`, or its
        ``uns['qc']`` (also after ``write_h5ad``/``read_h5ad``).
    ks
        MAD multiples to apply; ``None`` applies every ``k`` stored in the reference.
    layer, precomputed, gene_symbols
        As in :func:`~cradlekit.qc.label_artifacts`, for ``adata_generated``.
    run_scrublet, seed, batch_key, use_approx_neighbors
        Doublet calling on ``adata_generated``, as in :func:`~cradlekit.qc.label_artifacts`.
    basis
        Which stored thresholds to apply when the reference used full-transcriptome metrics
        from ``obs`` (``precomputed``) but these cells only have the modelled genes:
        ``"panel"`` uses the reference's thresholds recomputed on its modelled genes
        (``uns['qc']['panel']``), ``"reference"`` the thresholds the reference was labelled
        with. ``"auto"`` (default) picks ``"panel"`` when the reference has a panel record and
        no ``precomputed`` metrics are given here, else ``"reference"``.
    copy
        Return a labelled copy instead of modifying ``adata_generated``.

    Returns
    -------
    AnnData or None
        The labelled copy if ``copy=True``, else ``None``. Writes the same ``obs`` columns as
        :func:`~cradlekit.qc.label_artifacts` and ``uns['qc']`` with the reference's
        ``thresholds``, ``stats``, ``mad_zero_guard`` (for the applied ``ks``), this data's
        ``metric_source``, ``gene_sets``, ``skipped``, ``scrublet``, ``basis`` (``"panel"`` or
        ``"reference"``) and ``origin = "apply_thresholds"``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        Absent or incomplete QC record, a ``k`` not stored in it, a missing layer or column.
    cradlekit.errors.InvalidCountsError
        Invalid counts in ``adata_generated``.
    """
    ref = read_qc_uns(thresholds)
    stored = tuple(float(k) for k in np.asarray(ref["ks"]).ravel())
    ks_t = stored if ks is None else normalize_ks(ks)
    unknown = [k for k in ks_t if k not in stored]
    if unknown:
        raise MissingKeyError(
            f"k={[f'{k:g}' for k in unknown]} not stored in the reference QC record "
            f"(stored: {[f'{k:g}' for k in stored]})"
        )
    if basis not in ("auto", "panel", "reference"):
        raise ValueError(f"basis must be 'auto', 'panel' or 'reference', got {basis!r}")
    has_panel = "panel" in ref
    if basis == "panel" and not has_panel:
        raise MissingKeyError("the reference QC record has no 'panel' thresholds (it used no precomputed metrics)")
    use_panel = basis == "panel" or (basis == "auto" and has_panel and not precomputed)
    source = ref["panel"] if use_panel else ref
    if use_panel:
        logger.info("applying the reference's thresholds recomputed on its modelled genes (basis='panel')")
    ref_thresholds = {k_label(k): plain(source["thresholds"][k_label(k)]) for k in ks_t}
    ref_skipped = {str(s) for s in np.asarray(ref["skipped"]).tolist()}
    if use_panel:  # on the panel basis the reference skipped the criteria its genes lack, too
        stats = dict(source.get("stats", {}))
        ref_skipped |= {str(c) for c, st in stats.items() if str(st.get("scale_kind")) == "skipped"}

    if copy:
        adata_generated = adata_generated.copy()
    adata = adata_generated
    counts = get_counts(adata, layer)
    check_counts_in_chunks(counts, what=counts_description(layer))
    if batch_key is not None:
        check_obs_key(adata, batch_key, what="batch_key")
    metrics = compute_metrics(
        adata,
        layer=layer,
        gene_symbols=gene_symbols,
        precomputed=precomputed,
        validate=False,
        warn_missing=False,
    )
    newly_skipped = [c for c in metrics.skipped if c not in ref_skipped]
    if newly_skipped:
        msg = (
            f"QC criteria {newly_skipped} were applied in the reference but are skipped here "
            "because their genes are absent: their flags are all False"
        )
        warnings.warn(msg, UserWarning, stacklevel=2)

    ref_source = source.get("metric_source", {})
    for metric in ("total_counts", "n_genes_by_counts"):
        ref_from_obs = str(ref_source.get(metric, "")).startswith("obs[")
        here_from_obs = metrics.metric_source[metric].startswith("obs[")
        if ref_from_obs != here_from_obs:
            warnings.warn(
                f"{metric}: reference thresholds came from {ref_source.get(metric)!r} but here "
                f"it is {metrics.metric_source[metric]!r}; the comparison may not be like for like",
                UserWarning, stacklevel=2,
            )

    skipped = sorted(ref_skipped | set(metrics.skipped))
    for criterion in MAD_CRITERIA:
        if criterion in skipped:
            for label in ref_thresholds:
                ref_thresholds[label][criterion] = {SIDE[criterion]: float("nan")}
    if "doublet" in ref_skipped:
        doublets, scrub = None, {"source": "skipped (skipped in the reference)", "ran": False}
    else:
        doublets, scrub = resolve_doublets(
            adata,
            counts=counts,
            precomputed=metrics.precomputed_doublets,
            precomputed_column=(precomputed or {}).get("predicted_doublet"),
            run=run_scrublet,
            seed=seed,
            batch_key=batch_key,
            use_approx_neighbors=use_approx_neighbors,
        )
        if doublets is None:
            skipped.append("doublet")
            msg = "QC criterion 'doublet' skipped: run_scrublet=False and no predicted_doublet"
            warnings.warn(msg, UserWarning, stacklevel=2)

    write_obs(adata, metrics, doublets, ref_thresholds, ks_t)
    ref_rules = ref.get("gene_sets", {})
    adata.uns[QC_UNS_KEY] = build_record(
        origin="apply_thresholds",
        ks=ks_t,
        thresholds=ref_thresholds,
        stats=plain(source.get("stats", {})),
        metrics=metrics,
        gene_set_rules={c: ref_rules.get(c, {}).get("rule", "") for c in metrics.gene_set_sizes},
        skipped=skipped,
        scrublet=scrub,
        counts=counts_description(layer),
        gene_symbols=gene_symbols,
        n_cells=adata.n_obs,
        mad_zero_guard=bool(ref.get("mad_zero_guard", True)),
    )
    adata.uns[QC_UNS_KEY]["basis"] = "panel" if use_panel else "reference"
    log_summary(adata, ks_t, "apply_thresholds")
    return adata if copy else None


def pass_fraction(adata: AnnData, k: float) -> float:
    """Fraction of cells passing every QC criterion at MAD multiple ``k`` (``a_i == 0``).

    Parameters
    ----------
    adata
        AnnData labelled by :func:`~cradlekit.qc.label_artifacts` or :func:`apply_thresholds`.
    k
        MAD multiple.

    Returns
    -------
    float
        In ``[0, 1]`` (multiply by 100 for the paper's QCPR in %); NaN for zero cells.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        If ``obs`` has no ``artifact_k<k>`` column.
    """
    column = artifact_key(k)
    if column not in adata.obs.columns:
        raise MissingKeyError(
            f"adata.obs[{column!r}] not found: label the cells with label_artifacts or "
            "apply_thresholds with this k first"
        )
    a = np.asarray(adata.obs[column], dtype=np.float64)
    if a.size == 0:
        return float("nan")
    return float(1.0 - a.mean())


#: Old name: ``pass_rate`` (now :func:`pass_fraction`).
__getattr__ = module_getattr(__name__, {"pass_rate": "pass_fraction"}, globals())
