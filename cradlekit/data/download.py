"""Find a dataset file locally or download it, always checking its checksum.

Where :func:`fetch` looks, in order:

1. an explicit ``path=`` (a mismatching checksum raises :class:`~cradlekit.errors.ChecksumError`);
2. the ``local_dirs=`` argument, the directories in ``$CRADLEKIT_DATA_DIRS`` (``os.pathsep``
   separated), ``$CRADLEKIT_SHARED_DATA``, and the entry's ``search_dirs`` (by default
   ``../shared/data`` next to a source checkout) - a copy whose checksum does not match is
   skipped with a warning;
3. the cache, ``cache_dir=`` or ``$CRADLEKIT_CACHE`` or ``~/.cache/cradlekit`` - a corrupt cached
   file is logged, moved aside into ``<cache>/.moved-aside/`` (never deleted: the checksum, not the
   file, may be wrong; a second file moved aside under a taken name gets ``.2``, ``.3`` ...) and
   downloaded again, never used;
4. a download with :mod:`pooch`'s HTTP downloader into a temporary file in the cache
   (:func:`cradlekit._atomic.atomic_path`; one left by a killed download is removed by the next
   :func:`fetch`), renamed into place, then checked against the manifest's hash.

**Trust on first use.** When the manifest knows no checksum for a dataset, the sha256 of the first
download is written next to it in ``<file>.sha256`` (``sha256sum`` format), but only once the file
opens as a valid h5ad (a truncated download is moved aside and nothing is recorded). Later loads, local
copies and re-downloads are checked against that record; if upstream really changed the file,
delete the sidecar to trust the new one.

**Content checked on every load, hashed once per process.** A file's content is hashed the first
time a process uses it (sha256 runs at about 1-2 GB/s: seconds for most datasets, about a minute for
Replogle's 61 GB; see ``benchmarks/results/fault_injection.md``); within the process the digest is
reused while the file's size, modification time, change time and inode are unchanged (any write,
even one that restores the modification time, changes the change time). No record on disk is trusted
instead of the content: bytes changed behind the file system's back are found by the next process.
Nothing is written next to local copies outside the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pooch

from .._atomic import atomic_path, remove_stale_temporaries
from .._h5ad import h5ad_problem
from .._logging import logger
from .._moved_aside import MOVED_ASIDE, move_aside
from ..errors import ChecksumError, DatasetNotAvailableError, FileWriteError
from .manifest import DatasetEntry, get_entry

__all__ = [
    "fetch",
    "default_cache_dir",
    "local_search_dirs",
    "file_digest",
    "expected_checksum",
    "DatasetNotAvailableError",
    "CACHE_ENV",
    "DATA_DIRS_ENV",
    "SHARED_DATA_ENV",
]

CACHE_ENV = "CRADLEKIT_CACHE"
DATA_DIRS_ENV = "CRADLEKIT_DATA_DIRS"
SHARED_DATA_ENV = "CRADLEKIT_SHARED_DATA"
_CHUNK = 1 << 20
#: Digests computed in this process: (path, size, mtime_ns, ctime_ns, inode, alg) -> hex digest.
_HASHED: dict[tuple, str] = {}


def default_cache_dir() -> Path:
    """``$CRADLEKIT_CACHE`` if set, else ``~/.cache/cradlekit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cradlekit"


def local_search_dirs(entry: DatasetEntry, local_dirs: Sequence[str | Path] | None = None) -> list[Path]:
    """Directories searched for a local copy of ``entry``, in order, without duplicates."""
    dirs: list[Path] = [Path(d).expanduser() for d in (local_dirs or ())]
    for env in dict.fromkeys((entry.local_env, DATA_DIRS_ENV)):
        dirs += [Path(d).expanduser() for d in os.environ.get(env, "").split(os.pathsep) if d]
    if os.environ.get(SHARED_DATA_ENV):
        dirs.append(Path(os.environ[SHARED_DATA_ENV]).expanduser())
    dirs += entry.resolved_search_dirs()
    seen: dict[str, Path] = {}
    for d in dirs:
        seen.setdefault(str(d.resolve()) if d.exists() else str(d), d)
    return list(seen.values())


