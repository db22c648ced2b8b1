"""Readable messages for bad input in a widget (never a traceback).

A controller runs every user action inside :func:`report_errors`; an exception becomes one or two
sentences in the controller's ``message`` trait (shown in the widget), the traceback goes to the
``cradlekit`` logger at debug level only.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Iterator
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


@contextmanager
def report_errors(owner: Any, action: str) -> Iterator[None]:
    """Run a widget action; on an exception set ``owner.message`` instead of raising.

    ``owner.message`` is cleared when the action starts. Warnings raised inside are logged, not
    shown as stderr blocks in the notebook.

    Parameters
    ----------
    owner
        A controller with a ``message`` trait (and optionally ``message_level``).
    action
        What is being done, for the message.
    """
    owner.message = ""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            logger.debug("widget action %r warned: %s", action, w.message)
    except Exception as exc:  # noqa: BLE001 - a widget must never show a traceback
        logger.debug("widget action %r failed", action, exc_info=True)
        set_message(owner, describe_error(exc, action), "error")


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
