"""Main QC entry point: label every cell with the six CRADLE-VAE artifact criteria."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from .._keys import CRITERIA, QC_UNS_KEY, UNS_KEY, artifact_key, flag_key
from .._logging import logger
from .._rows import check_counts_in_chunks
from .._validation import check_obs_key, get_counts
from .checks import cannot_fail, describe_metric_sources, doublet_panel_warning, panel_warning
from .doublets import SCRUBLET_CHUNK_CELLS, resolve_doublets
from .genes import GENE_SET_OF_CRITERION
from .metrics import compute_metrics, counts_description
from .record import build_record, log_summary, read_qc_uns, str_list, write_obs
from .sample_batches import apply_batch_flags, batch_thresholds as batch_thresholds_of, warn_batch_spread
from .thresholds import MAD_CRITERIA, SIDE, compute_thresholds, k_label, normalize_ks

__all__ = ["label_artifacts", "qc_summary", "qc_thresholds"]


def label_artifacts(
    adata: AnnData,
    *,
    ks: Iterable[float] = (3, 4, 5),
    layer: str | None = None,
    precomputed: Mapping[str, str] | str | None = "auto",
    run_scrublet: bool = True,
    seed: int = 0,
    batch_key: str | None = "auto",
    batch_thresholds: bool = False,
    gene_symbols: str | None = None,
    use_approx_neighbors: bool | None = None,
    scrublet_chunk_size: int | None = SCRUBLET_CHUNK_CELLS,
    mad_zero_guard: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Label QC artifacts with the six CRADLE-VAE criteria at every MAD multiple ``k``.

    Criteria (one-sided, strict, raw MAD on raw values; see :mod:`cradlekit.qc.thresholds`):
    ``total_counts`` and ``n_genes`` fail below ``median - k·MAD``; ``mito``, ``ribo`` and
    ``hb`` (percent of counts) fail above ``median + k·MAD``; ``doublet`` fails when scrublet
    predicts a doublet. A cell failing any criterion gets ``a_i = 1``.

    Parameters
    ----------
    adata
        Cells × genes AnnData of raw integer UMI counts, gene symbols in ``var_names`` (or in
        ``var[gene_symbols]``).
    ks
        MAD multiples (the paper's 3σ/4σ/5σ are 3, 4, 5); any positive float is allowed.
    layer
        Layer with the raw counts; ``None`` uses ``adata.X``.
    precomputed
        ``{metric: obs column}`` for metrics already in ``obs``, typically computed on the full
        transcriptome when ``adata`` holds a gene subset:
        ``{"total_counts": "ncounts", "n_genes_by_counts": "ngenes"}``. Keys may be
        ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``,
        ``pct_counts_hb`` (percent, 0-100), ``predicted_doublet`` and ``doublet_score``.
        A precomputed ``total_counts`` is also the denominator of the percentages.
        ``"auto"`` (default) uses the mapping a loader recorded in
        ``adata.uns['cradlekit']['precomputed_qc']`` (see :func:`cradlekit.data.load_dataset`),
        if any; ``None`` computes every metric from the counts.
    run_scrublet
        Run scrublet (``sc.pp.scrublet``, default parameters, seeded) on a copy of the counts.
        Ignored when ``predicted_doublet`` is precomputed. With ``False`` an existing
        ``obs['predicted_doublet']`` is used, else the doublet criterion is skipped.
    seed
        scrublet's ``random_state``.
    batch_key
        ``obs`` column of batches; scrublet runs per batch, each batch's own MAD thresholds are
        recorded in ``uns['qc']['batches']`` and a warning is issued when they differ strongly
        from batch to batch (see :mod:`cradlekit.qc.sample_batches`). ``"auto"`` (default): the key
        recorded by :func:`cradlekit.data.setup`, if any.
    batch_thresholds
        Flag each cell against its own batch's thresholds (scanpy-style per-sample QC) instead
        of the dataset-wide ones (the paper's rule, the default). Needs ``batch_key``.
        ``uns['qc']['thresholds']`` keeps the dataset-wide thresholds (those
        :func:`apply_thresholds` uses for generated cells).
    gene_symbols
        ``var`` column with gene symbols when ``var_names`` are not symbols.
    use_approx_neighbors
        scrublet's neighbour search; ``None`` = exact up to 200,000 cells per batch (see
        :mod:`cradlekit.qc.doublets`).
    scrublet_chunk_size
        Batches with more cells are scored by scrublet in seeded random chunks of at most
        this size (see :mod:`cradlekit.qc.doublets`); ``None`` scores them whole.
    mad_zero_guard
        Use the MAD = 0 guard (default). ``False`` reproduces the published rule, which fails
        every cell above the median when MAD = 0.
    copy
        Return a labelled copy instead of modifying ``adata``.

    Returns
    -------
    AnnData or None
        The labelled copy if ``copy=True``, else ``None``. Fields written:

        ``obs``
            ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mt``, ``pct_counts_ribo``,
            ``pct_counts_hb`` (float; NaN for a skipped percentage); ``doublet_score`` (float,
            when scrublet ran or a score was given) and ``predicted_doublet`` (bool, unless the
            doublet criterion is skipped); ``qc_fail_<criterion>_k<k>`` (bool) for criterion in
            ``total_counts``, ``n_genes``, ``mito``, ``ribo``, ``hb``, ``doublet``;
            ``artifact_k<k>`` (uint8 ``a_i``, 0/1). Keys from :func:`cradlekit._keys.flag_key`
            and :func:`cradlekit._keys.artifact_key` (``3.5`` → ``k3p5``).
        ``uns['qc']``
            ``format_version`` (int); ``ks`` (float array); ``thresholds``:
            ``{"k3": {"total_counts": {"lower": t}, "n_genes": {"lower": t},
            "mito": {"upper": t}, "ribo": {"upper": t}, "hb": {"upper": t}}, ...}``;
            ``stats``: per MAD criterion ``metric``, ``side``, ``median``, ``mad``, ``scale``,
            ``scale_kind`` (``"mad"``, ``"mad_off_median"``, ``"constant"``, ``"skipped"``);
            ``gene_sets``: per gene-set criterion ``n_genes`` and ``rule``; ``skipped``
            (criteria skipped, str array); ``metric_source`` (where each metric came from);
            ``scrublet`` (``source``, ``ran`` and, when it ran, ``random_state``,
            ``batch_key``, ``use_approx_neighbors``, default parameters, ``threshold`` per
            batch, ``n_predicted``); ``counts`` (which matrix); ``gene_symbols``; ``n_cells``;
            ``mad_zero_guard``; ``rule`` (text); ``origin`` = ``"label_artifacts"``; and, when
            some metrics came from ``precomputed`` columns, ``panel``: ``thresholds``, ``stats``
            and ``metric_source`` recomputed from the counts of the genes in ``adata`` only (the
            basis on which generated cells, which have only these genes, are judged);
            ``cannot_fail``: ``{k label: criteria}`` whose threshold no cell can cross (a
            warning is issued, see :mod:`cradlekit.qc.checks`); with a batch key, ``batches``:
            ``key``, ``per_batch_thresholds``, ``differ_strongly`` (criteria) and per batch
            ``n_cells``, ``stats``, ``thresholds``.
            Skipped thresholds are NaN; everything survives ``write_h5ad``/``read_h5ad``.

    Warns
    -----
    UserWarning
        A threshold that cannot fail any cell; metrics computed on a small gene panel or on a
        partial set of MT genes without ``precomputed`` full-transcriptome metrics; scrublet run
        on a panel too small to support doublet calls; per-batch thresholds that differ strongly.

    Raises
    ------
    cradlekit.errors.InvalidCountsError
        Counts that are non-integer, negative or NaN; invalid precomputed values.
    cradlekit.errors.MissingKeyError
        Missing layer, ``batch_key``, ``gene_symbols`` or precomputed column.
    ValueError
        Invalid ``ks`` or unknown precomputed metric; scrublet cannot run (too few cells).

    Examples
    --------
    >>> import cradlekit as ck
    >>> ck.qc.label_artifacts(adata, precomputed={"total_counts": "ncounts"})  # doctest: +SKIP
    >>> ck.qc.qc_summary(adata)  # doctest: +SKIP
    """
    ks_t = normalize_ks(ks)
    if copy:
        adata = adata.copy()
    precomputed, batch_key = _resolve_sources(adata, precomputed, batch_key, batch_thresholds)
    counts = get_counts(adata, layer)
    check_counts_in_chunks(counts, what=counts_description(layer))
    if batch_key is not None:
        check_obs_key(adata, batch_key, what="batch_key")

    metrics = compute_metrics(
        adata, layer=layer, gene_symbols=gene_symbols, precomputed=precomputed, validate=False
    )
    doublets, scrub = resolve_doublets(
        adata,
        counts=counts,
        precomputed=metrics.precomputed_doublets,
        precomputed_column=(precomputed or {}).get("predicted_doublet"),
        run=run_scrublet,
        seed=seed,
        batch_key=batch_key,
        use_approx_neighbors=use_approx_neighbors,
        chunk_size=scrublet_chunk_size,
    )
    skipped = list(metrics.skipped)
    if doublets is None:
        skipped.append("doublet")
        _warn_doublet_skipped()
    whole = bool(adata.uns.get(UNS_KEY, {}).get("whole_transcriptome", False))
    panel_warning(n_genes=adata.n_vars, n_mt_genes=metrics.gene_set_sizes.get("mito", 0),
                  metric_source=metrics.metric_source, whole_transcriptome=whole)
    doublet_panel_warning(n_genes=adata.n_vars, n_cells=adata.n_obs, scrublet=scrub, whole_transcriptome=whole)
    logger.info(describe_metric_sources(metrics.metric_source, n_genes=adata.n_vars))
    stats, thresholds = compute_thresholds(
        metrics.table, ks_t, skipped=metrics.skipped, mad_zero_guard=mad_zero_guard
    )
    write_obs(adata, metrics, doublets, thresholds, ks_t)
    batch_record = None
    if batch_key is not None:
        batch_record = _label_batches(adata, metrics, stats, ks_t, batch_key=batch_key,
                                      batch_thresholds=batch_thresholds, mad_zero_guard=mad_zero_guard)
    impossible = cannot_fail(thresholds, ks_t, skipped=metrics.skipped)
    record = build_record(
        origin="label_artifacts",
        ks=ks_t,
        thresholds=thresholds,
        stats=stats,
        metrics=metrics,
        gene_set_rules={c: rule for c, (_, rule) in GENE_SET_OF_CRITERION.items()},
        skipped=skipped,
        scrublet=scrub,
        counts=counts_description(layer),
        gene_symbols=gene_symbols,
        n_cells=adata.n_obs,
        mad_zero_guard=mad_zero_guard,
    )
    if any(str(src).startswith("obs[") for src in metrics.metric_source.values()):
        record["panel"] = _panel_record(adata, ks_t, layer=layer, gene_symbols=gene_symbols,
                                        mad_zero_guard=mad_zero_guard)
    record["cannot_fail"] = {k: str_list(v) for k, v in impossible.items()}
    if batch_record is not None:
        record["batches"] = batch_record
    adata.uns[QC_UNS_KEY] = record
    log_summary(adata, ks_t, "label_artifacts")
    return adata if copy else None