def file_digest(path: str | Path, alg: str = "sha256") -> str:
    """Hex digest of a file (``alg`` is any :mod:`hashlib` name, e.g. ``sha256`` or ``md5``)."""
    h = hashlib.new(alg)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def expected_checksum(entry: DatasetEntry, cache_dir: str | Path | None = None) -> tuple[str, str, str] | None:
    """``(alg, hex, source)`` the file must match, or ``None`` when nothing is known yet.

    The manifest's sha256 (else md5) wins; otherwise the trust-on-first-use record
    ``<cache>/<filename>.sha256`` is used if it exists.
    """
    if entry.sha256:
        return "sha256", entry.sha256, "the manifest"
    if entry.md5:
        return "md5", entry.md5, "the manifest"
    side = _sidecar(Path(cache_dir or default_cache_dir()) / entry.filename)
    if side.is_file():
        digest = side.read_text(encoding="utf-8").split()[0].strip().lower()
        return "sha256", digest, f"the first-use record {side}"
    return None


def _content_digest(path: Path, alg: str) -> str:
    """:func:`file_digest` of ``path``, computed once per process while the file is unchanged."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, alg)
    if key not in _HASHED:
        _HASHED[key] = file_digest(path, alg)
    return _HASHED[key]


def _matches(path: Path, expected: tuple[str, str, str], size: int | None) -> tuple[bool, str]:
    """Check ``path``'s size and content; return ``(ok, what was found)``."""
    alg, digest, _ = expected
    st = path.stat()
    if size is not None and st.st_size != size:
        return False, f"a file of {st.st_size} bytes (expected {size} bytes)"
    actual = _content_digest(path, alg)
    return actual == digest, f"{alg} {actual}"


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    plog = pooch.get_logger()
    level = plog.level
    plog.setLevel(logging.WARNING)
    try:
        yield
    finally:
        plog.setLevel(level)


