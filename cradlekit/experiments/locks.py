"""One lock file per run, so several runners on one output folder share the grid instead of repeating it.

A lock is an advisory ``flock`` on ``runs/.locks/<run name>.lock``: the operating system releases it
when its process ends, however it ends (kill -9 included), so a dead runner never blocks a run.
Lock files are left in place (deleting one another process may be opening would race); they are empty
markers apart from the holder's process id, for people. On a system without ``fcntl`` (Windows)
runs are not locked and two runners may repeat a run (results stay correct: the JSON is written atomically).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LOCK_DIR"]

LOCK_DIR = ".locks"


class RunLock:
    """An exclusive, process-bound lock on ``path`` (created if needed)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, *, blocking: bool = False) -> bool:
        """Take the lock; without ``blocking`` return False at once when another process holds it."""
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                fh.close()
                return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{socket.gethostname()} {os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def __enter__(self) -> RunLock:
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
