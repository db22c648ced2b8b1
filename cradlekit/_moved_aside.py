"""Moving a damaged or rejected file aside, never deleting it and never overwriting another one.

A file that fails a check (a cached download, a prepared file of the experiment runner) is renamed
into a ``.moved-aside`` folder rather than deleted: the check, not the file, may be wrong. Two
different files moved aside under one name must both survive, so a taken name gets a counter
(``name``, ``name.2``, ``name.3`` ...), claimed without a race (a hard link fails if the name exists).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

__all__ = ["move_aside", "MOVED_ASIDE"]

MOVED_ASIDE = ".moved-aside"


def _claim(src: Path, dest: Path) -> bool:
    """Rename ``src`` to ``dest`` unless ``dest`` exists; whether it was done."""
    try:
        os.link(src, dest)  # fails with EEXIST when the name is taken, atomically
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
            raise
        if dest.exists():  # a file system without hard links: check, then rename
            return False
        os.replace(src, dest)
        return True
    with contextlib.suppress(FileNotFoundError):
        os.unlink(src)
    return True


def move_aside(path: str | os.PathLike, folder: str | os.PathLike, name: str, *, same_content: bool = False) -> Path:
    """Rename ``path`` to ``folder/name`` (the folder is created; it must be on the same file system).

    Parameters
    ----------
    path
        The file to move.
    folder
        Where to put it.
    name
        Its new name; when taken, ``name.2``, ``name.3`` ... (the first free one).
    same_content
        ``name`` is derived from the file's content (e.g. its checksum): a file already there under
        ``name`` holds the same bytes and is replaced instead of keeping two copies.

    Returns
    -------
    Path
        Where the file is now.
    """
    path, folder = Path(path), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    if same_content:
        os.replace(path, dest)
        return dest
    n = 1
    while not _claim(path, dest):
        n += 1
        dest = folder / f"{name}.{n}"
    return dest
