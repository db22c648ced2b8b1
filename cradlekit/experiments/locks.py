"""One lock file per run, so several runners on one output folder share the grid instead of repeating it.

The lock itself, :class:`~cradlekit._locks.RunLock`, lives in :mod:`cradlekit._locks` (training locks
its checkpoint folder with it too); this module keeps the runner's name for it.
"""

from __future__ import annotations

from .._locks import LOCK_DIR, RunLock

__all__ = ["RunLock", "LOCK_DIR"]
