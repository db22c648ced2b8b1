"""Short digests of training data, recorded in checkpoints so a resume can tell whether the data changed.

Every digest here is of content (bytes of tensors and arrays, every count of a matrix), not of
summaries: a change that keeps every total (a 2x2 swap of counts) still changes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._deprecated import module_getattr

__all__ = ["digest", "batch_source_fingerprint", "CountsDigest", "counts_digest"]


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


class CountsDigest:
    """A digest of count rows fed in chunks, independent of their storage and of the chunking.

    Each block of rows is put in canonical CSR form (sorted column indices, duplicates summed, no
    explicit zeros, values as float64: dense or sparse, int or float, give one digest); row lengths,
    column indices and values go to three streams, so where the chunks end does not matter.
    """

    def __init__(self, n_cols: int):
        self.n_cols = int(n_cols)
        self.n_rows = 0
        self._streams = [hashlib.blake2b(digest_size=16) for _ in range(3)]

    def update(self, block: Any) -> None:
        """Add the next rows (numpy array or scipy sparse matrix; not modified)."""
        csr = sp.csr_matrix(block).astype(np.float64)  # astype copies: sorting below never touches the data
        csr.sum_duplicates()  # sorted column indices, one entry per (row, column)
        csr.eliminate_zeros()
        parts = (np.diff(csr.indptr).astype(np.int64), csr.indices.astype(np.int64), csr.data)
        for h, part in zip(self._streams, parts, strict=True):
            h.update(memoryview(np.ascontiguousarray(part)).cast("B"))
        self.n_rows += csr.shape[0]

    def hexdigest(self) -> str:
        """The digest of every row added so far (hex), with the matrix's shape."""
        h = hashlib.blake2b(f"csr{self.n_rows}x{self.n_cols}:".encode(), digest_size=16)
        for part in self._streams:
            h.update(part.digest())
        return h.hexdigest()


def counts_digest(X: Any, rows: np.ndarray | None = None) -> str:
    """:class:`CountsDigest` of ``X[rows]`` (all rows by default), read in row chunks (in memory or backed)."""
    from .._rows import row_chunks

    out = CountsDigest(X.shape[1])
    for _, block in row_chunks(X, rows):
        out.update(block)
    return out.hexdigest()


def _content(data: Any) -> Any:
    """What identifies a data set's content: :class:`DeviceData`'s tensors, or :class:`CellBatches`'
    counts (:func:`counts_digest` of its rows), tables and columns."""
    if hasattr(data, "tensors"):
        return data.tensors
    if not all(hasattr(data, name) for name in ("rows", "X", "columns", "tables")):
        raise TypeError(
            f"cannot fingerprint training data of type {type(data).__name__}: expected DeviceData or CellBatches "
            "(or pass run_info={'data': ...} to the Trainer)"
        )
    return {"rows": data.rows, "X": counts_digest(data.X, data.rows), "columns": data.columns,
            "tables": {k: [table, index] for k, (table, index) in data.tables.items()}}


def batch_source_fingerprint(train: Any, val: Any | None) -> dict[str, Any]:
    """Rows and digest of the training and validation batch sources (:class:`~cradlekit.train.DeviceData` or
    :class:`~cradlekit.train.CellBatches`), as the :class:`~cradlekit.train.Trainer` records them.

    :class:`~cradlekit.model.PerturbationModel` records the fingerprint of its AnnData instead
    (``cradlekit.model._fingerprint.adata_fingerprint``: cells, split, labels and counts).
    """
    return {
        "n_train": len(train), "n_val": 0 if val is None else len(val),
        "train": digest(_content(train)), "val": None if val is None else digest(_content(val)),
    }


#: Old name: ``data_fingerprint`` (now :func:`batch_source_fingerprint`).
__getattr__ = module_getattr(__name__, {"data_fingerprint": "batch_source_fingerprint"}, globals())
