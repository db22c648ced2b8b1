"""From an AnnData to the model's registry and tensors (the ``setup_anndata`` step).

:func:`register_anndata` validates the AnnData once and returns the **registry**: a small
JSON-serialisable dict (genes, training targets, sVAE+ conditions, keys, control label,
training counts) that is all the model needs to rebuild itself and to turn perturbation labels
into model inputs. It reads the counts in bounded chunks (in memory or from a backed h5ad).
Training gathers batches from the sparse counts (:mod:`._batches`); :func:`build_tensors` is the
dense path (every train and validation cell as one float32 tensor), kept as a reference and
for small data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from .._keys import CF_MASK_KEY, COMBO_SEP
from .._logging import logger
from .._rows import check_counts_in_chunks, csr_view, gather_rows
from .._validation import check_labels, get_counts
from ..data.counterfactual import reference_table
from ..data.perturbations import (
    canonical_label,
    dosage_matrix,
    parse_perturbation,
    perturbation_info,
    perturbation_targets,
)
from ..errors import EmptyPerturbationError, GeneMismatchError, MissingKeyError, UnknownPerturbationError
from ..module import MODELS, condition_onehot, log_standardize_stats, unique_conditions
from ._criteria import criteria_columns, criteria_inputs
from ._degenerate import check_trainable

__all__ = ["register_anndata", "build_tensors", "dosage_rows", "check_genes", "REGISTRY_VERSION"]

REGISTRY_VERSION = 1
_FIT_SPLITS = ("train", "val")


def _counts(adata: AnnData, layer: str | None, *, check: bool = True):
    X = csr_view(get_counts(adata, layer))
    if check:
        check_counts_in_chunks(X, what="adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return X


class _Rows:
    """``X[rows]`` read lazily in row slices (for :func:`log_standardize_stats` without a copy of X)."""

    def __init__(self, X, rows: np.ndarray):
        self.X, self.rows = X, rows
        self.shape = (rows.size, X.shape[1])

    def __getitem__(self, part: slice):
        return gather_rows(self.X, self.rows[part])


def _labels(adata: AnnData, key: str) -> pd.Series:
    return check_labels(adata, key)


def _split(adata: AnnData, split_key: str) -> pd.Series:
    if split_key not in adata.obs.columns:
        raise MissingKeyError(f"split column {split_key!r} not found in adata.obs; create it with "
                              "cradlekit.data.split_combinations(adata) (combination datasets) or "
                              "cradlekit.data.split_cells(adata) (single-perturbation datasets)")
    split = adata.obs[split_key]
    if split.isna().any():
        raise MissingKeyError(f"adata.obs[{split_key!r}] has {int(split.isna().sum())} missing values; "
                              "every cell needs a split")
    split = split.astype(str)
    if not (split == "train").any():
        raise EmptyPerturbationError(f"no cell has adata.obs[{split_key!r}] == 'train'")
    return split


def _artifact(adata: AnnData, artifact_key: str) -> np.ndarray:
    if artifact_key not in adata.obs.columns:
        raise MissingKeyError(f"QC label column {artifact_key!r} not found in adata.obs; create it with "
                              "cradlekit.qc.label_artifacts(adata) (it writes artifact_k3, artifact_k4, artifact_k5)")
    a = adata.obs[artifact_key]
    if a.isna().any():
        raise MissingKeyError(f"adata.obs[{artifact_key!r}] has {int(a.isna().sum())} missing values")
    a = a.astype(int).to_numpy()
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"adata.obs[{artifact_key!r}] must be 0 (passed) / 1 (failed), got {np.unique(a)[:10]}")
    return a


def _cf(adata: AnnData, cf_layer: str, artifact_key: str,
        split_key: str) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """``(reference table, row per cell, mask)``: cell ``i``'s reference is ``table[row[i]]``."""
    hint = f"create it with cradlekit.data.counterfactual_references(adata, artifact_key={artifact_key!r})"
    try:
        table, row = reference_table(adata, cf_layer)
    except MissingKeyError as err:
        raise MissingKeyError(f"{err}; {hint}") from None
    if CF_MASK_KEY not in adata.obs.columns:
        raise MissingKeyError(f"adata.obs[{CF_MASK_KEY!r}] not found; {hint}")
    info = adata.uns.get("cf_reference", {})
    for what, used in (("artifact_key", artifact_key), ("split_key", split_key)):
        if what in info and str(info[what]) != used:
            logger.warning("counterfactual references were built with %s=%r but the model uses %r",
                           what, info[what], used)
    return table, row, adata.obs[CF_MASK_KEY].astype(bool).to_numpy()


