"""Device-resident data: every tensor lives on the training device; batches are index gathers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

__all__ = ["DeviceData"]


class DeviceData:
    """A dict of tensors with a shared first (cell) dimension, kept on one device.

    Batches are produced by indexing with a permutation that is built once per epoch, so
    there is no per-batch host-to-device copy and no Python loop over cells.

    Parameters
    ----------
    tensors
        Name → tensor, all with the same length along dimension 0.
    device
        Where to keep them (they are moved once, here).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, device: torch.device | str | None = None):
        lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"tensors have different numbers of rows: {lengths}")
        self.tensors = {k: (v.to(device) if device is not None else v) for k, v in tensors.items()}
        self.n = next(iter(lengths.values()))

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return next(iter(self.tensors.values())).device

    def __len__(self) -> int:
        return self.n

    def take(self, index: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """The rows ``index`` of every tensor."""
        return {k: v[index] for k, v in self.tensors.items()}

    def batches(
        self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Yield batches; with ``shuffle`` the order comes from ``generator`` (a CPU generator)."""
        if shuffle:
            order = torch.randperm(self.n, generator=generator).to(self.device, non_blocking=True)
            for start in range(0, self.n, batch_size):
                yield self.take(order[start : start + batch_size])
        else:
            for start in range(0, self.n, batch_size):
                yield self.take(slice(start, start + batch_size))
