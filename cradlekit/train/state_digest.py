"""A digest of a saved state's content (tensors' bytes, numbers, strings, containers), recorded in
every checkpoint and saved model so that bytes changed on disk are found when the file is loaded.

``torch.load`` does not check the CRC of the zip records it reads: flipped bytes inside a tensor load
silently as different weights. :func:`state_digest` of what was saved is written into the file
(:data:`CHECKSUM_KEY`) and compared with the digest of what is read back
(:func:`cradlekit.train.checkpoint.load_checkpoint`).

Cost: one BLAKE2b pass over the state's bytes when writing and one when reading (about 0.5-1 GB/s on
one core; a checkpoint of the paper-sized CRADLE-VAE is tens of MB, i.e. tens of milliseconds; see
``benchmarks/results/fault_injection.md``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["state_digest", "CHECKSUM_KEY"]

#: The entry of a saved dict holding ``"blake2b:<hex>"`` of the rest of the dict.
CHECKSUM_KEY = "content_checksum"


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    elif isinstance(obj, Mapping):
        h.update(f"{{{len(obj)}:".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            h.update(f"{type(key).__name__}:{key!r}=".encode())
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}:".encode())
        for value in obj:
            _feed(h, value)
        h.update(b"]")
    else:  # str, int, float (repr round-trips), bool, None, torch.Size/dtype/device
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def state_digest(state: Any) -> str:
    """``"blake2b:<40 hex digits>"`` of ``state``'s content: tensors by dtype, shape and bytes (on any
    device, dense or sparse), mappings by sorted keys, sequences in order, other values by type and repr."""
    h = hashlib.blake2b(digest_size=20)
    _feed(h, state)
    return f"blake2b:{h.hexdigest()}"