def fetch(
    name_or_entry: str | DatasetEntry,
    *,
    path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    local_dirs: Sequence[str | Path] | None = None,
    verify: bool = True,
    download: bool = True,
    progressbar: bool = False,
    timeout: float = 60.0,
    manifest: Mapping[str, DatasetEntry] | str | Path | None = None,
) -> Path:
    """Return the path of a verified copy of a dataset file, downloading it if needed.

    Parameters
    ----------
    name_or_entry
        A manifest name (``"norman"``) or a :class:`~cradlekit.data.manifest.DatasetEntry`.
    path
        Use exactly this file (checked unless ``verify=False``).
    cache_dir
        Download cache; defaults to :func:`default_cache_dir`.
    local_dirs
        Extra directories searched before ``$CRADLEKIT_DATA_DIRS`` and the shared data dir.
    verify
        Check checksums. ``False`` accepts an explicit ``path`` or local copy as is (the
        cache is always checked).
    download
        Allow a download when no verified local copy exists.
    progressbar
        Show pooch's download progress bar (needs ``tqdm``).
    timeout
        Seconds before a stalled connection is abandoned.
    manifest
        Entries to resolve ``name_or_entry`` in (default: the packaged manifest).

    Returns
    -------
    Path
        A file whose checksum matched (or, with no known checksum, a local copy used as is /
        a download whose sha256 was recorded for next time).

    Raises
    ------
    ChecksumError
        An explicit ``path`` or a fresh download does not match the expected checksum.
    FileNotFoundError
        An explicit ``path`` does not exist.
    DatasetNotAvailableError
        No verified copy anywhere and the download is impossible or failed; the message says
        where to put the file.
    """
    entry = get_entry(name_or_entry, manifest)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    expected = expected_checksum(entry, cache)

    if path is not None:
        return _use_explicit(entry, Path(path).expanduser(), expected, verify, cache)

    dirs = local_search_dirs(entry, local_dirs)
    for d in dirs:
        candidate = d / entry.filename
        if not candidate.is_file() or candidate.resolve() == (cache / entry.filename).resolve():
            continue
        if not verify or expected is None:
            logger.warning(
                "%s: using local copy %s without a checksum check (%s)", entry.name, candidate,
                "verify=False" if not verify else "no checksum known yet",
            )
            return candidate
        ok, found = _matches(candidate, expected, entry.size_bytes)
        if ok:
            logger.info("%s: using verified local copy %s", entry.name, candidate)
            return candidate
        logger.warning(
            "%s: ignoring local copy %s: found %s, expected %s %s from %s",
            entry.name, candidate, found, expected[0], expected[1], expected[2],
        )

    cached = cache / entry.filename
    remove_stale_temporaries(cached)  # a download killed mid-way left its temporary file
    if cached.is_file() and expected is not None:
        ok, found = _matches(cached, expected, entry.size_bytes)
        if ok:
            logger.info("%s: using cached %s", entry.name, cached)
            return cached
        moved = _move_aside(cached, cache, found)
        logger.warning(
            "%s: cached file %s is corrupt (found %s, expected %s %s from %s); moved it to %s (not deleted) "
            "and looking for a replacement", entry.name, cached, found, expected[0], expected[1], expected[2], moved,
        )
    if cached.is_file():  # no checksum record: usable only if it opens as an h5ad
        problem = _h5ad_problem(entry, cached)
        if problem is None:
            _record_first_use(entry, cached, note="found in the cache without a checksum record")
            return cached
        moved = _move_aside(cached, cache, "unreadable")
        logger.warning(
            "%s: cached file %s %s; moved it to %s, no checksum recorded", entry.name, cached, problem, moved
        )

    if entry.url is None or not download:
        why = "it is local-only (no public URL)" if entry.url is None else "download=False"
        raise DatasetNotAvailableError(_not_available(entry, dirs, cache, expected, why) + _moved_note(cache, entry))
    try:
        return _download(entry, cache, expected, progressbar=progressbar, timeout=timeout, dirs=dirs)
    except DatasetNotAvailableError as err:
        note = _moved_note(cache, entry)
        if not note:
            raise
        raise DatasetNotAvailableError(f"{err}{note}") from err.__cause__


def _use_explicit(
    entry: DatasetEntry, path: Path, expected: tuple[str, str, str] | None, verify: bool, cache: Path
) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{entry.name}: no file at {path}")
    if not verify:
        logger.warning("%s: using %s without a checksum check (verify=False)", entry.name, path)
        return path
    if expected is None:
        logger.warning("%s: no checksum known; using %s as is", entry.name, path)
        return path
    ok, found = _matches(path, expected, entry.size_bytes)
    if not ok:
        raise ChecksumError(
            f"{entry.name}: {path} does not match the checksum from {expected[2]}: expected "
            f"{expected[0]} {expected[1]}, found {found}. The file is corrupt or a different "
            "version; replace it, or pass verify=False to use it anyway."
        )
    return path


