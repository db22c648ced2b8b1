"""Atomic file writes: write a temporary file next to the target, then rename it over the target.

A reader (or a crash, Ctrl-C, kill -9) sees the old file or the new one, never half a file, and
writing a file onto itself (``cradlekit qc data.h5ad data.h5ad``) cannot destroy the input.

The temporary file is ``.<stem>.<host>.<pid>.tmp<suffix>`` (``<host>``: 8 hex digits of the host
name). A process killed while writing (kill -9, power loss) leaves it behind; the next write of the
same target removes such leftovers, but only files of that exact pattern, made on this host by a
process that no longer runs (:func:`remove_stale_temporaries`).

A write that fails because the disk is full (or a file-size or quota limit is reached) raises
:class:`~cradlekit.errors.FileWriteError` naming the target file; the target is unchanged. An h5ad is
checked before writing too (:func:`write_h5ad_atomic`): HDF5 can crash the process (a segmentation
fault while closing the file) after a failed write, so an AnnData whose arrays alone need more than
the free space (or the file-size limit) is refused before a byte is written.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._logging import logger
from .errors import FileWriteError

__all__ = ["atomic_path", "write_text_atomic", "write_h5ad_atomic", "temporary_name", "remove_stale_temporaries"]

#: errno values of "no room to write": no space, file too large (ulimit -f), quota exceeded.
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NO_ROOM_TEXT = re.compile(r"no space left|file too large|quota exceeded|errno = (28|27|122)\b", re.IGNORECASE)


def _host_token() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def temporary_name(path: str | os.PathLike, pid: int | None = None) -> Path:
    """The temporary file :func:`atomic_path` writes for ``path`` (in the same folder)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{_host_token()}.{os.getpid() if pid is None else pid}.tmp{path.suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # pragma: no cover - no cheap check: treat as alive (keep the file)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. a process of another user
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``path`` left by killed writers; return what was removed.

    Only names of :func:`temporary_name`'s pattern for this target (and the older
    ``.<stem>.<pid>.tmp<suffix>`` pattern) are considered, and only those whose writer ran on this
    host and no longer runs. Never raises (a file that cannot be removed is left).
    """
    path = Path(path)
    stem, suffix = re.escape(path.stem), re.escape(path.suffix)
    pattern = re.compile(rf"^\.{stem}\.(?:(?P<host>[0-9a-f]{{8}})\.)?(?P<pid>\d+)\.tmp{suffix}$")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.stem)}.*.tmp{glob.escape(path.suffix)}"))
    except OSError:
        return removed
    for tmp in candidates:
        m = pattern.match(tmp.name)
        if m is None or (m["host"] is not None and m["host"] != _host_token()) or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            size = tmp.stat().st_size
            tmp.unlink()
            removed.append(tmp)
            logger.warning("removed %s (%d bytes), left by process %s that was killed while writing %s",
                           tmp, size, m["pid"], path)
    return removed


def _no_room(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in _NO_ROOM:
        return True
    return isinstance(err, (OSError, RuntimeError)) and bool(_NO_ROOM_TEXT.search(str(err)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (same suffix); on success rename it to ``path``.

    On an exception (or KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.

    Raises
    ------
    cradlekit.errors.FileWriteError
        The disk is full, or a file-size or quota limit was reached (the message names ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:
            if isinstance(err, FileWriteError) or not _no_room(err):
                raise
            code = err.errno if isinstance(err, OSError) and err.errno in _NO_ROOM else errno.ENOSPC
            found = re.search(r"errno = (\d+)", str(err))  # h5py puts the errno in its message
            if found and int(found.group(1)) in _NO_ROOM:
                code = int(found.group(1))
            raise FileWriteError(
                code, f"could not write {path}: {os.strerror(code)} ({type(err).__name__}: {str(err)[:200]}); "
                f"{path} was left as it was. Free space (or raise the limit) on {path.parent} and run again", str(path),
            ) from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``Path(path).write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _array_bytes(adata: Any) -> int:
    """Bytes of the arrays an h5ad of ``adata`` stores (``X``, layers, obsm/varm/obsp/varp), a lower bound of
    the file's size (tables and metadata not counted; a backed ``X`` counts 0)."""
    total = 0
    mappings = [getattr(adata, name, None) or {} for name in ("layers", "obsm", "varm", "obsp", "varp")]
    for value in [getattr(adata, "X", None), *(v for m in mappings for v in m.values())]:
        parts = (
            [getattr(value, p, None) for p in ("data", "indices", "indptr")] if hasattr(value, "indptr") else [value]
        )
        total += sum(int(getattr(p, "nbytes", 0) or 0) for p in parts if hasattr(p, "dtype"))
    return total


def _room(folder: Path) -> tuple[int, str] | None:
    """Bytes one file may still take in ``folder`` (free space, or the file-size limit if lower)."""
    try:
        room, what = shutil.disk_usage(folder).free, "free space"
    except OSError:
        return None
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and soft < room:
            room, what = soft, "the file-size limit (ulimit -f)"
    except (ImportError, OSError, ValueError):  # pragma: no cover - no resource module (Windows)
        pass
    return room, what


def write_h5ad_atomic(adata: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``adata.write_h5ad(path)``, atomically (also safe when ``path`` is the file ``adata`` came from).

    Raises
    ------
    cradlekit.errors.FileWriteError
        The arrays alone need more than the free space or the file-size limit (checked before writing),
        or the disk filled up while writing; the message names ``path``, which is left as it was.
    """
    path = Path(path)
    need, room = _array_bytes(adata), _room(path.parent if path.parent.exists() else Path.cwd())
    if room is not None and need > room[0]:
        code = errno.EFBIG if room[1].startswith("the file-size") else errno.ENOSPC
        raise FileWriteError(
            code, f"could not write {path}: its arrays alone take {need / 2**20:.1f} MB and {room[1]} allows "
            f"{room[0] / 2**20:.1f} MB; nothing was written ({path} was left as it was). Free space (or raise the "
            f"limit) on {path.parent} and run again", str(path),
        )
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **kwargs)
    return Path(path)
