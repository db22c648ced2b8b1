"""Saving and loading a model folder: module state (``model.pt``) and metadata (``registry.json``).

The folder holds no pickled Python objects: ``model.pt`` is a ``torch.save`` of a dict of
tensors (read back with ``weights_only=True``), ``registry.json`` the registry, the module's
constructor options and training facts, and ``history.json`` the per-epoch losses.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .._atomic import write_text_atomic
from ..errors import CheckpointError
from ..train import load_checkpoint, save_checkpoint

__all__ = ["write_model_dir", "read_model_dir", "MODEL_FILE", "REGISTRY_FILE", "HISTORY_FILE", "FORMAT"]

MODEL_FILE = "model.pt"
REGISTRY_FILE = "registry.json"
HISTORY_FILE = "history.json"
FORMAT = "cradlekit.PerturbationModel/1"
#: Entries of ``registry.json`` (and of its ``registry``) that loading a model reads.
META_KEYS = ("registry", "module_options")
REGISTRY_KEYS = ("model", "genes", "targets", "conditions", "n_obs_per_perturbation", "n_train", "control_label")


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays become numbers and lists; NaN stays NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def write_model_dir(
    path: str | os.PathLike,
    *,
    state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    history: list[dict[str, Any]],
    overwrite: bool = False,
) -> Path:
    """Write the three files into ``path`` (created if needed).

    Raises
    ------
    FileExistsError
        If ``path`` already holds a saved model and ``overwrite`` is False.
    TypeError
        If the metadata is not JSON-serialisable (e.g. a custom object in the model options).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if (path / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"{path} already holds a saved model; pass overwrite=True to replace it")
    try:
        meta_text = json.dumps({"format": FORMAT, **_jsonable(meta)}, indent=1)
    except TypeError as err:
        raise TypeError(f"model metadata is not JSON-serialisable ({err}); use plain values in model options") from None
    path.mkdir(parents=True, exist_ok=True)
    # each file is written to a temporary name and renamed: an interruption never leaves half a file
    save_checkpoint({k: v.detach().cpu() for k, v in state.items()}, path / MODEL_FILE)
    write_text_atomic(path / REGISTRY_FILE, meta_text)
    write_text_atomic(path / HISTORY_FILE, json.dumps(_jsonable(history)))
    return path


def _read_json(path: Path, remedy: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is damaged or truncated ({type(err).__name__}: {err}); {remedy}") from None


def read_model_dir(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[dict[str, Any]]]:
    """Read a folder written by :func:`write_model_dir`: ``(state, meta, history)`` (state on the CPU).

    Raises
    ------
    FileNotFoundError
        If the folder lacks ``model.pt`` or ``registry.json``.
    ValueError
        If ``registry.json`` is not a cradlekit model record.
    cradlekit.errors.CheckpointError
        If a file is damaged or truncated, ``registry.json`` lacks an entry loading needs, ``model.pt``'s
        content does not match the checksum recorded when it was saved, or ``model.pt`` holds Python
        objects (it is loaded with ``weights_only=True`` and never unpickled); the message names the file.
    """
    path = Path(path)
    for name in (MODEL_FILE, REGISTRY_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name} not found: not a folder written by PerturbationModel.save")
    remedy = ("save the model again from its training session, or retrain it (its checkpoint_dir's best.pt holds "
              "the best weights)")
    meta = _read_json(path / REGISTRY_FILE, remedy)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path / REGISTRY_FILE} has format {found!r}, expected {FORMAT!r}")
    registry = meta.get("registry")
    missing = [k for k in META_KEYS if k not in meta] or (
        [f"registry.{k}" for k in REGISTRY_KEYS if k not in registry]
        if isinstance(registry, dict)
        else ["registry (a mapping)"]
    )
    if missing:
        raise CheckpointError(f"{path / REGISTRY_FILE} lacks {', '.join(missing)} (altered or damaged); {remedy}")
    state = load_checkpoint(path / MODEL_FILE, what="saved model", remedy=remedy)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"saved model {path / MODEL_FILE} does not hold a dict of tensors; {remedy}")
    history_file = path / HISTORY_FILE
    history = _read_json(history_file, remedy) if history_file.is_file() else []
    return state, meta, history
