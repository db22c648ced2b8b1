"""Slow widget actions: a visible busy state, an optional background thread, and cancel.

A controller runs anything that may take more than a fraction of a second through
:meth:`Tasks.run_task`: the ``busy`` trait turns on with a ``busy_title`` saying what is coming
(the view disables its controls and shows a progress bar and a Cancel button), the work runs, and
its result is applied only if nobody cancelled it. Programmatic use (tests, the book) runs the work
inline; actions started from the displayed widget run in a background thread
(``background=True``), so that the notebook stays responsive and Cancel can be pressed.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import traitlets as T

from ._messages import _log_sink, add_warnings, capture_logs, report_errors, set_message

__all__ = ["Cancelled", "TaskToken", "Tasks"]


class Cancelled(Exception):
    """Raised by :meth:`TaskToken.check` once the task was cancelled."""


class TaskToken:
    """Handed to the work function: ``token.check()`` between steps stops a cancelled task early."""

    def __init__(self) -> None:
        self.event = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()

    def check(self) -> None:
        if self.event.is_set():
            raise Cancelled()


class Tasks(T.HasTraits):
    """Mixin of the controllers: ``busy``, ``busy_title``, ``background``, :meth:`run_task`, :meth:`cancel`."""

    busy = T.Bool(False, help="a slow action is running (controls disabled, Cancel shown)")
    busy_title = T.Unicode("", help="what the running action will show, e.g. 'UMAP of generated cells'")
    background = T.Bool(False, help="run slow actions in a thread (set while the widget drives the controller)")

    _task_lock: threading.Lock
    _token: TaskToken | None = None
    _task_thread: threading.Thread | None = None

    def _init_tasks(self) -> None:
        self._task_lock = threading.Lock()
        self.log: list[str] = []

    @contextmanager
    def in_background(self):
        """Actions started inside this block run in a thread (the views wrap user input in it)."""
        old = self.background
        self.background = True
        try:
            yield
        finally:
            self.background = old

    def run_task(
        self,
        title: str,
        work: Callable[[TaskToken], Any],
        apply: Callable[[Any], None],
        *,
        action: str,
        on_cancel: Callable[[], None] | None = None,
    ) -> bool:
        """Run ``work(token)`` with the busy state on, then ``apply(result)`` unless cancelled.

        Parameters
        ----------
        title
            Shown while busy (``busy_title``).
        work
            The slow part; must not change traits (it may run in a thread). Calls ``token.check()``
            between steps.
        apply
            Takes the result and updates the controller's state.
        action
            For error messages (``"Could not <action>: ..."``).
        on_cancel
            Restores the settings of before the action (called by :meth:`cancel`).

        Returns
        -------
        bool
            Inline: whether the work finished and was applied. In the background: ``True`` (started).
        """
        self.cancel(quiet=True)  # a newer request replaces an older one
        token = TaskToken()
        with self._task_lock:
            self._token, self._on_cancel = token, on_cancel
        self.busy_title, self.busy = title, True
        if not self.background:
            return self._task_body(token, work, apply, action)
        thread = threading.Thread(target=self._task_body, args=(token, work, apply, action), daemon=True,
                                  name=f"cradlekit-{type(self).__name__}")  # fmt: skip
        self._task_thread = thread
        thread.start()
        return True

    def _task_body(self, token: TaskToken, work, apply, action: str) -> bool:
        notes: list[str] = []
        done = False
        try:
            with capture_logs(_log_sink(self, notes)):
                if threading.current_thread() is threading.main_thread():
                    with warnings.catch_warnings(record=True) as caught:  # not thread-safe: main thread only
                        warnings.simplefilter("always")
                        result = work(token)
                    notes.extend(str(w.message) for w in caught if str(w.message) not in notes)
                else:
                    with capture_logs(lambda record: None, warnings_to=notes):  # this thread's warnings
                        result = work(token)
            with self._task_lock:
                if token.cancelled or self._token is not token:
                    return False
                self._token = None
            with report_errors(self, action):
                apply(result)
                done = True
            add_warnings(self, notes)
        except Cancelled:
            return False
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            with report_errors(self, action):
                raise exc
            add_warnings(self, notes)
            with self._task_lock:
                if self._token is token:
                    self._token = None
        finally:
            with self._task_lock:
                mine = self._token is None or self._token is token
            if mine and not token.cancelled:
                self.busy = False
                self.busy_title = ""
        return done

    def cancel(self, *, quiet: bool = False) -> bool:
        """Cancel the running action: controls come back at once, the settings of before are restored.

        Work that cannot be interrupted (one UMAP optimisation) finishes in its thread and is thrown
        away. Returns whether something was cancelled.
        """
        with self._task_lock:
            token, on_cancel = self._token, getattr(self, "_on_cancel", None)
            self._token = None
        if token is None:
            return False
        token.event.set()
        title = self.busy_title
        self.busy, self.busy_title = False, ""
        if on_cancel is not None and not quiet:
            on_cancel()
        if not quiet:
            set_message(self, f"Cancelled: {title}." if title else "Cancelled.", "info")
        return True

    def wait_task(self, timeout: float | None = None) -> bool:
        """Block until a background action ends; return whether none is running."""
        thread = self._task_thread
        if thread is threading.current_thread():  # asked from the task itself (e.g. while applying its result)
            return True
        if thread is not None:
            thread.join(timeout)
        return not (thread is not None and thread.is_alive())
