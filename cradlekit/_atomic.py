"""Atomic file writes: write a temporary file next to the target, then rename it over the target.

A reader (or a crash, Ctrl-C, kill -9) sees the old file or the new one, never half a file, and
writing a file onto itself (``cradlekit qc data.h5ad data.h5ad``) cannot destroy the input.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text_atomic", "write_h5ad_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (same suffix); on success rename it to ``path``.

    On an exception (or KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """``Path(path).write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_h5ad_atomic(adata: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """``adata.write_h5ad(path)``, atomically (also safe when ``path`` is the file ``adata`` came from)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, **kwargs)
    return Path(path)
