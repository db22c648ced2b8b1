"""Readable messages for bad input in a widget (never a traceback).

A controller runs every user action inside :func:`report_errors`; an exception becomes one or two
sentences in the controller's ``message`` trait (shown in the widget), the traceback goes to the
``cradlekit`` logger at debug level only.
"""

from __future__ import annotations

import html
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .._logging import logger
from ..errors import (
    CradlekitError,
    EmptyPerturbationError,
    GeneMismatchError,
    InvalidCountsError,
    MissingKeyError,
    NonFiniteLossError,
    UnknownPerturbationError,
)

__all__ = [
    "NO_QC_LABELS",
    "NOT_TRAINED",
    "EMPTY_SELECTION",
    "NO_MODEL",
    "describe_error",
    "report_errors",
    "capture_logs",
    "message_html",
]

#: The AnnData has no ``uns['qc']`` record yet.
NO_QC_LABELS = (
    "No QC labels yet: run cradlekit.qc.label_artifacts(adata) first "
    "(it writes the metrics, artifact_k3/4/5 and the thresholds)."
)
#: A model is needed but has not been trained.
NOT_TRAINED = "The model is not trained yet: train it first (TrainingController or model.train())."
#: No model was given.
NO_MODEL = "No model: pass a trained cradlekit.PerturbationModel (e.g. TrainingController(adata).model)."
#: Nothing is selected.
EMPTY_SELECTION = "Nothing selected: choose at least one item."

#: Checked in this order (subclasses before their bases).
_PREFIX = (
    (GeneMismatchError, "Genes do not match"),
    (MissingKeyError, "Missing input"),
    (InvalidCountsError, "Invalid counts"),
    (UnknownPerturbationError, "Unknown perturbation"),
    (EmptyPerturbationError, "No cells"),
    (NonFiniteLossError, "Training diverged"),
)


def describe_error(exc: BaseException, action: str = "") -> str:
    """One readable line for an exception raised while doing ``action``.

    Parameters
    ----------
    exc
        The exception.
    action
        What the user asked for (``"generate cells"``); prefixes the message.

    Returns
    -------
    str
        ``"Could not <action>: <kind>: <message>"``; cradlekit's own error messages already say
        which function creates a missing input, so they are passed through.
    """
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = f"missing key {exc.args[0]!r}"
    kind = next((p for cls, p in _PREFIX if isinstance(exc, cls)), None)
    if kind is None and not isinstance(exc, CradlekitError | ValueError | TypeError):
        kind = type(exc).__name__
    head = f"Could not {action}: " if action else ""
    return head + (f"{kind}: {text}" if kind else text)


class _Router(logging.Filter):
    """Filter on the ``cradlekit`` logger: records logged by a thread inside :func:`capture_logs` go to
    that thread's sink instead of the notebook's stderr (where INFO looks like an error block)."""

    def __init__(self) -> None:
        super().__init__("cradlekit-widgets")
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        sinks = getattr(self.local, "sinks", None)
        if not sinks:
            return True
        sinks[-1](record)
        return False


_ROUTER = _Router()
if not any(isinstance(f, _Router) for f in logger.filters):
    logger.addFilter(_ROUTER)
else:  # a reloaded module: keep the filter already installed
    _ROUTER = next(f for f in logger.filters if isinstance(f, _Router))