def _resolve_sources(
    adata: AnnData, precomputed: Mapping[str, str] | str | None, batch_key: str | None, batch_thresholds: bool
) -> tuple[dict[str, str] | None, str | None]:
    """``precomputed`` and ``batch_key`` with ``"auto"`` replaced by what :func:`cradlekit.data.setup`
    or a loader recorded in ``uns['cradlekit']``."""
    if isinstance(precomputed, str):
        if precomputed != "auto":
            raise ValueError(f"precomputed must be a mapping, None or 'auto', got {precomputed!r}")
        precomputed = dict(adata.uns.get(UNS_KEY, {}).get("precomputed_qc", {})) or None
        if precomputed:
            logger.info(f"using precomputed full-transcriptome QC metrics from obs: {precomputed}")
    if batch_key == "auto":
        batch_key = adata.uns.get(UNS_KEY, {}).get("batch_key")
    if batch_thresholds and batch_key is None:
        raise ValueError("batch_thresholds=True needs batch_key= (an obs column of batches)")
    return precomputed, batch_key


def _warn_doublet_skipped() -> None:
    msg = (
        "QC criterion 'doublet' skipped: run_scrublet=False and no predicted_doublet in obs "
        "(pass precomputed={'predicted_doublet': column}). Its flags are all False."
    )
    warnings.warn(msg, UserWarning, stacklevel=3)


