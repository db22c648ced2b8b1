"""The package logger. Library code logs; it never prints.

Following Python's advice for libraries, importing cradlekit installs no handler and leaves
propagation on: where a record goes is the application's choice (``logging.basicConfig``, a
notebook's or a test runner's handlers). The logger's level is INFO, so progress messages reach
whatever handlers the application set up; with none, Python's last-resort handler prints WARNING
and above to stderr only. :func:`enable_logging` is the opt-in for a terminal (the command line
interface calls it).

Which mechanism for which message: something the caller should act on (questionable input, a
skipped criterion, a result to distrust) is a :func:`warnings.warn` (a ``UserWarning`` or
``RuntimeWarning`` pointing at the caller's line, filterable, shown once per place); progress and
notes on what a long step did (files read or written, caches, runs skipped) are log records. No
message is both.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

__all__ = ["logger", "enable_logging"]

logger = logging.getLogger("cradlekit")
logger.setLevel(logging.INFO)

#: Format of :func:`enable_logging`'s handler.
LOG_FORMAT = "%(levelname)s [cradlekit] %(message)s"


def enable_logging(level: int | str = logging.INFO, *, stream: TextIO | None = None) -> logging.Handler:
    """Print cradlekit's log records at ``level`` and above to ``stream`` (default: ``sys.stderr``).

    Adds one handler to the ``cradlekit`` logger (calling it again replaces it, so records are not
    printed twice). Propagation stays on: an application that also configured the root logger sees
    the records there as well.

    Parameters
    ----------
    level
        Lowest level printed (``logging.INFO`` shows progress; ``"WARNING"`` only problems).
    stream
        Where to print; ``None`` is ``sys.stderr`` at the time of each record.

    Returns
    -------
    logging.Handler
        The handler (remove it with ``cradlekit.logger.removeHandler``).
    """
    for old in [h for h in logger.handlers if getattr(h, "_cradlekit_enabled", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(level)
    handler._cradlekit_enabled = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > handler.level:
        logger.setLevel(handler.level)
    return handler


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to the current ``sys.stderr`` (which tests and notebooks replace)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # logging.StreamHandler assigns it in __init__
        pass
