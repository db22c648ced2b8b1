"""Read a manifest dataset into an AnnData in the cradlekit convention.

:func:`load_dataset` fetches the file (see :mod:`cradlekit.data.download`), reads only the cells
and genes it needs, puts the raw integer counts in ``X``, makes ``var_names`` gene symbols, and
rewrites the dataset's own perturbation labels into ``obs['perturbation']`` (sorted ``A+B``
combinations, control ``control``) with
:func:`~cradlekit.data.perturbations.standardize_perturbations`, using the dataset's normaliser
from :mod:`cradlekit.data.label_layouts`. The dataset's original columns are kept unchanged (an
original column already called ``perturbation`` is renamed ``perturbation_original``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._h5ad import read_h5ad_checked
from .._keys import CONTROL_LABEL, PERTURBATION_KEY, UNS_KEY
from .._logging import logger
from .._validation import check_raw_counts
from ..errors import MissingKeyError, UnknownControlError
from .derive import DERIVATIONS
from .download import expected_checksum, fetch, file_digest
from .label_layouts import get_normalizer, require_obs_columns
from .manifest import DatasetEntry, get_entry
from .perturbations import standardize_perturbations

__all__ = ["load_dataset", "standardize_dataset"]

_TMP_KEY = "_cradlekit_source_label"


def load_dataset(
    name: str | Path | DatasetEntry,
    *,
    perturbation_key: str | None = None,
    control_label: str | None = None,
    separator: str = "+",
    qc_metrics: Mapping[str, str] | None = None,
    counts_layer: str | None = None,
    batch_key: str | None = None,
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    local_dirs: Sequence[str | Path] | None = None,
    subset: str | None = None,
    select: bool = True,
    normalizer_options: Mapping[str, Any] | None = None,
    verify: bool = True,
    download: bool = True,
    manifest: Mapping[str, DatasetEntry] | str | Path | None = None,
) -> AnnData:
    """Load a manifest dataset as raw counts with canonical perturbation labels.

    Parameters
    ----------
    name
        Manifest name (``"norman"``, ``"dixit"``, ``"replogle"``, ``"adamson"``,
        ``"norman_subset"``, ``"pbmc_qc"``), an entry, or the path of your own ``.h5ad`` file
        (read into memory and prepared with :func:`cradlekit.data.setup` when
        ``perturbation_key`` is given).
    perturbation_key, control_label, separator, qc_metrics, counts_layer, batch_key
        For a path only: passed to :func:`cradlekit.data.setup`. Without ``perturbation_key``
        the file is returned as read (a file written after ``setup`` keeps its keys).
    path, cache_dir, local_dirs, verify, download
        Where the file is looked for and how it is checked; see :func:`~cradlekit.data.download.fetch`.
    subset
        For entries with a ``subset`` (``norman_subset``: obs ``dataset``): the value to keep.
        ``None`` keeps the manifest default (``"norman19"``), ``"all"`` keeps every cell.
    select
        Apply the entry's ``selection`` while reading (Replogle: the Lopez et al. perturbations
        and genes). ``False`` reads the whole file.
    normalizer_options
        Options of the dataset's normaliser, overriding the manifest's ``normalizer_options``
        (``dixit``: ``max_targets``, ``unassigned``; ``replogle``: ``level``,
        ``n_control_cells``, ``seed``; ``norman``: ``one_hot_prefix``).
    manifest
        Entries or a manifest file (default: the packaged manifest).

    Returns
    -------
    AnnData
        ``X``: raw integer counts; ``var_names``: gene symbols; and

        ``obs['perturbation']``
            Canonical labels (absent for datasets without perturbations, e.g. ``pbmc_qc``).
        ``uns['cradlekit']``
            ``perturbation_key``, ``control_label``, ``combo_sep``; ``dataset`` (name, file,
            checksum, source, citation, counts origin, normaliser facts); and
            ``precomputed_qc`` ({scanpy metric: obs column}) when the file carries per-cell
            metrics computed on the full transcriptome.

    Raises
    ------
    InvalidCountsError
        The counts are not non-negative integers.
    MissingKeyError, UnknownControlError
        The file lacks a column the dataset's normaliser needs, or has no control cells.
    ChecksumError, DatasetNotAvailableError
        See :func:`~cradlekit.data.download.fetch`.
    """
    if _is_path(name, manifest):
        return _load_own(
            Path(name), perturbation_key=perturbation_key, control_label=control_label, separator=separator,
            qc_metrics=qc_metrics, counts_layer=counts_layer, batch_key=batch_key,
        )
    own = {"perturbation_key": perturbation_key, "control_label": control_label, "qc_metrics": qc_metrics,
           "counts_layer": counts_layer, "batch_key": batch_key}
    given = sorted(k for k, v in own.items() if v is not None)
    if given:
        raise TypeError(f"load_dataset({name!r}): {given} apply to your own .h5ad path only; a manifest "
                        "dataset's layout comes from its entry")
    entry = get_entry(name, manifest)
    already_derived = (
        entry.derive is not None and path is not None and entry.derived_sha256 is not None
        and Path(path).is_file() and file_digest(path) == entry.derived_sha256
    )
    if already_derived:  # the derived file itself (e.g. ../shared/data/...counts500.h5ad), verified
        file = Path(path)
    else:
        file = fetch(entry, path=path, cache_dir=cache_dir, local_dirs=local_dirs, verify=verify, download=download)
    adata, read_info = _read(file, entry, subset=subset, select=select)
    counts_from = "X"
    if entry.derive is not None and not already_derived:
        adata = DERIVATIONS[entry.derive](adata)
        counts_from = f"X derived from the upstream file ({entry.derive}, cradlekit.data.derive)"
    if entry.counts_layer is not None:
        if entry.counts_layer not in adata.layers:
            raise MissingKeyError(
                f"{entry.name}: the manifest says raw counts are in layers[{entry.counts_layer!r}] but "
                f"{file} has layers {sorted(adata.layers.keys())}"
            )
        counts = adata.layers[entry.counts_layer]
        del adata.layers[entry.counts_layer]
        adata.X = counts
        counts_from = f"layers['{entry.counts_layer}']"
    check_raw_counts(adata.X, what=f"{entry.name}: counts from {counts_from} of {file.name}")
    _set_gene_symbols(adata, entry)
    expected = expected_checksum(entry, cache_dir)
    checksum = f"{expected[0]}:{expected[1]}" if (expected and verify) else "unverified"
    meta = {
        "filename": file.name,
        "path": str(file),
        "checksum": f"sha256:{entry.derived_sha256}" if already_derived else checksum,
        "counts_from": counts_from,
        **read_info,
    }
    return standardize_dataset(adata, entry, normalizer_options=normalizer_options, extra_info=meta)


def _is_path(name: Any, manifest: Any) -> bool:
    if isinstance(name, DatasetEntry):
        return False
    if isinstance(name, Path):
        return True
    text = str(name)
    if text.endswith((".h5ad", ".h5")) or "/" in text or "\\" in text:
        return True
    return Path(text).expanduser().is_file()


def _load_own(path: Path, *, perturbation_key: str | None, control_label: str | None, **options: Any) -> AnnData:
    from .own import read_h5ad, setup

    adata = read_h5ad(path)
    if perturbation_key is not None or control_label is not None:
        if perturbation_key is None or control_label is None:
            raise MissingKeyError(f"{path.name}: pass both perturbation_key= and control_label= (got one)")
        setup(adata, perturbation_key=perturbation_key, control_label=control_label, **options)
    elif "perturbation_key" not in adata.uns.get(UNS_KEY, {}):
        logger.warning(
            "%s: no perturbation labels set up; pass perturbation_key= and control_label= (or call "
            "cradlekit.data.setup) before split or model", path.name,
        )
    meta = dict(adata.uns.get(UNS_KEY, {}))
    meta["dataset"] = {"name": path.stem, "path": str(path.resolve()), "filename": path.name}
    adata.uns[UNS_KEY] = meta
    return adata


def standardize_dataset(
    adata: AnnData,
    dataset: str | DatasetEntry,
    *,
    normalizer_options: Mapping[str, Any] | None = None,
    manifest: Mapping[str, DatasetEntry] | str | Path | None = None,
    extra_info: Mapping[str, Any] | None = None,
) -> AnnData:
    """Give an already-read dataset canonical labels (obs only; counts are not touched).

    Use it on a file you read yourself in the published layout. Works in place, except that when
    the normaliser drops cells (Adamson ``*``/unlabelled cells, Dixit cells with too many
    targets) a new AnnData is returned: always use the return value.

    Parameters
    ----------
    adata
        Cells in the dataset's published obs layout.
    dataset
        Manifest name or entry; its ``normalizer`` builds the labels.
    normalizer_options
        Override the manifest's ``normalizer_options`` (see :func:`load_dataset`).
    manifest
        Entries or a manifest file (default: the packaged manifest).
    extra_info
        More facts for ``uns['cradlekit']['dataset']`` (:func:`load_dataset` adds file and checksum).

    Returns
    -------
    AnnData
        With ``obs['perturbation']``, ``uns['cradlekit']['dataset']`` and, when known,
        ``uns['cradlekit']['precomputed_qc']`` (see :func:`load_dataset`).
    """
    entry = get_entry(dataset, manifest)
    info: dict[str, Any] = {"name": entry.name, **_provenance(entry), **dict(extra_info or {})}
    if entry.has_perturbations:
        options = {**entry.normalizer_options, **dict(normalizer_options or {})}
        original = f"{PERTURBATION_KEY}_original"
        obs = adata.obs
        if original in obs.columns and entry.perturbation_key == PERTURBATION_KEY:  # standardised before
            obs = obs.drop(columns=[PERTURBATION_KEY], errors="ignore").rename(columns={original: PERTURBATION_KEY})
        lab = get_normalizer(entry.normalizer)(obs, entry, **options)
        labels = lab.labels
        if lab.keep is not None and not lab.keep.all():
            adata = adata[np.asarray(lab.keep, dtype=bool)].copy()
            labels = labels[np.asarray(lab.keep, dtype=bool)]
        if not (labels.astype(str) == lab.control_label).any():
            raise UnknownControlError(
                f"{entry.name}: no control cells (control label {lab.control_label!r} after the "
                f"{entry.normalizer!r} normaliser; published controls: {list(entry.control_labels)} "
                f"/ pattern {entry.control_pattern!r})"
            )
        if PERTURBATION_KEY in adata.obs.columns and original not in adata.obs.columns:
            adata.obs = adata.obs.rename(columns={PERTURBATION_KEY: original})
            info["renamed_column"] = f"{PERTURBATION_KEY} -> {original}"
        adata.obs[_TMP_KEY] = labels.to_numpy()
        try:
            standardize_perturbations(
                adata, perturbation_key=_TMP_KEY, control_label=lab.control_label, sep=lab.sep,
                extra_control_labels=lab.extra_control_labels,
            )
        finally:
            del adata.obs[_TMP_KEY]
        info.update(normalizer=entry.normalizer, source_control_label=lab.control_label, **lab.info)
        n_pert = adata.obs[PERTURBATION_KEY].nunique() - 1
        logger.info("%s: %d cells, %d perturbations + %s", entry.name, adata.n_obs, n_pert, CONTROL_LABEL)
    else:
        logger.info("%s: no perturbation labels in this dataset; skipping label standardisation", entry.name)
    meta = dict(adata.uns.get(UNS_KEY, {}))
    meta["dataset"] = {k: v for k, v in info.items() if v is not None}
    precomputed = _precomputed_qc(adata, entry)
    if precomputed:
        meta["precomputed_qc"] = precomputed
    adata.uns[UNS_KEY] = meta
    return adata



def _read(file: Path, entry: DatasetEntry, *, subset: str | None, select: bool) -> tuple[AnnData, dict]:
    """Read only the needed cells/genes (backed mode keeps the rest on disk)."""
    info: dict[str, Any] = {}
    backed = read_h5ad_checked(
        file, backed="r", what=f"{entry.name}: file",
        remedy="it is damaged or truncated (an interrupted copy or download?); delete or move it and load the "
        "dataset again (a manifest dataset is downloaded again), or pass a good copy with path=",
    )
    try:
        rows = np.ones(backed.n_obs, dtype=bool)
        cols = np.ones(backed.n_vars, dtype=bool)
        if entry.subset is not None and subset != "all":
            column, value = entry.subset["column"], subset or entry.subset["default"]
            if column not in backed.obs.columns:
                raise MissingKeyError(f"{entry.name}: subset column {column!r} not in obs")
            rows &= (backed.obs[column].astype(str) == str(value)).to_numpy()
            if not rows.any():
                seen = sorted(pd.unique(backed.obs[column].astype(str)))
                raise MissingKeyError(f"{entry.name}: no cell has {column} == {value!r} (values: {seen}; or 'all')")
            info["subset"] = f"{column} == {value}"
        elif entry.subset is not None:
            info["subset"] = "all"
        if select and entry.selection is not None:
            sel_rows, sel_cols = _selection(backed.obs, backed.var, entry)
            rows &= sel_rows
            cols &= sel_cols
            info["selection"] = entry.selection.get("source", "manifest selection")
        if rows.all() and cols.all():
            adata = backed.to_memory()
        else:
            adata = backed[np.flatnonzero(rows), np.flatnonzero(cols)].to_memory()
    finally:
        backed.file.close()
    return adata, info


def _split_list(text: Any) -> set[str]:
    if isinstance(text, str):
        return {t.strip() for t in re.split(r"[,\n]", text) if t.strip()}
    return {str(t) for t in (text or ())}


def _selection(obs: pd.DataFrame, var: pd.DataFrame, entry: DatasetEntry) -> tuple[np.ndarray, np.ndarray]:
    sel = entry.selection
    rows = np.ones(len(obs), dtype=bool)
    cols = np.ones(len(var), dtype=bool)
    if "obs_column" in sel:
        col = require_obs_columns(obs, [sel["obs_column"]], entry)[0]
        values = obs[col].astype(str)
        rows = values.isin(_split_list(sel.get("keep_obs"))).to_numpy()
        n_target = int(rows.sum())
        if sel.get("keep_controls") and sel.get("control_pattern"):
            rows |= values.str.contains(sel["control_pattern"], regex=True).to_numpy()
        _compare(entry, "targeting cells", n_target, sel.get("expected_targeting_cells"))
    if "var_column" in sel:
        col = sel["var_column"]
        names = var[col].astype(str) if col in var.columns else pd.Series(var.index.astype(str))
        cols = names.isin(_split_list(sel.get("keep_var"))).to_numpy()
        _compare(entry, "genes", int(cols.sum()), sel.get("expected_genes"))
    return rows, cols


def _compare(entry: DatasetEntry, what: str, n: int, expected: int | None) -> None:
    if expected is not None and n != expected:
        logger.warning("%s: the selection keeps %d %s, the published selection %d", entry.name, n, what, expected)
    else:
        logger.info("%s: the selection keeps %d %s", entry.name, n, what)


def _set_gene_symbols(adata: AnnData, entry: DatasetEntry) -> None:
    if entry.gene_symbols is not None:
        if entry.gene_symbols not in adata.var.columns:
            raise MissingKeyError(
                f"{entry.name}: gene symbol column {entry.gene_symbols!r} not in var "
                f"(available: {list(adata.var.columns)})"
            )
        keep_as = adata.var.index.name if adata.var.index.name and adata.var.index.name not in adata.var else "var_id"
        adata.var[keep_as] = adata.var_names.to_numpy()
        adata.var_names = pd.Index(adata.var[entry.gene_symbols].astype(str).to_numpy())
    if not adata.var_names.is_unique:
        n_dup = int(adata.var_names.duplicated().sum())
        logger.info("%s: %d duplicated gene symbols made unique (suffix -1, -2 ...)", entry.name, n_dup)
        adata.var_names_make_unique()


def _precomputed_qc(adata: AnnData, entry: DatasetEntry) -> dict[str, str]:
    out: dict[str, str] = {}
    for metric, spec in entry.precomputed_qc.items():
        column, scale = (spec, 1) if isinstance(spec, str) else (spec["column"], spec.get("scale", 1))
        if column not in adata.obs.columns:
            logger.warning("%s: precomputed %s column %r not in obs; not recorded", entry.name, metric, column)
            continue
        if scale != 1:
            new = f"{metric}_precomputed"
            adata.obs[new] = adata.obs[column].astype(float) * float(scale)
            column = new
        out[str(metric)] = str(column)
    return out


def _provenance(entry: DatasetEntry) -> dict[str, Any]:
    return {"url": entry.url, "doi": entry.doi, "citation": " ".join(entry.citation.split()), "license": entry.license}
