"""Choosing the training device: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch

from .._logging import logger

__all__ = ["resolve_device"]


def resolve_device(accelerator: str | torch.device = "auto") -> torch.device:
    """Return the device to train on.

    Parameters
    ----------
    accelerator
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
        :class:`torch.device`.

    Raises
    ------
    ValueError
        If CUDA is requested but not available.
    """
    if isinstance(accelerator, torch.device):
        device = accelerator
    elif accelerator == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(accelerator)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"accelerator {accelerator!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if device.type == "cuda":
        logger.info("using %s (%s)", device, torch.cuda.get_device_name(device))
    else:
        logger.info("using the CPU (%d threads)", torch.get_num_threads())
    return device
