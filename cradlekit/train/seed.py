"""Seeds and random-number-generator state, so runs and resumed runs are reproducible.

:func:`get_rng_state` returns only tensors, numbers, strings, tuples and dicts, so a checkpoint
that holds it loads with ``torch.load(..., weights_only=True)`` (no pickled NumPy objects).
"""

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
    """Capture every global RNG state (Python, NumPy, torch CPU, CUDA when present) in plain types."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"].cpu().numpy(), dtype=np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
