"""Training callbacks: how widgets, loggers and tests follow a run epoch by epoch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Callback", "FunctionCallback", "as_callback", "TrainerView"]


class TrainerView(Protocol):
    """What a callback may use of the :class:`~cradlekit.train.Trainer` that calls it.

    A protocol rather than an import of the trainer, which itself imports this module: the
    dependency runs one way, trainer -> callbacks.
    """

    history: list[dict[str, Any]]

    def request_stop(self) -> None:
        """Ask the loop to stop after the current epoch."""


Trainer = TrainerView  # the name the hooks' annotations use


@runtime_checkable
class Callback(Protocol):
    """Receives events from :class:`~cradlekit.train.Trainer`. Implement any subset of the hooks."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Called after each epoch with the record it adds to the history."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Called once after the last epoch (the loop finished or stopped early; not after an error)."""


class FunctionCallback:
    """Wrap a function ``f(record)`` called at the end of every epoch."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]):
        self.fn = fn

    def on_train_start(self, trainer: Trainer) -> None:
        """Nothing to do before the first epoch."""
        pass

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Call the function with the epoch's record."""
        self.fn(record)

    def on_train_end(self, trainer: Trainer) -> None:
        """Nothing to do at the end."""
        pass


def as_callback(obj: Callback | Callable[[dict[str, Any]], Any]) -> Callback:
    """Accept a :class:`Callback` or a plain function of the epoch record."""
    if all(hasattr(obj, h) for h in ("on_train_start", "on_epoch_end", "on_train_end")):
        return obj  # type: ignore[return-value]
    if callable(obj):
        return FunctionCallback(obj)
    raise TypeError(f"callback must be a Callback or a callable, got {type(obj).__name__}")
