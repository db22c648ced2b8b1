"""Checks of :meth:`~cradlekit.model.PerturbationModel.train`'s arguments, before anything runs.

A wrong type or value (``lr='1e-3'``, ``batch_size=0``, ``checkpoint_every=0``, ``lr=0``) would
otherwise fail deep in the loop with a message that does not name the argument
(``'<=' not supported``, ``range() arg 3 must not be zero``, ``ZeroDivisionError``), or be accepted
and train nothing. Each check raises ``TypeError`` (wrong type) or ``ValueError`` (wrong value)
naming the argument and what it must be.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["check_train_args"]


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, str) else f"the string {value!r}"


def _integer(name: str, value: Any, *, minimum: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        none = " or None" if optional else ""
        raise TypeError(f"train(): {name} must be an integer{none}, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"train(): {name} must be at least {minimum}, got {value}")


def _real(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"train(): {name} must be a number, got {_type_name(value)}")
    if not math.isfinite(float(value)):
        raise ValueError(f"train(): {name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"train(): {name} must be greater than 0, got {value}")
    if not positive and value < 0:
        raise ValueError(f"train(): {name} must be 0 or more, got {value}")


def _flag(name: str, value: Any) -> None:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return
    raise TypeError(f"train(): {name} must be True or False, got {_type_name(value)}")


def check_train_args(
    *,
    max_epochs: Any,
    max_steps: Any,
    lr: Any,
    weight_decay: Any,
    batch_size: Any,
    patience: Any,
    grad_clip: Any,
    seed: Any,
    accelerator: Any,
    checkpoint_dir: Any,
    checkpoint_every: Any,
    resume: Any,
    callbacks: Any,
    progress_bar: Any,
) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad argument of ``train()``.

    Raises
    ------
    TypeError
        An argument of the wrong type (``lr='1e-3'``, ``batch_size=32.0``, ``resume='yes'``).
    ValueError
        A value out of range: ``max_epochs``, ``max_steps``, ``batch_size``, ``patience``,
        ``checkpoint_every`` below 1; ``lr`` or ``grad_clip`` not above 0; ``weight_decay`` below 0;
        a non-finite number.
    """
    _integer("max_epochs", max_epochs, minimum=1)
    _integer("max_steps", max_steps, minimum=1, optional=True)
    _real("lr", lr, positive=True)
    _real("weight_decay", weight_decay, positive=False)
    _integer("batch_size", batch_size, minimum=1)
    _integer("patience", patience, minimum=1, optional=True)
    _real("grad_clip", grad_clip, positive=True)
    _integer("seed", seed, minimum=None)
    if not isinstance(accelerator, (str, torch.device)):
        raise TypeError(f"train(): accelerator must be a string ('auto', 'cpu', 'cuda', 'cuda:1') or a torch.device, "
                        f"got {_type_name(accelerator)}")
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(f"train(): checkpoint_dir must be a folder path or None, got {_type_name(checkpoint_dir)}")
    if isinstance(checkpoint_dir, str) and not checkpoint_dir.strip():
        raise ValueError("train(): checkpoint_dir is an empty string; pass a folder path, or None for no checkpoints")
    _integer("checkpoint_every", checkpoint_every, minimum=1)
    _flag("resume", resume)
    _flag("progress_bar", progress_bar)
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Sequence):
        raise TypeError(f"train(): callbacks must be a list of callbacks, got {_type_name(callbacks)}")
    for i, cb in enumerate(callbacks):
        if not (callable(cb) or any(hasattr(cb, m) for m in ("on_epoch_end", "on_train_start", "on_train_end"))):
            raise TypeError(f"train(): callbacks[{i}] is neither a function nor an object with on_epoch_end/"
                            f"on_train_start/on_train_end, got {_type_name(cb)}")
