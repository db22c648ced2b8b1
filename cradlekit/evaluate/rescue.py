"""Artifact rescue: CRADLE-VAE's counterfactual, artifact-free version of observed QC-failed cells.

For an observed cell ``(x_i, p_i, a_i)`` CRADLE-VAE's guide infers the basal state from the
counts *given* the artifact embedding, ``z_b ~ q(z_b | x_i, z_p, z_a = a_i u)``. Decoding that
basal state with the same perturbation latent but the artifact switched off (``z_a = 0``) answers
the paper's counterfactual question for an *observed* cell: "under this perturbation, what would
this cell have looked like had the technical artifact been absent?" (abduction with the guide,
intervention ``a = 0``, prediction with the decoder).

This is a model prediction, not a measurement; see :func:`rescue_artifacts` for what it can and
cannot do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from .._keys import COMBO_SEP, CRITERIA, METRIC_OF_CRITERION, UNS_KEY, artifact_key, flag_key
from .._logging import logger
from .._validation import get_counts
from ..model._setup import cell_batches, check_genes
from ..module.generation import seeded
from ..qc import apply_thresholds, pass_fraction, read_qc_uns
from ..qc.thresholds import k_label
from .counterfactual_decode import check_cradle_module, check_criteria, counterfactual_frequencies, rescue_designs

__all__ = ["rescue_artifacts", "counterfactual_frequencies"]

#: ``obs`` columns that describe the *observed* cell's QC; renamed ``observed_<name>`` in the output.
_QC_METRIC_COLUMNS = (*dict.fromkeys(METRIC_OF_CRITERION.values()), "doublet_score")
_QC_LABEL_RE = re.compile(r"^(qc_fail_[a-z_]+_k|artifact_k)\d+(p\d+)?$")
_ARTIFACT_K_RE = re.compile(r"^artifact_k(\d+)(?:p(\d+))?$")
#: ``apply_thresholds`` options that make no sense for rescued cells (or are set here).
_FORBIDDEN_QC_OPTIONS = ("precomputed", "layer", "copy")


def _encodable(adata: AnnData, idx: np.ndarray, registry: Mapping[str, Any]) -> np.ndarray:
    """``idx`` without the cells whose perturbation has an untrained target (logged)."""
    from ..model._setup import can_generate

    labels = adata.obs[registry["perturbation_key"]].astype(str).to_numpy()[idx]
    ok = {label: can_generate(registry, label) for label in set(labels)}
    skipped = sorted(label for label, good in ok.items() if not good)
    if skipped:
        keep = np.fromiter((ok[label] for label in labels), dtype=bool, count=labels.size)
        logger.warning(
            "rescue_artifacts: skipping %d QC-failed cells of %s: their targets were never trained, so the "
            "model cannot encode them", int((~keep).sum()), skipped,
        )
        idx = idx[keep]
    return idx


def _select_cells(adata: AnnData, cells: Any, a: np.ndarray | None, akey: str) -> np.ndarray:
    """Integer positions of the requested cells (default: QC-failed by the model's key)."""
    if cells is None:
        if a is None:
            raise ValueError(f"cells=None selects QC-failed cells by adata.obs[{akey!r}], which is absent")
        return np.flatnonzero(a == 1)
    if isinstance(cells, pd.Series):
        cells = cells.to_numpy()
    arr = np.asarray(cells)
    if arr.dtype == bool:
        if arr.shape != (adata.n_obs,):
            raise ValueError(f"a boolean cells mask must have length n_obs={adata.n_obs}, got shape {arr.shape}")
        return np.flatnonzero(arr)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size == 0:
        return np.zeros(0, dtype=int)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < -adata.n_obs or arr.max() >= adata.n_obs:
            raise IndexError(f"cell positions out of range for {adata.n_obs} cells")
        return np.where(arr < 0, arr + adata.n_obs, arr).astype(int)
    names = arr.astype(str)
    pos = adata.obs_names.get_indexer(names)
    if (pos < 0).any():
        missing = names[pos < 0]
        raise KeyError(f"{missing.size} cell name(s) not in adata.obs_names, e.g. {missing[:5].tolist()}")
    return pos


def _model_k(akey: str | None) -> float | None:
    """MAD multiple ``k`` encoded in an ``artifact_k<k>`` key (None if it is another name)."""
    m = _ARTIFACT_K_RE.match(akey or "")
    if not m:
        return None
    return float(f"{m.group(1)}.{m.group(2)}" if m.group(2) else m.group(1))


def _output_obs(obs: pd.DataFrame, n_samples: int, suffix: str) -> pd.DataFrame:
    """Input ``obs`` rows repeated per sample; the observed cells' QC columns renamed ``observed_*``."""
    rep = np.repeat(np.arange(len(obs)), n_samples)
    out = obs.iloc[rep].copy()
    qc_cols = [c for c in out.columns if str(c) in _QC_METRIC_COLUMNS or _QC_LABEL_RE.match(str(c))]
    out = out.rename(columns={c: f"observed_{c}" for c in qc_cols})
    sample = np.tile(np.arange(n_samples), len(obs))
    names = obs.index.astype(str).to_numpy()[rep]
    out.index = pd.Index(
        [f"{c}-{suffix}" for c in names]
        if n_samples == 1
        else [f"{c}-{suffix}{s}" for c, s in zip(names, sample, strict=True)]
    )
    out["rescued_from"] = names
    out["rescue_sample"] = sample.astype(np.int32)
    return out


def rescue_artifacts(
    model: Any,
    adata: AnnData | None = None,
    *,
    cells: Any = None,
    criteria: Any = None,
    n_samples: int = 1,
    library_size: str | float = "observed",
    seed: int | None = 0,
    qc_reference: AnnData | Mapping | None = None,
    qc_options: Mapping[str, Any] | None = None,
    key_added: str = "rescued",
    batch_size: int = 1024,
) -> AnnData:
    """Counterfactual artifact-free counts of observed QC-failed cells, predicted by CRADLE-VAE.

    **What this is.** For each selected cell the model's guide infers the cell's basal state with
    the artifact embedding switched on as in training (``z_a = a_i u``, i.e. ``u`` for a failed
    cell, ``z_b ~ q(z_b | x, z_p, z_a)``, ``z_p`` and ``u`` drawn from the guide) and the decoder
    is run with the artifact switched **off** (``z_a = 0``): the model's answer to "what would
    this cell have looked like, under the same perturbation, without the technical artifact?".

    **What this is not.** It is a *model prediction*, not a measurement and not a correction of
    the data. It cannot restore information the cell never captured: a broken or low-UMI cell's
    lost transcripts are replaced by the model's estimate of them, drawn from what it learned
    about similar cells, and its confidence is not reported. The library size is an *input* of the
    decoder, not part of the artifact latent, so with ``library_size="observed"`` a low-UMI cell
    keeps its low depth (only its composition is changed) and it usually still fails the
    total-count and gene-count criteria. A doublet is not split into its two cells: it becomes
    one cell of the model's artifact-free distribution at the doublet's depth. The result is only
    as good as the model's disentanglement of the artifact (check with :func:`cradlekit.qc` pass
    rates, e.g. ``qc_reference``). Do not use rescued cells as evidence for effects in the data.

    Parameters
    ----------
    model
        A trained :class:`~cradlekit.model.PerturbationModel` of a CRADLE-VAE variant with an
        artifact latent (``cradle``, ``cradle_wo_cf``, ``cradle_wo_causal``).
    adata
        Cells with the model's genes (same order), counts in the model's layer, the model's
        perturbation labels and its artifact key (``registry['artifact_key']``, e.g.
        ``artifact_k3``); ``None``: the AnnData the model was set up with. Not modified.
    cells
        Cells to rescue: a boolean mask over ``adata.obs``, obs names or integer positions.
        ``None`` (default): every cell with ``adata.obs[artifact_key] == 1`` whose perturbation
        the model can encode (cells of perturbations with an untrained target, e.g. held-out
        combinations of unseen genes, are skipped with a warning; named cells raise). Each cell is
        encoded with its own label ``a_i``; a QC-passed cell (``a_i = 0``) is only reconstructed
        through the artifact-off branch (a warning says so).
    criteria
        Per-criterion models (``artifact_latent="per_criterion"``): the criteria whose artifact is
        switched off, e.g. ``["mito"]``; the cell's other failed criteria stay on. ``cells=None``
        then selects the cells that failed any of them. ``None`` (default): every artifact off.
    n_samples
        Posterior draws per cell; the output has ``n_samples`` rows per cell (cell-major order).
    library_size
        ``"observed"``: each cell's own total count (in the model's genes); a number: the same
        library size for every rescued cell (e.g. the median total count of QC-passed cells,
        which places low-UMI cells at a typical depth; that is a choice, not a recovery).
    seed
        Seeds every draw (latents and counts); the global RNG state is left untouched. The same
        seed, inputs and ``batch_size`` give identical output. ``None``: the global RNG.
    qc_reference
        The labelled data (AnnData from :func:`cradlekit.qc.label_artifacts`, or its
        ``uns['qc']``). When given, its **stored** thresholds are applied to the rescued cells
        with :func:`cradlekit.qc.apply_thresholds` (QC columns in ``obs``, ``uns['qc']``) and to
        the observed cells (``pass_rate_before_reapplied``, the like-for-like baseline: the
        doublet criterion reruns scrublet on the set of cells it is applied to), and pass rates
        are reported in ``uns['rescue']['qc']``.
    qc_options
        Extra keyword arguments of :func:`~cradlekit.qc.apply_thresholds` (``ks``,
        ``run_scrublet``, ``seed`` (default: ``seed``), ``basis``, ``use_approx_neighbors``, ...).
    key_added
        Suffix of the output's obs names: ``<cell>-<key_added>`` (``<cell>-<key_added><s>`` for
        sample ``s`` when ``n_samples > 1``).
    batch_size
        Output rows per forward pass (memory bound).

    Returns
    -------
    AnnData
        ``X``: CSR float32 sampled counts (NB around ``layers['expected']``);
        ``layers['expected']``: dense float32 expected expression ``library_size * rho``;
        ``var``: the input's ``var`` (the model's genes); ``obs``: the input cells' ``obs`` with
        their QC columns renamed ``observed_<column>`` (e.g. ``observed_artifact_k3``,
        ``observed_pct_counts_mt``) so they are never read as the rescued cells' labels, plus
        ``rescued_from`` (input obs name), ``rescue_sample``, ``rescue_library_size`` and
        ``rescue_encoded_artifact`` (``a_i`` used for encoding); ``uns['cradlekit']`` (labels);
        ``uns['rescue']``: ``model``, ``artifact_key``, ``n_cells``, ``n_samples``,
        ``library_size``, ``criteria_off`` (``"all"`` or the criteria), ``seed``, ``note`` and,
        with ``qc_reference``, ``qc``: ``ks``,
        ``model_k``, ``pass_rate_before`` (the observed cells' stored labels; 0 at the model's
        ``k`` for the default cells), ``pass_rate_before_reapplied``, ``pass_rate_after`` (each
        ``{"k3": ..., ...}``, fractions in [0, 1]) and ``by_criterion``: per ``k`` and per
        criterion the observed cells failed, ``n_cells``, ``fail_after`` (fraction of their
        rescued rows still failing that criterion) and ``pass_after`` (passing every criterion).

    Raises
    ------
    ValueError
        The model has no artifact latent (e.g. ``sams_vae``), no cell is selected, or bad options.
    cradlekit.errors.GeneMismatchError, cradlekit.errors.MissingKeyError
        ``adata`` lacks the model's genes (in order), layer, labels or artifact key.
    cradlekit.errors.UnknownPerturbationError
        A cell's perturbation has a target the model was not trained on.

    Examples
    --------
    >>> rescued = rescue_artifacts(model, adata, qc_reference=adata, n_samples=1, seed=0)
    >>> rescued.uns["rescue"]["qc"]["pass_rate_after"]
    """
    module = model.module
    check_cradle_module(module)
    registry = model.registry
    if not getattr(model, "is_trained", True):
        logger.warning("rescue_artifacts: the model is not trained; its predictions are meaningless")
    adata = model.adata if adata is None else adata
    if adata is None:
        raise ValueError("pass adata: this model was loaded without one")
    check_genes(adata, registry)
    n_samples = int(n_samples)
    if n_samples < 1 or int(batch_size) < 1:
        raise ValueError("n_samples and batch_size must be >= 1")
    if isinstance(library_size, str):
        if library_size != "observed":
            raise ValueError(f"library_size must be 'observed' or a positive number, got {library_size!r}")
        fixed_library = None
    else:
        fixed_library = float(library_size)
        if not np.isfinite(fixed_library) or fixed_library <= 0:
            raise ValueError(f"library_size must be 'observed' or a positive number, got {library_size!r}")
    qc_options = dict(qc_options or {})
    bad = [k for k in _FORBIDDEN_QC_OPTIONS if k in qc_options]
    if bad:
        raise ValueError(f"qc_options may not set {bad}: the rescued cells have their own counts in X")

    criteria = check_criteria(module, criteria)
    akey = registry["artifact_key"]
    a_all = adata.obs[akey].astype(int).to_numpy() if akey in adata.obs.columns else None
    chosen = a_all
    if criteria is not None and cells is None:  # the cells that failed a criterion to switch off
        keys = [k for c, k in zip(registry["artifact_criteria"], registry["artifact_flag_keys"], strict=True)
                if c in criteria]
        chosen = (adata.obs[keys].astype(bool).any(axis=1).astype(int).to_numpy() if set(keys) <= set(adata.obs)
                  else None)
    idx = _select_cells(adata, cells, chosen, akey)
    if cells is None:  # the default selection skips cells whose perturbation the model cannot encode
        idx = _encodable(adata, idx, registry)
    if idx.size == 0:
        raise ValueError(
            "no cells to rescue" + (f": no cell has adata.obs[{akey!r}] == 1" if cells is None else "")
        )
    sub = adata[idx]
    n_cells = sub.n_obs
    a_sub = None if a_all is None else a_all[idx]
    if a_sub is not None and (a_sub == 0).any():
        logger.warning(
            "rescue_artifacts: %d of %d selected cells passed QC (%s == 0); they are only reconstructed "
            "through the artifact-off branch, not rescued", int((a_sub == 0).sum()), n_cells, akey,
        )

    device = module.device
    cells_per_pass = max(1, int(batch_size) // n_samples)
    counts_out, expected_out, lib_out, a_out = [], [], [], []
    was_training = module.training
    module.eval()
    try:
        with seeded(seed, device):
            for batch in cell_batches(sub, registry, cells_per_pass):
                X = batch["X"].to(device).repeat_interleave(n_samples, dim=0)
                D = batch["D"].to(device).repeat_interleave(n_samples, dim=0)
                a = batch["A"].to(device).repeat_interleave(n_samples, dim=0)
                rho = counterfactual_frequencies(module, X, D, *rescue_designs(module, batch, criteria, n_samples))
                lib = X.sum(-1) if fixed_library is None else torch.full_like(X[:, 0], fixed_library)
                expected = lib.unsqueeze(-1) * rho
                counts_out.append(
                    sp.csr_matrix(
                        module.decoder.sample(rho, lib, module.generative_theta(False)).cpu().numpy().astype(np.float32)
                    )
                )
                expected_out.append(expected.cpu().numpy().astype(np.float32))
                lib_out.append(lib.cpu().numpy())
                a_out.append(a.cpu().numpy())
    finally:
        module.train(was_training)

    obs = _output_obs(sub.obs, n_samples, key_added)
    obs["rescue_library_size"] = np.concatenate(lib_out).astype(np.float64)
    obs["rescue_encoded_artifact"] = np.concatenate(a_out).astype(np.uint8)
    out = AnnData(
        X=sp.vstack(counts_out, format="csr"),
        obs=obs,
        var=sub.var.copy(),
        layers={"expected": np.concatenate(expected_out)},
    )
    labels = {"perturbation_key": registry["perturbation_key"], "control_label": registry["control_label"]}
    out.uns[UNS_KEY] = dict(adata.uns.get(UNS_KEY, {}) or {**labels, "combo_sep": COMBO_SEP})
    info: dict[str, Any] = {
        "model": registry["model"],
        "artifact_key": akey,
        "n_cells": int(n_cells),
        "n_samples": n_samples,
        "library_size": "observed" if fixed_library is None else fixed_library,
        "criteria_off": "all" if criteria is None else list(criteria),
        "note": (
            "model prediction of each cell without the technical artifact (encoded with z_a = a_i u, "
            "decoded with z_a = 0); not a measurement; lost transcripts are estimated, not recovered; "
            "doublets are not split"
        ),
    }
    if seed is not None:
        info["seed"] = int(seed)
    if qc_reference is not None:
        info["qc"] = _rescue_qc(out, sub, registry, qc_reference, qc_options, seed, n_samples)
    out.uns["rescue"] = info
    logger.info("rescued %d cells (%d samples each) with %s", n_cells, n_samples, registry["model"])
    return out


def _rescue_qc(
    out: AnnData,
    sub: AnnData,
    registry: Mapping[str, Any],
    qc_reference: AnnData | Mapping,
    qc_options: dict[str, Any],
    seed: int | None,
    n_samples: int,
) -> dict[str, Any]:
    """Apply the reference's thresholds to rescued and observed cells; pass rates before/after."""
    record = read_qc_uns(qc_reference)
    opts = {"seed": 0 if seed is None else int(seed), **qc_options}
    observed = AnnData(
        X=get_counts(sub, registry["layer"]), obs=pd.DataFrame(index=sub.obs_names.copy()), var=sub.var.copy()
    )
    apply_thresholds(out, qc_reference, **opts)  # scrublet leaves torch's thread count alone
    apply_thresholds(observed, record, **opts)
    ks = [float(k) for k in np.asarray(out.uns["qc"]["ks"]).ravel()]
    labels = {k: k_label(k) for k in ks}

    def stored(k: float) -> float:
        col = artifact_key(k)
        if col not in sub.obs.columns:
            return float("nan")
        return float(1.0 - np.asarray(sub.obs[col], dtype=np.float64).mean())

    by_criterion: dict[str, dict[str, dict[str, float]]] = {}
    for k in ks:
        rows = {}
        passed_after = 1.0 - np.asarray(out.obs[artifact_key(k)], dtype=np.float64)
        for criterion in CRITERIA:
            col = flag_key(criterion, k)
            if col not in sub.obs.columns:
                continue
            failed = np.repeat(np.asarray(sub.obs[col], dtype=bool), n_samples)
            if not failed.any():
                continue
            rows[criterion] = {
                "n_cells": int(failed.sum() // n_samples),
                "fail_after": float(np.asarray(out.obs[col], dtype=bool)[failed].mean()),
                "pass_after": float(passed_after[failed].mean()),
            }
        by_criterion[labels[k]] = rows
    model_k = _model_k(registry["artifact_key"])
    result: dict[str, Any] = {
        "ks": ks,
        "pass_rate_before": {labels[k]: stored(k) for k in ks},
        "pass_rate_before_reapplied": {labels[k]: pass_fraction(observed, k) for k in ks},
        "pass_rate_after": {labels[k]: pass_fraction(out, k) for k in ks},
        "by_criterion": by_criterion,
    }
    if model_k is not None:
        result["model_k"] = model_k
    summary = ", ".join(
        f"{labels[k]}: {result['pass_rate_before'][labels[k]]:.2f} -> {result['pass_rate_after'][labels[k]]:.2f}"
        for k in ks
    )
    logger.info("QC pass rate of the selected cells before -> after rescue: %s", summary)
    return result
