"""Short digests of training data, recorded in checkpoints so a resume can tell whether the data changed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["digest", "data_fingerprint"]


def _update(h: Any, obj: Any) -> None:
    if obj is None:
        h.update(b"<none>")
    elif isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided:  # sparse: hash its dense parts
            obj = obj.coalesce() if obj.layout == torch.sparse_coo else obj
            parts = [obj.indices(), obj.values()] if obj.layout == torch.sparse_coo else [
                obj.crow_indices(), obj.col_indices(), obj.values()]
            h.update(f"{obj.layout}{tuple(obj.shape)}".encode())
            for p in parts:
                _update(h, p)
            return
        _update(h, obj.detach().cpu().contiguous().numpy())
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            _update(h, [str(v) for v in obj.tolist()])
            return
        arr = np.ascontiguousarray(obj)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(memoryview(arr).cast("B"))
    elif hasattr(obj, "indptr") and hasattr(obj, "indices") and hasattr(obj, "data"):  # scipy CSR/CSC
        h.update(f"{type(obj).__name__}{obj.shape}".encode())
        for p in (obj.indptr, obj.indices, obj.data):
            _update(h, np.asarray(p))
    elif isinstance(obj, Mapping):
        for k in sorted(obj):
            h.update(str(k).encode() + b"=")
            _update(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}]".encode())
        for v in obj:
            _update(h, v)
    else:
        h.update(repr(obj).encode() + b";")


def digest(*objects: Any) -> str:
    """A 16-byte BLAKE2 hex digest of tensors, arrays, sparse matrices, strings and containers of them."""
    h = hashlib.blake2b(digest_size=16)
    for obj in objects:
        _update(h, obj)
    return h.hexdigest()


def data_fingerprint(train: Any, val: Any | None) -> dict[str, Any]:
    """Rows and digest of the training and validation :class:`~cradlekit.train.DeviceData`."""
    return {
        "n_train": len(train), "n_val": 0 if val is None else len(val),
        "train": digest(train.tensors), "val": None if val is None else digest(val.tensors),
    }
