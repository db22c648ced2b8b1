"""Short digests of training data, recorded in checkpoints so a resume can tell whether the data changed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._rows import row_chunks
from .cell_batches import CellBatches

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


#: Rows per chunk when a :class:`CellBatches` count matrix is digested (fixed: the digest must not
#: depend on how the matrix is stored).
_DIGEST_CHUNK_ROWS = 4096


def _cell_batches_digest(data: CellBatches) -> str:
    """Digest of the cells a :class:`CellBatches` yields: its rows of ``X`` (read in chunks, as CSR
    float32 without explicit zeros, so in-memory, dense and on-disk copies of the same counts agree),
    its tables with their per-cell index, and its columns."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(data).__name__}:{data.x_key}:{data.n}x{data.n_genes}".encode())
    for _, block in row_chunks(data.X, data.rows, chunk_rows=_DIGEST_CHUNK_ROWS):
        csr = sp.csr_matrix(block, dtype=np.float32)
        csr.eliminate_zeros()
        csr.sort_indices()
        for part in (np.diff(csr.indptr).astype(np.int64), csr.indices.astype(np.int64), csr.data):
            _update(h, part)
    _update(h, {name: [table, index] for name, (table, index) in data.tables.items()})
    _update(h, data.columns)
    return h.hexdigest()


def _data_digest(data: Any) -> str:
    """Digest of a :class:`~cradlekit.train.DeviceData` (its tensors) or a :class:`CellBatches`."""
    if isinstance(data, CellBatches):
        return _cell_batches_digest(data)
    tensors = getattr(data, "tensors", None)
    if tensors is None:
        raise TypeError(
            f"cannot fingerprint training data of type {type(data).__name__}: expected DeviceData or CellBatches "
            "(or pass run_info={'data': ...} to the Trainer)"
        )
    return digest(tensors)


def data_fingerprint(train: Any, val: Any | None) -> dict[str, Any]:
    """Rows and digest of the training and validation data (:class:`~cradlekit.train.DeviceData` or
    :class:`~cradlekit.train.CellBatches`)."""
    return {
        "n_train": len(train), "n_val": 0 if val is None else len(val),
        "train": _data_digest(train), "val": None if val is None else _data_digest(val),
    }
