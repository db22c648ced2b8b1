"""Seeds and random-number-generator state, so runs and resumed runs are reproducible."""

from __future__ import annotations

import random

import numpy as np
import pyro
import torch

__all__ = ["seed_everything", "get_rng_state", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch (CPU and CUDA) and Pyro."""
    pyro.set_rng_seed(seed)  # seeds random, numpy and torch
    torch.cuda.manual_seed_all(seed)


def get_rng_state() -> dict:
    """Capture every global RNG state (Python, NumPy, torch CPU, CUDA when present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
