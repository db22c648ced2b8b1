"""Advisory, process-bound file locks: one runner per grid run, one training per checkpoint folder,
one builder per prepared file, one grid per output folder.

A lock is an advisory ``flock`` on a lock file (e.g. ``runs/.locks/<run name>.lock``): the operating
system releases it when its process ends, however it ends (kill -9 included), so a dead process never
blocks anyone. Lock files are left in place (deleting one another process may be opening would race);
they are empty markers apart from the holder's host and process id, for people. Two ``RunLock`` objects
on one file conflict even inside one process (``flock`` locks belong to an open file).

On a system without ``fcntl`` (Windows) nothing is locked: two writers are not detected there.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LOCK_DIR", "held_elsewhere", "holder"]

LOCK_DIR = ".locks"


class RunLock:
    """An exclusive (or, with ``shared=True``, shared) process-bound lock on ``path`` (created if needed).

    Parameters
    ----------
    path
        The lock file.
    shared
        Take a shared lock: any number of shared holders at once, but none while an exclusive one holds it.
    """

    def __init__(self, path: str | os.PathLike, *, shared: bool = False):
        self.path = Path(path)
        self.shared = shared
        self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self, *, blocking: bool = False) -> bool:
        """Take the lock; without ``blocking`` return False at once when another holder excludes it."""
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - kept open while the lock is held
        alone = True
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alone = False
                try:  # held by someone: wait for it (blocking) or give up
                    mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
                    fcntl.flock(fh.fileno(), mode | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    fh.close()
                    return False
                alone = not self.shared
        if alone:  # no other holder: the file names this process only
            fh.seek(0)
            fh.truncate()
        fh.write(f"{socket.gethostname()} {os.getpid()}\n")
        fh.flush()
        if fcntl is not None and self.shared and alone:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)  # from exclusive (to write the file) to shared
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


def held_elsewhere(path: str | os.PathLike) -> bool:
    """Whether another open lock (another process, or another :class:`RunLock` here) holds ``path`` now.

    Writes nothing into the file; ``False`` when the file does not exist or nothing can be locked.
    """
    path = Path(path)
    if fcntl is None or not path.is_file():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def holder(path: str | os.PathLike) -> str:
    """``"process <pid> on <host>"`` as the lock file records its last holder(s), for messages."""
    try:
        lines = Path(path).read_text().split("\n")
    except OSError:
        return "another process"
    found = [line.split() for line in lines if len(line.split()) == 2]
    if not found:
        return "another process"
    return ", ".join(f"process {pid} on {host}" for host, pid in dict.fromkeys(map(tuple, found)))
