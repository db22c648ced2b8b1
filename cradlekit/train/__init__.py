"""Training: device choice, device-resident data, sparse batch sources, the loop with early stopping, checkpoints
and resume."""

from .callbacks import Callback, FunctionCallback
from .cell_batches import CellBatches
from .checkpoint import load_checkpoint, save_checkpoint
from .device import resolve_device
from .device_data import DeviceData
from .seed import get_rng_state, seed_everything, set_rng_state
from .trainer import TrainConfig, Trainer

__all__ = [
    "Callback",
    "CellBatches",
    "DeviceData",
    "FunctionCallback",
    "TrainConfig",
    "Trainer",
    "get_rng_state",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