def _label_batches(
    adata: AnnData, metrics, stats: dict, ks_t: tuple[float, ...], *, batch_key: str, batch_thresholds: bool,
    mad_zero_guard: bool,
) -> dict:
    """Each batch's thresholds (a warning when they differ strongly); with ``batch_thresholds`` the
    cells are flagged with their own batch's. Returns ``uns['qc']['batches']``."""
    batches = adata.obs[batch_key].astype(str).to_numpy()
    per_batch = batch_thresholds_of(metrics.table, batches, ks_t, skipped=metrics.skipped,
                                    mad_zero_guard=mad_zero_guard)
    strong = warn_batch_spread(per_batch, stats, ks_t, batch_key=batch_key, skipped=metrics.skipped)
    if batch_thresholds:
        apply_batch_flags(adata, metrics.table, batches, per_batch, ks_t)
    return {"key": batch_key, "per_batch_thresholds": bool(batch_thresholds),
            "differ_strongly": str_list(strong), "batches": per_batch}


def _panel_record(
    adata: AnnData, ks_t: tuple[float, ...], *, layer: str | None, gene_symbols: str | None, mad_zero_guard: bool
) -> dict:
    """Thresholds, statistics and metric sources recomputed from the genes in ``adata`` only.

    Generated cells only have the modelled genes: when some metrics came from full-transcriptome
    ``obs`` columns, thresholds on that basis are kept as well, so :func:`apply_thresholds` can
    compare like with like (see its ``basis`` option)."""
    panel = compute_metrics(adata, layer=layer, gene_symbols=gene_symbols, precomputed=None,
                            validate=False, warn_missing=False)
    panel_stats, panel_thresholds = compute_thresholds(
        panel.table, ks_t, skipped=panel.skipped, mad_zero_guard=mad_zero_guard
    )
    return {"thresholds": panel_thresholds, "stats": panel_stats, "metric_source": dict(panel.metric_source)}


