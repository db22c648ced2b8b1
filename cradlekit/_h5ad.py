"""Reading ``.h5ad`` files with errors that name the file and the way on.

``anndata.read_h5ad`` on a damaged file raises h5py's bare ``OSError: Unable to synchronously open
file (file signature not found)``, or a ``KeyError`` deep inside anndata, without the file's name.
:func:`read_h5ad_checked` turns those into :class:`~cradlekit.errors.DamagedFileError`;
:func:`h5ad_problem` says cheaply (without reading the matrices) whether a file opens as an AnnData.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .errors import DamagedFileError

__all__ = ["h5ad_problem", "read_h5ad_checked", "DEFAULT_REMEDY"]

DEFAULT_REMEDY = (
    "it is damaged or truncated (an interrupted copy, download or write?) or not an AnnData file; "
    "copy or download it again, or write it again from its source"
)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def h5ad_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` does not open as an h5ad (``None`` when it opens and has ``obs`` and ``var``).

    Opens the HDF5 file and lists its top-level groups only: a damaged header, a truncated file and a
    file of another format are found; damage inside a matrix is not (that needs a full read).
    """
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            missing = [k for k in ("obs", "var") if k not in fh]
    except Exception as err:  # noqa: BLE001 - any failure to open means "not usable"
        return f"does not open as an h5ad ({_short(err)})"
    return f"is not an AnnData file (no {', '.join(missing)})" if missing else None


def read_h5ad_checked(
    path: str | os.PathLike, *, what: str = "file", remedy: str = DEFAULT_REMEDY, **kwargs: Any
) -> Any:
    """``anndata.read_h5ad(path, **kwargs)``; a file that cannot be read raises an error naming it.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    what
        What the file is, for the message (``"prepared file"``, ``"input"``).
    remedy
        What the user can do, for the message.
    **kwargs
        Passed to :func:`anndata.read_h5ad` (e.g. ``backed="r"``).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    PermissionError
        The file cannot be opened for reading.
    cradlekit.errors.DamagedFileError
        The file exists but does not read as an AnnData; the message names it and the way on.
    """
    import anndata as ad

    path = Path(path)
    with open(path, "rb"):  # a missing or unreadable file raises its own error, with the name
        pass
    try:
        with warnings.catch_warnings():  # files written by old anndata versions read fine
            warnings.simplefilter("ignore", getattr(ad, "OldFormatWarning", UserWarning))
            return ad.read_h5ad(path, **kwargs)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001 - h5py OSError, anndata KeyError/ValueError/TypeError, ...
        raise DamagedFileError(f"{what} {path} cannot be read as an .h5ad ({_short(err)}): {remedy}.") from err