def _thread_showwarning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` that hands warnings of a capturing thread to its sink (see below)."""
    sinks = getattr(_ROUTER.local, "warning_sinks", None)
    if sinks:
        sinks[-1](str(message))
        return
    _ORIGINAL_SHOWWARNING(message, category, filename, lineno, file, line)


if getattr(warnings.showwarning, "__name__", "") != "_thread_showwarning":
    _ORIGINAL_SHOWWARNING = warnings.showwarning
    # Python warnings of a widget's background thread (where warnings.catch_warnings is not thread-safe)
    # go to that widget's message; every other thread shows them as before.
    warnings.showwarning = _thread_showwarning
else:  # pragma: no cover - a reloaded module
    _ORIGINAL_SHOWWARNING = warnings.showwarning.__globals__["_ORIGINAL_SHOWWARNING"]


@contextmanager
def capture_logs(sink: Callable[[logging.LogRecord], None], warnings_to: list[str] | None = None) -> Iterator[None]:
    """Send the ``cradlekit`` log records of the current thread to ``sink`` (not to stderr).

    With ``warnings_to``, Python warnings shown in this thread are appended to that list instead of
    being printed. Other threads (e.g. a training thread of another controller) are not affected;
    captures nest.
    """
    local = _ROUTER.local
    sinks = getattr(local, "sinks", None)
    if sinks is None:
        sinks = local.sinks = []
    if getattr(local, "warning_sinks", None) is None:
        local.warning_sinks = []
    sinks.append(sink)
    if warnings_to is not None:
        local.warning_sinks.append(lambda text: text in warnings_to or warnings_to.append(text))
    try:
        yield
    finally:
        sinks.pop()
        if warnings_to is not None:
            local.warning_sinks.pop()


def _log_sink(owner: Any, notes: list[str]) -> Callable[[logging.LogRecord], None]:
    """A sink keeping every record in ``owner.log`` (when it has one) and WARNING+ in ``notes``."""

    def sink(record: logging.LogRecord) -> None:
        text = record.getMessage()
        log = getattr(owner, "log", None)
        if isinstance(log, list):
            log.append(f"{record.levelname}: {text}")
            del log[:-200]
        if record.levelno >= logging.WARNING and text not in notes:
            notes.append(text)

    return sink


def add_warnings(owner: Any, notes: list[str]) -> None:
    """Append library warnings to ``owner.message`` (level at least ``warning``)."""
    if not notes:
        return
    text = "\n".join(f"Warning: {n}" for n in notes)
    level = getattr(owner, "message_level", "info")
    owner_text = owner.message
    set_message(owner, f"{owner_text}\n{text}" if owner_text else text, "error" if level == "error" else "warning")


@contextmanager
def report_errors(owner: Any, action: str) -> Iterator[None]:
    """Run a widget action; on an exception set ``owner.message`` instead of raising.

    ``owner.message`` is cleared when the action starts. Library warnings (Python warnings and
    ``cradlekit`` log records at WARNING or above) raised inside are shown in ``owner.message``
    after the action's own message; the package's INFO records go to ``owner.log`` (when the owner
    has such a list), never to the notebook's stderr.

    Parameters
    ----------
    owner
        A controller with a ``message`` trait (and optionally ``message_level``).
    action
        What is being done, for the message.
    """
    set_message(owner, "", "info")
    notes: list[str] = []
    try:
        with capture_logs(_log_sink(owner, notes)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield
        for w in caught:
            text = str(w.message)
            logger.debug("widget action %r warned: %s", action, text)
            if text not in notes:
                notes.append(text)
        add_warnings(owner, notes)
    except Exception as exc:  # noqa: BLE001 - a widget must never show a traceback
        logger.debug("widget action %r failed", action, exc_info=True)
        set_message(owner, describe_error(exc, action), "error")
        add_warnings(owner, notes)


def set_message(owner: Any, text: str, level: str = "info") -> None:
    """Set ``owner.message`` (and ``owner.message_level`` when it has one)."""
    if hasattr(owner, "message_level"):
        owner.message_level = level
    owner.message = text


_STYLE = {
    "info": "color:#31708f;background:#d9edf7;border:1px solid #bce8f1",
    "warning": "color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc",
    "error": "color:#a94442;background:#f2dede;border:1px solid #ebccd1",
}


def message_html(text: str, level: str = "info") -> str:
    """HTML of a message box (escaped text); empty string for no message."""
    if not text:
        return ""
    style = _STYLE.get(level, _STYLE["info"])
    body = html.escape(text).replace("\n", "<br>")
    return f'<div class="cradlekit-message" style="{style};padding:4px 8px;border-radius:3px">{body}</div>'
