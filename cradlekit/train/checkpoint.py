"""Training checkpoints: everything needed to resume a run exactly where it stopped, and a record of
which run wrote them.

A checkpoint (``last.pt``, ``best.pt``) is a ``torch.save`` of a dict holding only tensors, numbers,
strings, lists, tuples and dicts, read back with ``torch.load(..., weights_only=True)``: a file that
holds any other Python object is refused, never unpickled. Its ``"run"`` entry (see
:meth:`cradlekit.train.Trainer.run_record`) says what run wrote it; resuming compares it with the
current run (:func:`run_differences`) and refuses a different one.

``last.pt`` (format ``cradlekit.checkpoint/2``) holds:

``format``
    ``"cradlekit.checkpoint/2"``; a file without it (older cradlekit) is not resumed.
``run``
    The run record: ``module_class`` (class name), ``parameters`` (name -> shape), ``training``
    (``batch_size``, ``weight_decay``, ``grad_clip``, ``seed``, ``val_seed``), ``data`` (a fingerprint
    of the training data) and whatever the caller adds (``PerturbationModel``: ``model`` =
    ``{"name", "options"}``, ``genes``).
``changes``
    Settings changed on resume: ``[{"epoch", "setting", "from", "to"}, ...]``.
``module``, ``optimizer``, ``best_state``
    State dicts (tensors); ``best_state`` may be ``None``.
``epoch``, ``step``, ``best_loss``, ``best_epoch``, ``bad_epochs``, ``history``, ``config``
    Loop counters, per-epoch records and the :class:`~cradlekit.train.TrainConfig` as a dict.
``rng``, ``shuffle_rng``
    Every random-number-generator state as tensors and numbers (:func:`~cradlekit.train.get_rng_state`).

``best.pt`` holds ``format``, ``run``, ``module`` (the best weights), ``epoch`` and ``loss``.
Both are written only at epoch boundaries, atomically (:func:`save_checkpoint`).

Every file written by :func:`save_checkpoint` (checkpoints and saved models) also holds
``content_checksum``, a digest of the rest of its content (:mod:`cradlekit.train.state_digest`);
:func:`load_checkpoint` recomputes it from what it read and refuses a file whose bytes changed since it
was written (``torch.load`` itself does not notice flipped bytes inside a tensor). Files written before
checksums existed load with a note in the log.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_path
from .._logging import logger
from ..errors import CheckpointError, CheckpointMismatchError
from .state_digest import CHECKSUM_KEY, state_digest

__all__ = [
    "save_checkpoint", "load_checkpoint", "run_differences", "check_same_run", "plain", "require_keys",
    "nonfinite_hint", "LAST", "BEST", "FORMAT", "RESUME_KEYS",
]

LAST = "last.pt"
BEST = "best.pt"
FORMAT = "cradlekit.checkpoint/2"
#: Entries of ``last.pt`` that resuming reads.
RESUME_KEYS = ("module", "optimizer", "epoch", "step", "best_loss", "best_epoch", "best_state", "bad_epochs",
               "history", "rng", "shuffle_rng")
#: Entries of a run record added after files were already written: absent from an older checkpoint's
#: record, they are not a difference (``data.content``: a digest of the counts themselves).
ADDED_LATER = ("data.content",)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the duration of the block, then deliver it.

    ``torch.save`` writes through a C++ zip writer that calls back into Python's ``file.write``; a
    ``KeyboardInterrupt`` raised inside that callback comes out as an opaque ``RuntimeError``
    ("unexpected pos ...") instead of an interruption. Deferring the signal lets the write finish and
    the user's Ctrl-C arrive as a ``KeyboardInterrupt`` right after it. Outside the main thread (where
    Python delivers no signals) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # no signals here, or a handler installed outside Python that could not be put back
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` atomically (temporary file, flushed to disk, then renamed), so an interruption or
    a kill at any moment leaves either the previous file or the new one, never half a file.

    A Ctrl-C during the write is held back until the new file is in place, then raised as
    ``KeyboardInterrupt``. The file also records a digest of ``state``'s content
    (``content_checksum``), checked by :func:`load_checkpoint`.

    Raises
    ------
    cradlekit.errors.FileWriteError
        The disk is full (or a size or quota limit was reached); the message names the file, and the
        previous file at ``path`` is kept.
    """
    stored = {**state, CHECKSUM_KEY: state_digest({k: v for k, v in state.items() if k != CHECKSUM_KEY})}
    with _sigint_deferred(), atomic_path(path) as tmp:
        buffer = io.BytesIO()  # serialised in memory first: a full disk then fails in Python's write, with
        torch.save(stored, buffer)  # its errno, not as torch's "unexpected pos" from inside the zip writer
        with open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename makes it the checkpoint
    return Path(path)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    what: str = "checkpoint",
    remedy: str | None = None,
) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint` with ``weights_only=True``.

    Parameters
    ----------
    path
        The file.
    map_location
        Device for the tensors.
    what, remedy
        Words for the error message: what the file is, and what the user can do instead.

    Raises
    ------
    cradlekit.errors.CheckpointError
        If the file is damaged or truncated, its content does not match the checksum recorded when it
        was written (bytes changed on disk), or it holds Python objects other than tensors and plain
        containers (such a file could run code when unpickled, so it is refused). The message names the
        file and what to do.

    Returns
    -------
    dict
        The saved state (without its ``content_checksum`` entry).
    """
    path = Path(path)
    remedy = remedy or (
        f"resume from the best weights in {path.with_name(BEST)} if it loads, or start a fresh run "
        "(a new checkpoint_dir, or resume=False, which overwrites this folder's checkpoints)"
    )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Weights only" in str(err):
            raise CheckpointError(
                f"{what} {path} holds Python objects that cradlekit will not unpickle (loading them could run "
                f"code): it was not written by this version of cradlekit, or it was altered. Do not load it "
                f"with torch.load(weights_only=False) unless you wrote it yourself; {remedy}."
            ) from None
        raise CheckpointError(f"{what} {path} is damaged or not a cradlekit file ({_short(err)}); {remedy}.") from None
    except Exception as err:  # noqa: BLE001 - truncated zips raise RuntimeError, EOFError, ...
        raise CheckpointError(
            f"{what} {path} is damaged or truncated ({_short(err)}); {remedy}."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {path} does not hold a cradlekit state (got {type(state).__name__}); {remedy}.")
    recorded = state.pop(CHECKSUM_KEY, None)
    if recorded is None:
        logger.info("%s %s records no content checksum (written by an older cradlekit): not checked", what, path)
    elif recorded != state_digest(state):
        raise CheckpointError(
            f"{what} {path} is damaged: its content does not match the checksum recorded when it was written "
            f"(bytes changed on disk since: a failing disk, a bad copy, or an edit); {remedy}."
        )
    return state


def require_keys(
    state: Mapping[str, Any], keys: Sequence[str], path: str | os.PathLike, *, what: str = "checkpoint"
) -> None:
    """Raise :class:`~cradlekit.errors.CheckpointError` naming ``path`` and the absent entries of ``state``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(
            f"{what} {path} lacks {', '.join(map(repr, missing))} (altered, or not written by cradlekit's trainer), so "
            f"it cannot be resumed; start a fresh run (a new checkpoint_dir, or resume=False, which overwrites "
            f"this folder's checkpoints)."
        )


def nonfinite_hint(checkpoint_dir: str | os.PathLike | None, saved_epoch: int, best_epoch: int) -> str:
    """The end of the message of a non-finite loss: what this run left on disk, and how to go on.

    ``saved_epoch``: the epoch of the ``last.pt`` this run wrote or resumed from (-1: none);
    ``best_epoch``: the epoch of this run's best weights (-1: none).
    """
    if checkpoint_dir is None:
        return " No checkpoint_dir was given, so nothing was saved; train again with a lower learning rate."
    folder = Path(checkpoint_dir)
    if saved_epoch < 0:
        return (f" No checkpoint was written to {folder} (the loss was non-finite before the first epoch ended); "
                "train again with a lower learning rate.")
    best = f" and the best weights (epoch {best_epoch}) in {folder / BEST}" if best_epoch > 0 else ""
    return (f" The last completed epoch ({saved_epoch}) is in {folder / LAST}{best}: train again with a lower "
            "learning rate and resume=True to continue from it.")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (tuples become lists, NumPy scalars numbers), for comparable records."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _describe(value: Any) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} items"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def run_differences(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Fields in which two run records differ, each as ``"name: saved -> current"``."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if key not in saved or key not in current:
            where = "checkpoint" if key in saved else "current run"
            out.append(f"{name}: only in the {where}")
            continue
        a, b = saved[key], current[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(run_differences(a, b, prefix=f"{name}."))
        elif a != b:
            detail = f"{_describe(a)} -> {_describe(b)}"
            if isinstance(a, list) and isinstance(b, list):
                first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
                at = lambda v: repr(v[first]) if first < len(v) else "(end)"  # noqa: E731, B023 - used at once
                detail += f", first difference at position {first}: {at(a)} -> {at(b)}"
            out.append(f"{name}: {detail}")
    return out


def check_same_run(saved: Mapping[str, Any] | None, current: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Raise :class:`~cradlekit.errors.CheckpointMismatchError` unless the checkpoint at ``path`` was
    written by the run described by ``current`` (its ``"run"`` record is ``saved``)."""
    ways = (
        "Either train in a fresh checkpoint_dir, or pass resume=False to start a new run here "
        "(it overwrites this folder's checkpoints)."
    )
    if saved is None:
        raise CheckpointMismatchError(
            f"{path} does not say which run wrote it (written by an older cradlekit?), so it cannot be resumed safely. "
            f"{ways}"
        )
    diffs = run_differences(plain(saved), plain(current))
    later = [d for d in diffs if d.split(":")[0] in ADDED_LATER and d.endswith("only in the current run")]
    if later:
        logger.info("%s: written before %s were recorded; resumed without comparing them", path, ", ".join(ADDED_LATER))
        diffs = [d for d in diffs if d not in later]
    if diffs:
        shown = "; ".join(diffs[:12]) + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else "")
        raise CheckpointMismatchError(
            f"{path} was written by a different run (checkpoint -> now): {shown}. Resuming would mix the two runs. "
            f"{ways}"
        )
