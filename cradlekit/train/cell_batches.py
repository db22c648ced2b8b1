"""Minibatches gathered from sparse host data: the cells stay CSR (or on disk), each batch is dense.

:class:`CellBatches` is the batch source the :class:`~cradlekit.train.Trainer` iterates over (the
same ``batches`` / ``device`` / ``len`` interface as :class:`~cradlekit.train.DeviceData`). It keeps

* the count matrix as it is: an in-memory CSR matrix (or array), or anndata's on-disk sparse dataset
  of a backed h5ad, plus the rows of this split;
* *tables* gathered through an index per cell: a dense torch table (e.g. one dosage row per
  perturbation label) or a sparse one (e.g. one counterfactual reference per group);
* small per-cell *columns* (QC label, reference mask).

Each batch is gathered and densified on the host (into pinned memory when the device is CUDA) and
copied to the device; with ``prefetch`` a background thread prepares batch ``i + 1`` and issues its
copy on a separate CUDA stream while the step of batch ``i`` runs. Device memory is
O(batch x genes), independent of the number of cells.

Shuffling: in memory, one permutation of all cells per epoch (the same draw as ``DeviceData``, so
both give the same batches). On disk, the cells are cut into chunks of consecutive rows
(``chunk_cells``), the chunk order is shuffled, ``buffer_chunks`` chunks are read at a time
(sequential reads) and shuffled together.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._rows import csr_view, densify_rows, gather_rows, is_in_memory, stored_values

__all__ = ["CellBatches"]

_DONE = object()


class CellBatches:
    """Batches of cells gathered from sparse host data and densified per batch.

    Parameters
    ----------
    X
        Cells x genes counts: scipy sparse (CSR preferred), numpy array, or a backed AnnData's ``X``.
    rows
        Rows of ``X`` that belong to this data set (sorted); position ``p`` of a batch is cell ``rows[p]``.
    tables
        ``name -> (table, index)``: the batch holds ``table[index[p]]`` (densified when ``table`` is
        sparse; ``index == -1`` gives a zero row).
    columns
        ``name -> tensor`` with one entry per position.
    device
        Training device.
    x_key
        Batch key of the count rows.
    chunk_cells, buffer_chunks
        On-disk shuffling: cells per chunk (rounded to a multiple of the batch size) and chunks read
        and shuffled together (``None``: as many as fit in ``buffer_mb`` of CSR, at least 2).
    buffer_mb
        Memory budget of the shuffle buffer of an on-disk matrix.
    prefetch
        Prepare the next batch in a background thread (default: on CUDA only).
    """

    def __init__(
        self,
        X,
        rows: np.ndarray,
        *,
        tables: Mapping[str, tuple[Any, np.ndarray]] | None = None,
        columns: Mapping[str, torch.Tensor] | None = None,
        device: torch.device | str | None = None,
        x_key: str = "X",
        chunk_cells: int = 8192,
        buffer_chunks: int | None = None,
        buffer_mb: float = 512.0,
        prefetch: bool | None = None,
    ):
        self.X = X = csr_view(X)
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.size and np.any(np.diff(self.rows) < 0):
            raise ValueError("rows must be sorted")
        self.n = int(self.rows.size)
        self.n_genes = int(X.shape[1])
        self.x_key = x_key
        self.tables = {}
        for name, (table, index) in (tables or {}).items():
            index = np.asarray(index, dtype=np.int64)
            if index.shape != (self.n,):
                raise ValueError(f"table {name!r}: index has shape {index.shape}, expected ({self.n},)")
            if sp.issparse(table):
                table = csr_view(sp.csr_matrix(table, dtype=np.float32))  # no copy when already CSR float32
            else:
                table = torch.as_tensor(table)
            if index.size and index.max() >= table.shape[0]:
                raise ValueError(f"table {name!r} has {table.shape[0]} rows, index refers to row {index.max()}")
            self.tables[name] = (table, index)
        self.columns = {k: torch.as_tensor(v) for k, v in (columns or {}).items()}
        for name, col in self.columns.items():
            if col.shape[0] != self.n:
                raise ValueError(f"column {name!r} has {col.shape[0]} rows, expected {self.n}")
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self.in_memory = is_in_memory(X)
        self.chunk_cells = int(chunk_cells)
        if buffer_chunks is None:
            bytes_per_cell = 8.0 * self.n_genes
            nnz = stored_values(X)
            if nnz is not None:
                bytes_per_cell = 8.0 * nnz / max(X.shape[0], 1)  # float32 value + int32 index
            buffer_chunks = max(2, int(buffer_mb * 2**20 // (bytes_per_cell * self.chunk_cells)))
        self.buffer_chunks = int(buffer_chunks)
        self.prefetch = (self._device.type == "cuda") if prefetch is None else bool(prefetch)

    # ------------------------------------------------------------------ interface
    @property
    def device(self) -> torch.device:
        """The device batches are put on."""
        return self._device

    def __len__(self) -> int:
        return self.n

    def to(self, device: torch.device | str) -> CellBatches:
        """The same data for another device (host data shared, nothing copied)."""
        out = object.__new__(CellBatches)
        out.__dict__.update(self.__dict__)
        out._device = torch.device(device)
        out.prefetch = out._device.type == "cuda"
        return out

    def take(self, positions) -> dict[str, torch.Tensor]:
        """The cells at ``positions`` (any order) as a batch on the device."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if self.in_memory:
            block, local = self.X, self.rows[pos]
        else:
            order = np.argsort(pos, kind="stable")
            block = gather_rows(self.X, self.rows[pos[order]])
            local = np.empty_like(order)
            local[order] = np.arange(order.size)
        return self._to_device(self._host_batch(pos, block, local))

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches on the device; with ``shuffle`` the order comes from ``generator`` (CPU).

        Every random draw of the epoch is made before the first batch, in the calling thread.
        """
        plan = self._plan(int(batch_size), shuffle, generator)
        host = (self._host_batch(pos, block, local) for pos, block, local in self._blocks(plan))
        if not self.prefetch:
            for batch in host:
                yield self._to_device(batch)
            return
        yield from self._prefetched(host)

    # ------------------------------------------------------------------ plans
    def _plan(self, batch_size: int, shuffle: bool, generator) -> list[tuple[Any, list[np.ndarray]]]:
        """``[(buffer, [positions of each batch])]``; ``buffer`` is ``None`` in memory, else chunk bounds."""
        if self.in_memory:
            if shuffle:
                order = torch.randperm(self.n, generator=generator).numpy()
            else:
                order = np.arange(self.n)
            return [(None, [order[s : s + batch_size] for s in range(0, self.n, batch_size)])]
        chunk = max(1, self.chunk_cells // batch_size) * batch_size
        starts = np.arange(0, self.n, chunk)
        chunk_order = torch.randperm(starts.size, generator=generator).numpy() if shuffle else np.arange(starts.size)
        plan = []
        for b in range(0, starts.size, self.buffer_chunks):
            bounds = [
                (int(starts[c]), int(min(starts[c] + chunk, self.n))) for c in chunk_order[b : b + self.buffer_chunks]
            ]
            positions = np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
            if shuffle:
                positions = positions[torch.randperm(positions.size, generator=generator).numpy()]
            plan.append((bounds, [positions[s : s + batch_size] for s in range(0, positions.size, batch_size)]))
        return plan

    def _blocks(self, plan) -> Iterator[tuple[np.ndarray, Any, np.ndarray]]:
        """``(positions, block, rows of block)`` per batch; on disk, a buffer is read once per group of chunks."""
        for bounds, batches in plan:
            if bounds is None:
                for pos in batches:
                    yield pos, self.X, self.rows[pos]
                continue
            parts = [gather_rows(self.X, self.rows[lo:hi]) for lo, hi in bounds]
            block = csr_view(sp.vstack(parts, format="csr") if len(parts) > 1 else sp.csr_matrix(parts[0]))
            local_of = np.empty(self.n, dtype=np.int64)  # position -> row of the buffer
            offset = 0
            for lo, hi in bounds:
                local_of[lo:hi] = np.arange(offset, offset + hi - lo)
                offset += hi - lo
            for pos in batches:
                yield pos, block, local_of[pos]
            del parts, block

    # ------------------------------------------------------------------ batches
    def _empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, dtype=torch.float32, pin_memory=self._device.type == "cuda")

    def _host_batch(self, pos: np.ndarray, block, local: np.ndarray) -> dict[str, torch.Tensor]:
        x = self._empty((pos.size, self.n_genes))
        densify_rows(block, local, x.numpy())
        out = {self.x_key: x}
        index = torch.from_numpy(pos)
        for name, (table, where) in self.tables.items():
            idx = where[pos]
            missing = idx < 0
            if isinstance(table, torch.Tensor):
                value = table[torch.from_numpy(np.maximum(idx, 0))]
                if missing.any():
                    value[torch.from_numpy(missing)] = 0
            else:
                value = self._empty((pos.size, table.shape[1]))
                densify_rows(table, np.maximum(idx, 0), value.numpy())
                if missing.any():
                    value.numpy()[missing] = 0.0
            out[name] = value
        for name, col in self.columns.items():
            out[name] = col[index]
        if self._device.type == "cuda":
            out = {k: (v if v.is_pinned() else v.pin_memory()) for k, v in out.items()}
        return out

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._device.type == "cpu":
            return batch
        return {k: v.to(self._device, non_blocking=True) for k, v in batch.items()}

    def _prefetched(self, host: Iterator[dict[str, torch.Tensor]], depth: int = 2) -> Iterator[dict[str, torch.Tensor]]:
        """Batches prepared by a background thread; on CUDA their copies run on a side stream."""
        cuda = self._device.type == "cuda"
        stream = torch.cuda.Stream(device=self._device) if cuda else None
        q: queue.Queue = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def produce() -> None:
            try:
                for batch in host:
                    if stop.is_set():
                        return
                    if cuda:
                        with torch.cuda.stream(stream):
                            batch = self._to_device(batch)
                            event = torch.cuda.Event()
                            event.record(stream)
                    else:
                        event = None
                    q.put((batch, event))
                q.put((_DONE, None))
            except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
                q.put((err, None))

        worker = threading.Thread(target=produce, name="cradlekit-batches", daemon=True)
        worker.start()
        try:
            while True:
                batch, event = q.get()
                if batch is _DONE:
                    break
                if isinstance(batch, BaseException):
                    raise batch
                if event is not None:
                    current = torch.cuda.current_stream(self._device)
                    current.wait_event(event)
                    for v in batch.values():
                        v.record_stream(current)
                yield batch
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()