def _dense(X, rows: np.ndarray) -> torch.Tensor:
    sub = X[rows]
    sub = sub.toarray() if sp.issparse(sub) else np.asarray(sub)
    return torch.from_numpy(np.ascontiguousarray(sub, dtype=np.float32))


def register_anndata(
    adata: AnnData,
    *,
    model: str,
    artifact_key: str | None,
    split_key: str,
    layer: str | None,
    cf_layer: str | None,
    perturbation_key: str | None = None,
    control_label: str | None = None,
) -> tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor]]:
    """Validate ``adata`` and build the registry and the log-standardisation statistics.

    Parameters
    ----------
    adata
        Raw integer counts with canonical perturbation labels, QC labels and a split.
    model
        Name in :data:`cradlekit.module.MODELS`; decides which inputs are required.
    artifact_key
        ``obs`` column of ``a_i`` (required by CRADLE-VAE models; recorded if present otherwise).
    split_key
        ``obs`` column with ``train`` / ``val`` / ``test``; other values are unused, like ``test``.
    layer
        Count layer (``None``: ``adata.X``).
    cf_layer
        Counterfactual reference layer; ``None`` when the model does not use J2.
    perturbation_key, control_label
        Default to ``adata.uns['cradlekit']``.

    Returns
    -------
    registry, (log_mean, log_std)
        The registry dict (see the module docstring) and per-gene ``log1p`` statistics of the
        training cells.

    Raises
    ------
    MissingKeyError
        Missing key, layer or label (the message names the cradlekit function that creates it).
    InvalidCountsError
        Counts that are not raw integers (NaN included).
    UnknownControlError
        Control label without cells.
    EmptyPerturbationError
        No training (or training control) cells, or a validation perturbation without training cells.
    """
    cls = MODELS[model]
    key, control = perturbation_info(adata, perturbation_key=perturbation_key, control_label=control_label)
    if adata.n_vars == 0:  # before anything reads per-gene data (e.g. a reference table of other genes)
        check_trainable(0, [], [], control=control)
    X = _counts(adata, layer)
    labels = _labels(adata, key)
    split = _split(adata, split_key)
    uses_artifact = bool(cls.has_artifact)
    if uses_artifact:
        _artifact(adata, artifact_key)
    if cf_layer is not None:
        _cf(adata, cf_layer, artifact_key, split_key)

    is_train = (split == "train").to_numpy()
    train_labels = set(labels[is_train].unique())
    if control not in train_labels:
        raise EmptyPerturbationError(f"no control cells ({control!r}) in the training split")
    val_labels = set(labels[(split == "val").to_numpy()].unique())
    orphans = sorted(val_labels - train_labels)
    if orphans:
        raise EmptyPerturbationError(f"{len(orphans)} perturbation(s) have validation cells but no training cells: "
                                     f"{orphans[:20]}; the model cannot learn them. Put some of their cells in 'train' "
                                     "(split_combinations and split_cells always do) or drop them")
    if isinstance(adata.obs[key].dtype, pd.CategoricalDtype):
        unused = sorted(set(adata.obs[key].cat.categories.astype(str)) - set(labels.unique()))
        if unused:
            logger.warning("perturbation categories without cells are ignored: %s", unused[:20])
    targets = perturbation_targets(train_labels, control_label=control)
    fit_labels = labels[split.isin(_FIT_SPLITS).to_numpy()].unique()
    other = labels[~split.isin(_FIT_SPLITS).to_numpy()].unique()
    blind = [lab for lab in other if not set(parse_perturbation(lab, control_label=control)) <= set(targets)]
    if blind:
        logger.warning("perturbations outside train/val with a target never trained on (cannot be generated): %s",
                       blind[:20])

    # one dosage row per distinct training label, weighted by its number of cells (no cells x targets matrix)
    codes, uniques = pd.factorize(labels[is_train])
    D_unique = torch.from_numpy(label_dosage(uniques, control, targets))
    weight = torch.from_numpy(np.bincount(codes, minlength=len(uniques)).astype(np.int64))
    conditions = None
    if model == "svae_plus":
        table = unique_conditions(D_unique)
        conditions = [canonical_label([targets[j] for j in np.flatnonzero(row)], control_label=control)
                      for row in table.numpy()]
        n_obs = (condition_onehot(D_unique, table).long() * weight[:, None]).sum(0)
    else:
        n_obs = ((D_unique != 0).long() * weight[:, None]).sum(0)
    check_trainable(adata.n_vars, conditions if conditions is not None else targets, n_obs.tolist(), control=control)
    train_rows = np.flatnonzero(is_train)
    # row slices of ~64 MB of float64 (the dense block of log_standardize_stats)
    log_mean, log_std = log_standardize_stats(_Rows(X, train_rows), chunk_size=max(1, 2**23 // max(adata.n_vars, 1)))
    registry = {
        "version": REGISTRY_VERSION,
        "model": model,
        "genes": [str(g) for g in adata.var_names],
        "targets": targets,
        "conditions": conditions,
        "perturbation_key": key,
        "control_label": control,
        "combo_sep": COMBO_SEP,
        "artifact_key": artifact_key if (uses_artifact or (artifact_key in adata.obs.columns)) else None,
        "uses_artifact": uses_artifact,
        "split_key": split_key,
        "layer": layer,
        "cf_layer": cf_layer,
        "n_train": int(is_train.sum()),
        "n_val": int((split == "val").sum()),
        "n_obs_per_perturbation": [int(v) for v in n_obs.tolist()],
        "trained_perturbations": sorted(train_labels, key=lambda s: (s != control, s)),
        "fit_perturbations": sorted(map(str, fit_labels)),
    }
    logger.info("registered %d cells x %d genes: %d training targets, %d train / %d val cells",
                adata.n_obs, adata.n_vars, len(targets), registry["n_train"], registry["n_val"])
    return registry, (log_mean, log_std)


def label_dosage(labels: Sequence[str], control: str, targets: Sequence[str]) -> np.ndarray:
    """Float32 dosage rows over ``targets`` of perturbation labels (targets outside it are dropped)."""
    col = {t: j for j, t in enumerate(targets)}
    D = np.zeros((len(labels), len(targets)), dtype=np.float32)
    for i, label in enumerate(labels):  # loop over distinct labels, not cells
        for t in parse_perturbation(str(label), control_label=control):
            if t in col:
                D[i, col[t]] += 1.0
    return D


def _dosage(adata: AnnData, key: str, control: str, targets: Sequence[str]) -> np.ndarray:
    """Dense float32 dosage over ``targets`` for every cell (targets outside it are dropped)."""
    extra = sorted(set(perturbation_targets(adata.obs[key].astype(str).unique(), control_label=control)) - set(targets))
    D, _ = dosage_matrix(adata, perturbation_key=key, control_label=control, targets=[*targets, *extra], sparse=True)
    return np.asarray(D[:, : len(targets)].toarray(), dtype=np.float32)


def _condition_table(registry: Mapping[str, Any]) -> torch.Tensor:
    return dosage_rows(registry, registry["conditions"], as_conditions=False)


def build_tensors(adata: AnnData, registry: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor] | None]:
    """Dense float32 CPU tensors of the training and validation cells.

    Returns
    -------
    ``{"train": batch, "val": batch or None}`` where a batch holds the keys the model reads:
    ``X``, ``D`` and, for CRADLE-VAE, ``A`` (and ``X_cf``, ``cf_mask`` when J2 is on).
    """
    check_genes(adata, registry)
    key, control = registry["perturbation_key"], registry["control_label"]
    X = _counts(adata, registry["layer"])
    split = _split(adata, registry["split_key"])
    labels = _labels(adata, key)
    unknown = sorted(set(labels[split.isin(_FIT_SPLITS).to_numpy()].unique()) - set(registry["fit_perturbations"]))
    if unknown:
        raise EmptyPerturbationError(f"train/val perturbations unknown to this model: {unknown[:20]}")
    D = _dosage(adata, key, control, registry["targets"])
    a = _artifact(adata, registry["artifact_key"]) if registry["uses_artifact"] else None
    cf = (_cf(adata, registry["cf_layer"], registry["artifact_key"], registry["split_key"])
          if registry["cf_layer"] else None)
    crit = criteria_columns(adata, registry, None if cf is None else cf[2] & (a == 0))
    out: dict[str, dict[str, torch.Tensor] | None] = {}
    for name in _FIT_SPLITS:
        rows = np.flatnonzero((split == name).to_numpy())
        if rows.size == 0:
            out[name] = None
            continue
        Dr = torch.from_numpy(D[rows])
        if registry["conditions"] is not None:
            Dr = condition_onehot(Dr, _condition_table(registry))
        batch = {"X": _dense(X, rows), "D": Dr}
        if a is not None:
            batch["A"] = torch.from_numpy(a[rows].astype(np.float32))
        if cf is not None:
            table, ref_row, mask = cf
            padded = sp.vstack([table, sp.csr_matrix((1, table.shape[1]), dtype=np.float32)], format="csr")
            batch["X_cf"] = _dense(padded, np.where(ref_row[rows] >= 0, ref_row[rows], table.shape[0]))
            batch["cf_mask"] = torch.from_numpy(mask[rows] & (a[rows] == 0))
        batch.update(criteria_inputs(crit, rows, cf is not None))
        out[name] = batch
    return out


def can_generate(registry: Mapping[str, Any], label: str) -> bool:
    """Whether a model with ``registry`` can generate ``label`` (all targets trained; sVAE+: a trained condition)."""
    from ..data import parse_perturbation

    parts = parse_perturbation(label, control_label=registry["control_label"], sep=registry["combo_sep"])
    if not set(parts) <= set(registry["targets"]):
        return False
    conditions = registry.get("conditions")
    return conditions is None or label in set(conditions)


def dosage_rows(registry: Mapping[str, Any], perturbations: Sequence[str], *,
                as_conditions: bool = True) -> torch.Tensor:
    """Model input rows for perturbation labels (``"KLF1"``, ``"KLF1+MAP2K6"``, the control label).

    Dosage rows over the registered targets; for sVAE+ (``as_conditions``) the one-hot over its
    conditions. Unseen combinations of trained targets are fine for dosage models.

    Raises
    ------
    UnknownPerturbationError
        A label with a target the model was not trained on, or (sVAE+) a condition it has no label for.
    """
    control, targets = registry["control_label"], registry["targets"]
    col = {t: j for j, t in enumerate(targets)}
    D = torch.zeros((len(perturbations), len(targets)))
    for i, label in enumerate(perturbations):  # loop over requested labels, not cells
        parts = parse_perturbation(str(label), control_label=control, sep=registry["combo_sep"])
        unknown = [t for t in parts if t not in col]
        if unknown:
            raise UnknownPerturbationError(
                f"perturbation {label!r}: target(s) {unknown} have no training cells, so the model has no "
                f"effect for them; known targets: {targets[:30]}{' ...' if len(targets) > 30 else ''}"
            )
        D[i, [col[t] for t in parts]] = 1.0
    if as_conditions and registry["conditions"] is not None:
        known = set(registry["conditions"]) | {control}
        missing = [p for p in perturbations
                   if canonical_label(parse_perturbation(str(p), control_label=control), control_label=control)
                   not in known]
        if missing:
            raise UnknownPerturbationError("sVAE+ encodes each condition as its own label and cannot generate "
                                           f"conditions it was not trained on: {missing[:20]}")
        D = condition_onehot(D, _condition_table(registry))
    return D


def check_genes(adata: AnnData, registry: Mapping[str, Any]) -> None:
    """Raise :class:`~cradlekit.errors.GeneMismatchError` unless ``adata.var_names`` equal the model's genes
    (same order)."""
    genes = list(registry["genes"])
    have = [str(g) for g in adata.var_names]
    if have == genes:
        return
    missing = [g for g in genes if g not in set(have)]
    extra = [g for g in have if g not in set(genes)]
    if not missing and not extra:
        first = next(i for i, (a, b) in enumerate(zip(have, genes, strict=False)) if a != b)
        detail = (f"same genes in a different order (first difference at position {first}: {have[first]!r} vs "
                  f"{genes[first]!r})")
    else:
        detail = f"{len(missing)} model genes absent (e.g. {missing[:5]}), {len(extra)} extra genes (e.g. {extra[:5]})"
    raise GeneMismatchError(f"adata.var_names do not match the model's {len(genes)} genes: {detail}. "
                            "Subset and order adata as the model's genes: adata[:, model.registry['genes']]")


def cell_batches(adata: AnnData, registry: Mapping[str, Any], batch_size: int):
    """Yield guide inputs for every cell of ``adata`` in order (for ``get_latent``).

    ``D`` is the dosage (sVAE+: zeros; its encoder reads only ``x``); ``A`` the QC label for
    CRADLE-VAE (and ``A_criteria``, the criterion flags, per criterion); the J2 inputs are
    placeholders (``X_cf = X``, ``cf_mask`` False, ``A_cf`` 0).
    """
    X = _counts(adata, registry["layer"])
    labels = _labels(adata, registry["perturbation_key"])
    codes, uniques = pd.factorize(labels)
    D_unique = dosage_rows(registry, list(uniques), as_conditions=False)
    a = _artifact(adata, registry["artifact_key"]) if registry["uses_artifact"] else None
    crit = criteria_columns(adata, registry, None)
    width = len(registry["conditions"]) if registry["conditions"] is not None else len(registry["targets"])
    for start in range(0, adata.n_obs, batch_size):
        rows = np.arange(start, min(start + batch_size, adata.n_obs))
        x = _dense(X, rows)
        D = D_unique[codes[rows]] if registry["conditions"] is None else torch.zeros((rows.size, width))
        batch = {"X": x, "D": D}
        if a is not None:
            batch["A"] = torch.from_numpy(a[rows].astype(np.float32))
        batch.update(criteria_inputs(crit, rows, registry["cf_layer"] is not None, placeholder=True))
        if registry["cf_layer"] is not None:
            batch["X_cf"] = x
            batch["cf_mask"] = torch.zeros(rows.size, dtype=torch.bool)
        yield batch