def qc_summary(adata: AnnData) -> pd.DataFrame:
    """Fail/pass counts per criterion and in total (``any`` = ``a_i``) for each stored ``k``.

    Parameters
    ----------
    adata
        AnnData labelled by :func:`label_artifacts` or :func:`cradlekit.qc.apply_thresholds`.

    Returns
    -------
    pandas.DataFrame
        Rows ``total_counts``, ``n_genes``, ``mito``, ``ribo``, ``hb``, ``doublet``, ``any``;
        columns ``<k label>_n_fail``, ``<k label>_n_pass`` and ``<k label>_pct_fail`` for each
        stored ``k``, plus ``skipped`` (bool). E.g. ``df.loc["mito", "k3_n_fail"]``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        If ``adata`` has not been labelled.
    """
    qc = read_qc_uns(adata)
    skipped = {str(s) for s in np.asarray(qc["skipped"]).tolist()}
    ks = [float(k) for k in np.asarray(qc["ks"]).ravel()]
    n = adata.n_obs
    rows = list(CRITERIA) + ["any"]
    data: dict[str, list] = {}
    for k in ks:
        fails = []
        for criterion in rows:
            key = artifact_key(k) if criterion == "any" else flag_key(criterion, k)
            column = check_obs_key(adata, key, what="QC column")
            fails.append(int(np.asarray(column, dtype=bool).sum()))
        fails_arr = np.asarray(fails)
        data[f"{k_label(k)}_n_fail"] = fails
        data[f"{k_label(k)}_n_pass"] = list(n - fails_arr)
        data[f"{k_label(k)}_pct_fail"] = list(100.0 * fails_arr / max(n, 1))
    data["skipped"] = [c in skipped for c in rows]
    return pd.DataFrame(data, index=pd.Index(rows, name="criterion"))


def qc_thresholds(adata: AnnData | Mapping) -> pd.DataFrame:
    """The MAD rule of each criterion and its threshold at every stored ``k``, from ``uns['qc']``.

    Parameters
    ----------
    adata
        AnnData labelled by :func:`label_artifacts`, or its ``uns['qc']``.

    Returns
    -------
    pandas.DataFrame
        One row per MAD criterion (``total_counts``, ``n_genes``, ``mito``, ``ribo``, ``hb``):
        ``metric`` (the ``obs`` column), ``source`` (where its values came from: an ``obs``
        column such as ``obs['total_counts_full']``, or the genes of the counts), ``fails``
        (``below`` or ``above``), ``median``, ``mad``,
        ``scale`` (the MAD, or the MAD = 0 guard's scale), ``scale_kind``, ``skipped`` and
        ``k<k>`` thresholds (NaN when skipped). E.g. ``df.loc["mito", "k3"]``.

    Raises
    ------
    cradlekit.errors.MissingKeyError
        If the record is absent or incomplete.
    """
    qc = read_qc_uns(adata)
    skipped = {str(s) for s in np.asarray(qc["skipped"]).tolist()}
    stats = qc.get("stats", {})
    ks = [float(k) for k in np.asarray(qc["ks"]).ravel()]
    rows = {}
    for criterion in MAD_CRITERIA:
        s = stats.get(criterion, {})
        side = SIDE[criterion]
        row = {
            "metric": s.get("metric", ""),
            "source": str(qc.get("metric_source", {}).get(s.get("metric", ""), "")),
            "fails": "below" if side == "lower" else "above",
            "median": float(s.get("median", np.nan)),
            "mad": float(s.get("mad", np.nan)),
            "scale": float(s.get("scale", np.nan)),
            "scale_kind": str(s.get("scale_kind", "")),
            "skipped": criterion in skipped,
        }
        for k in ks:
            row[k_label(k)] = float(qc["thresholds"][k_label(k)][criterion][side])
        rows[criterion] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("criterion")