def _download(
    entry: DatasetEntry,
    cache: Path,
    expected: tuple[str, str, str] | None,
    *,
    progressbar: bool,
    timeout: float,
    dirs: Sequence[Path],
) -> Path:
    import requests  # pooch's HTTP backend; imported lazily like pooch does

    size = f" ({entry.size_bytes / 1e9:.2f} GB)" if entry.size_bytes else ""
    logger.info("%s: downloading %s%s into %s", entry.name, entry.url, size, cache)
    cache.mkdir(parents=True, exist_ok=True)
    out_path = cache / entry.filename
    try:  # into a temporary file renamed into place; checked below, so a bad file is moved aside, not deleted
        with _quiet_pooch(), atomic_path(out_path) as tmp:
            pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)(entry.url, str(tmp), None)
    except FileWriteError:
        raise
    except (requests.exceptions.RequestException, OSError) as err:
        raise DatasetNotAvailableError(
            _not_available(entry, dirs, cache, expected, f"the download failed ({err})")
        ) from err
    if expected is None:
        problem = _h5ad_problem(entry, out_path)
        if problem is not None:
            moved = _move_aside(out_path, cache, "unreadable")
            raise DatasetNotAvailableError(
                f"{entry.name}: the file downloaded from {entry.url} {problem} (an interrupted download?). It was "
                f"moved to {moved} and no checksum was recorded; try again."
            )
        _record_first_use(entry, out_path, note="first download")
    else:
        ok, found = _matches(out_path, expected, entry.size_bytes)
        if not ok:
            moved = _move_aside(out_path, cache, found)
            raise ChecksumError(
                f"{entry.name}: the file downloaded from {entry.url} does not match the checksum from "
                f"{expected[2]}: expected {expected[0]} {expected[1]}, found {found}. It was moved to {moved} "
                "(not deleted). If upstream changed the file on purpose, update the manifest (or delete the "
                "first-use record); if the checksum is wrong, use it with fetch(..., path=..., verify=False)."
            )
    return out_path


def _h5ad_problem(entry: DatasetEntry, path: Path) -> str | None:
    """Why ``path`` is not a readable h5ad (``None`` when it opens, or the entry is not an h5ad)."""
    if str(entry.format).lower() != "h5ad":
        return None
    return h5ad_problem(path)


def _move_aside(path: Path, cache: Path, found: str) -> Path:
    """Rename ``path`` into ``<cache>/.moved-aside/`` (same file system: no copy), named by what was
    found (``sha256 <hex>``, ``unreadable``, a size). A name taken by another file gets ``.2``, ``.3`` ...;
    only a name made of the file's own digest is reused (the same bytes moved aside twice are one file)."""
    tag = "".join(c if c.isalnum() else "-" for c in found.split(" (")[0])[:40].strip("-")
    by_digest = found.split(" ")[0] in hashlib.algorithms_available and " (" not in found
    return move_aside(path, cache / MOVED_ASIDE, f"{path.name}.{tag}", same_content=by_digest)


def _moved_note(cache: Path, entry: DatasetEntry) -> str:
    moved = sorted((cache / MOVED_ASIDE).glob(f"{entry.filename}.*"))
    if not moved:
        return ""
    listed = "".join(f"\n  - {m}" for m in moved)
    return (
        f"\nCopies that failed their check were moved aside (not deleted):{listed}\nIf you know one is good "
        f"(e.g. the published checksum is wrong), use it with fetch(..., path=<that file>, verify=False)."
    )


def _record_first_use(entry: DatasetEntry, path: Path, *, note: str) -> None:
    digest = _content_digest(path, "sha256")
    _sidecar(path).write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    logger.warning(
        "%s: no published checksum; recorded sha256 %s of %s (%s) in %s - later loads are "
        "checked against it (trust on first use)", entry.name, digest, path, note, _sidecar(path),
    )


def _not_available(
    entry: DatasetEntry, dirs: Sequence[Path], cache: Path, expected: tuple[str, str, str] | None, why: str
) -> str:
    check = f" ({expected[0]} {expected[1]})" if expected else ""
    searched = "".join(f"\n  - {d}" for d in dirs) or "\n  (none)"
    return (
        f"dataset {entry.name!r} is not available: no verified local copy of {entry.filename}, and "
        f"{why}.\nTo work offline, copy {entry.filename}{check}"
        + (f" (from {entry.url})" if entry.url else "")
        + f" into a directory listed in ${entry.local_env} (separate several with {os.pathsep!r}), "
        f"or into the cache {cache} (set ${CACHE_ENV} to move it), or pass path=... .\n"
        f"Directories searched:{searched}"
    )
