"""The dataset manifest: where each dataset comes from and how its file is laid out.

The manifest is the YAML file ``data_manifest.yaml`` at the repository root. The package ships
the same file as ``cradlekit/data/data_manifest.yaml`` (a symlink in the source tree, copied into
wheels by setuptools). :func:`load_manifest` reads the packaged copy and falls back to the
repository-root file when the packaged copy is missing or unreadable (e.g. a checkout on a
file system without symlinks, where git writes the link target as plain text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ManifestError, MissingKeyError

__all__ = ["DatasetEntry", "ManifestError", "load_manifest", "get_entry", "manifest_path", "REPO_ROOT"]

MANIFEST_NAME = "data_manifest.yaml"
#: Root of a source checkout (``cradlekit/data/manifest.py`` -> two levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Keys every entry must state explicitly (``null`` is allowed where it has a meaning).
REQUIRED_FIELDS = (
    "description",
    "url",
    "filename",
    "sha256",
    "format",
    "counts_layer",
    "gene_symbols",
    "perturbation_key",
    "normalizer",
    "citation",
    "license",
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_FORMATS = ("h5ad",)


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the manifest; see the field reference at the top of ``data_manifest.yaml``.

    Attributes
    ----------
    name
        Key of the entry (``"norman"``, ``"norman_subset"`` ...).
    url
        Public download URL; ``None`` for a local-only file.
    sha256, md5
        Known checksum of the file; both ``None`` means trust on first use.
    counts_layer
        ``None``: raw counts are in ``X``; otherwise the layer that holds them.
    gene_symbols
        ``None``: ``var_names`` are gene symbols; otherwise the ``var`` column holding them.
    perturbation_key, control_labels, control_pattern, combo_sep
        How the labels look in the published file (before standardisation).
    normalizer
        Name of the obs normaliser (see :mod:`cradlekit.data.readers`); ``None`` for a dataset
        without perturbations.
    derive, derived_sha256
        For an upstream file that is not yet raw counts: the derivation applied after reading
        (see :data:`cradlekit.data.derive.DERIVATIONS`), and the sha256 of a file already derived
        (accepted as ``path=`` and read without deriving again).
    """

    name: str
    description: str
    filename: str
    format: str
    citation: str
    license: str
    url: str | None = None
    sha256: str | None = None
    md5: str | None = None
    size_bytes: int | None = None
    checksum_source: str | None = None
    doi: str | None = None
    counts_layer: str | None = None
    gene_symbols: str | None = None
    perturbation_key: str | None = None
    control_labels: tuple[str, ...] = ()
    control_pattern: str | None = None
    combo_sep: str | None = None
    normalizer: str | None = None
    normalizer_options: Mapping[str, Any] = field(default_factory=dict)
    subset: Mapping[str, Any] | None = None
    selection: Mapping[str, Any] | None = None
    precomputed_qc: Mapping[str, Any] = field(default_factory=dict)
    file_shape: tuple[int, int] | None = None
    paper_shape: tuple[int, int] | None = None
    derive: str | None = None
    derived_sha256: str | None = None
    local_env: str = "CRADLEKIT_DATA_DIRS"
    search_dirs: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def known_hash(self) -> str | None:
        """The checksum in pooch's ``"alg:hex"`` form (sha256 preferred), or ``None``."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.md5:
            return f"md5:{self.md5}"
        return None

    @property
    def has_perturbations(self) -> bool:
        """Whether the dataset carries perturbation labels (``normalizer`` is set)."""
        return self.normalizer is not None

    def resolved_search_dirs(self) -> list[Path]:
        """``search_dirs`` as absolute paths (relative entries are taken from :data:`REPO_ROOT`)."""
        out = []
        for d in self.search_dirs:
            p = Path(d).expanduser()
            out.append(p if p.is_absolute() else (REPO_ROOT / p).resolve())
        return out


_FIELD_NAMES = {f.name for f in fields(DatasetEntry)} - {"name"}
_TUPLE_FIELDS = ("control_labels", "search_dirs", "notes")
_SHAPE_FIELDS = ("file_shape", "paper_shape")


def manifest_path() -> Path:
    """Path of the manifest that :func:`load_manifest` reads by default.

    The packaged ``cradlekit/data/data_manifest.yaml`` when it is a readable YAML mapping,
    else ``<repo root>/data_manifest.yaml``.

    Raises
    ------
    FileNotFoundError
        If neither exists.
    """
    packaged = Path(str(resources.files("cradlekit.data").joinpath(MANIFEST_NAME)))
    for candidate in (packaged, REPO_ROOT / MANIFEST_NAME):
        if candidate.is_file() and _looks_like_manifest(candidate):
            return candidate
    raise FileNotFoundError(
        f"dataset manifest not found: looked for {packaged} and {REPO_ROOT / MANIFEST_NAME}"
    )


def _looks_like_manifest(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "datasets" in data


def load_manifest(path: str | Path | None = None) -> dict[str, DatasetEntry]:
    """Read and validate the dataset manifest.

    Parameters
    ----------
    path
        A manifest YAML file. Defaults to :func:`manifest_path`.

    Returns
    -------
    dict
        Entry name -> :class:`DatasetEntry`, in file order.

    Raises
    ------
    MissingKeyError
        If an entry lacks a required field (every one of ``REQUIRED_FIELDS`` must be written,
        ``null`` where that has a meaning).
    ManifestError
        If a field has a wrong type or value, or an entry has an unknown field.
    """
    path = Path(path) if path is not None else manifest_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ManifestError(f"{path}: expected a mapping with a 'datasets' mapping at the top level")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ManifestError(f"{path}: 'defaults' must be a mapping")
    return {
        str(name): _parse_entry(str(name), raw, defaults, path) for name, raw in data["datasets"].items()
    }


def get_entry(
    name: str | DatasetEntry, manifest: Mapping[str, DatasetEntry] | str | Path | None = None
) -> DatasetEntry:
    """Return the entry ``name`` (an entry is returned unchanged).

    Raises
    ------
    MissingKeyError
        If ``name`` is not in the manifest; the message lists the known names.
    """
    if isinstance(name, DatasetEntry):
        return name
    entries = manifest if isinstance(manifest, Mapping) else load_manifest(manifest)
    if name not in entries:
        raise MissingKeyError(
            f"unknown dataset {name!r}; the manifest lists {sorted(entries)} (for your own data pass the "
            "path of an .h5ad file)"
        )
    return entries[name]


def _parse_entry(name: str, raw: Any, defaults: Mapping[str, Any], path: Path) -> DatasetEntry:
    where = f"{path.name}: dataset {name!r}"
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(raw).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in raw]
    if missing:
        raise MissingKeyError(f"{where}: missing required field(s) {missing} (write null if unknown)")
    unknown = sorted(set(raw) - _FIELD_NAMES)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_FIELD_NAMES)}")
    values = {k: v for k, v in raw.items()}
    for key in ("local_env", "search_dirs"):
        if values.get(key) is None and key in defaults:
            values[key] = defaults[key]
    values = {k: v for k, v in values.items() if v is not None or k in REQUIRED_FIELDS}
    for key in ("description", "filename", "format", "citation", "license"):
        if not isinstance(values.get(key), str) or not values[key].strip():
            raise ManifestError(f"{where}: {key!r} must be a non-empty string")
    _check_checksums(values, where)
    _check_optional_strings(values, where)
    if values["format"] not in _FORMATS:
        raise ManifestError(f"{where}: format {values['format']!r} is not supported (use one of {_FORMATS})")
    if Path(values["filename"]).name != values["filename"]:
        raise ManifestError(f"{where}: filename must be a bare file name, got {values['filename']!r}")
    for key in _TUPLE_FIELDS:
        if key in values:
            seq = values[key]
            if isinstance(seq, str) or not isinstance(seq, list) or not all(isinstance(s, str) for s in seq):
                raise ManifestError(f"{where}: {key!r} must be a list of strings")
            values[key] = tuple(seq)
    for key in _SHAPE_FIELDS:
        if key in values:
            shape = values[key]
            if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
                raise ManifestError(f"{where}: {key!r} must be [n_cells, n_genes]")
            values[key] = tuple(shape)
    for key in ("normalizer_options", "subset", "selection", "precomputed_qc"):
        if key in values and not isinstance(values[key], dict):
            raise ManifestError(f"{where}: {key!r} must be a mapping")
    if values.get("normalizer") is not None and values.get("perturbation_key") is None:
        raise ManifestError(f"{where}: a dataset with a normalizer must name its perturbation_key")
    if values.get("derive") is not None:
        from .derive import DERIVATIONS

        if values["derive"] not in DERIVATIONS:
            raise ManifestError(f"{where}: derive {values['derive']!r} is not one of {sorted(DERIVATIONS)}")
    derived = values.get("derived_sha256")
    if derived is not None and not (isinstance(derived, str) and _SHA256.match(derived)):
        raise ManifestError(f"{where}: derived_sha256 must be 64 lowercase hex digits, got {derived!r}")
    if values.get("subset") is not None and not {"column", "default"} <= set(values["subset"]):
        raise ManifestError(f"{where}: 'subset' needs 'column' and 'default'")
    if values.get("control_pattern") is not None:
        try:
            re.compile(values["control_pattern"])
        except re.error as err:
            raise ManifestError(f"{where}: control_pattern is not a valid regex ({err})") from err
    return DatasetEntry(name=name, **values)


def _check_checksums(values: dict[str, Any], where: str) -> None:
    sha, md5 = values.get("sha256"), values.get("md5")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha!r}")
    if md5 is not None and not (isinstance(md5, str) and _MD5.match(md5)):
        raise ManifestError(f"{where}: md5 must be 32 lowercase hex digits, got {md5!r}")
    size = values.get("size_bytes")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise ManifestError(f"{where}: size_bytes must be a positive integer, got {size!r}")
    url = values.get("url")
    if url is not None and not (isinstance(url, str) and re.match(r"^(https?|ftp)://", url)):
        raise ManifestError(f"{where}: url must be an http(s)/ftp URL or null, got {url!r}")
    if url is None and sha is None and md5 is None:
        raise ManifestError(f"{where}: a local-only entry (url: null) needs a sha256 or md5 to verify it")


def _check_optional_strings(values: dict[str, Any], where: str) -> None:
    for key in (
        "counts_layer", "gene_symbols", "perturbation_key", "control_pattern", "combo_sep",
        "normalizer", "checksum_source", "doi", "local_env", "derive",
    ):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise ManifestError(f"{where}: {key!r} must be a string or null, got {values[key]!r}")
