"""The training loop: Adam, gradient clipping, early stopping, checkpoints and resume."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from .._logging import logger
from ..errors import NonFiniteLossError
from .callbacks import Callback, as_callback
from .checkpoint import (
    BEST,
    FORMAT,
    LAST,
    RESUME_KEYS,
    check_same_run,
    load_checkpoint,
    nonfinite_hint,
    plain,
    require_keys,
    save_checkpoint,
)
from .device_data import DeviceData
from .fingerprint import batch_source_fingerprint
from .seed import get_rng_state, seed_everything, set_rng_state

__all__ = ["TrainConfig", "Trainer", "LossModule", "MUST_MATCH", "MAY_CHANGE", "LR_SCHEDULES"]

#: Training settings a resumed run must share with the checkpoint (they shape the trajectory).
MUST_MATCH = ("batch_size", "weight_decay", "grad_clip", "seed", "val_seed")
#: Settings a resume may change: applied to the restored state (``lr`` to the optimiser) and recorded.
MAY_CHANGE = ("lr", "max_epochs", "max_steps", "patience")
#: Learning-rate schedules: ``None`` keeps ``lr`` constant (the paper); ``"plateau"`` multiplies it by
#: ``lr_factor`` after ``lr_patience`` epochs without a new best validation loss, down to ``lr * min_lr_ratio``.
LR_SCHEDULES = (None, "plateau")
#: Settings of a schedule, recorded with the run (and required to match on resume) when a schedule is on.
SCHEDULE_SETTINGS = ("lr_schedule", "lr_factor", "lr_patience", "min_lr_ratio")


class LossModule(Protocol):
    """What the trainer needs from a model: parameters and a loss on a batch."""

    def parameters(self):
        """The parameters to optimise (``torch.nn.Module.parameters``)."""

    def train(self, mode: bool = True):
        """Switch training mode on or off (``torch.nn.Module.train``)."""

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss to minimise on ``batch`` and its parts to log."""


@dataclass
class TrainConfig:
    """Training settings (defaults: the paper's published settings).

    Attributes
    ----------
    lr, weight_decay
        Adam learning rate and weight decay.
    batch_size
        Cells per step.
    max_epochs
        Upper bound on epochs.
    max_steps
        Optional budget of optimiser steps (stops at the end of the epoch that reaches it).
    patience
        Epochs without a new best validation loss before stopping (``None``: no early stopping).
    grad_clip
        Maximum gradient norm.
    seed
        Seeds parameters' initialisation-independent randomness: shuffling and Monte-Carlo samples.
    checkpoint_dir
        Folder for ``last.pt`` (every ``checkpoint_every`` epochs) and ``best.pt``; ``None``: no files.
    checkpoint_every
        Epochs between periodic checkpoints.
    restore_best
        Load the best validation state into the module when training ends.
    progress_bar
        Show a tqdm bar over epochs.
    val_seed
        Seed of the Monte-Carlo samples used for validation, so validation losses are comparable.
    lr_schedule
        ``None`` (constant ``lr``, the paper's) or ``"plateau"``: multiply the learning rate by
        ``lr_factor`` after ``lr_patience`` epochs without a new best validation loss, never below
        ``lr * min_lr_ratio`` (:class:`torch.optim.lr_scheduler.ReduceLROnPlateau` on the same loss
        that drives early stopping). Keep ``lr_patience`` well below ``patience`` so that a lower
        rate gets its chance before early stopping ends the run.
    lr_factor, lr_patience, min_lr_ratio
        Settings of the ``"plateau"`` schedule.
    """

    lr: float = 3e-4
    weight_decay: float = 1e-6
    batch_size: int = 512
    max_epochs: int = 2000
    max_steps: int | None = None
    patience: int | None = 50
    grad_clip: float = 100.0
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    restore_best: bool = True
    progress_bar: bool = True
    val_seed: int = 12345
    lr_schedule: str | None = None
    lr_factor: float = 0.5
    lr_patience: int = 10
    min_lr_ratio: float = 1.0 / 64


class Trainer:
    """Fit a :class:`LossModule` on device-resident data.

    Parameters
    ----------
    module
        A model with ``loss(batch) -> (loss, parts)`` and torch parameters.
    train_data, val_data
        :class:`DeviceData` on the training device; without validation data the training
        loss drives early stopping and the best checkpoint.
    config
        :class:`TrainConfig`.
    callbacks
        Objects with ``on_train_start/on_epoch_end/on_train_end`` or functions of the epoch record.
    run_info
        JSON-serialisable facts that identify the run beyond the module and settings (e.g. ``model``,
        ``genes``, ``data``); recorded in every checkpoint by :meth:`run_record`. Without a ``data``
        entry the trainer records a digest of ``train_data`` and ``val_data``.

    Notes
    -----
    ``fit(resume=True)`` continues from ``checkpoint_dir/last.pt`` when it exists: parameters,
    optimiser, epoch, best state, history and every random-number-generator state are restored,
    so a resumed run follows the same trajectory as one that was never interrupted. The checkpoint
    must come from the same run (:meth:`run_record`: module class and parameter shapes, the
    :data:`MUST_MATCH` settings, ``run_info``), otherwise :class:`~cradlekit.errors.CheckpointMismatchError`
    names the differing fields. The :data:`MAY_CHANGE` settings may differ: the new values apply (a new
    ``lr`` to the restored optimiser) and each change is recorded in :attr:`changes`.

    Checkpoints are written only at epoch boundaries (every ``checkpoint_every`` epochs, when the best
    loss improves, and when the loop ends at a boundary); an interruption (Ctrl-C, an exception, a
    NaN loss) in the middle of an epoch leaves the last boundary's ``last.pt`` in place.
    """

    def __init__(
        self,
        module: LossModule,
        train_data: DeviceData,
        val_data: DeviceData | None = None,
        *,
        config: TrainConfig | None = None,
        callbacks: Sequence[Callback | Callable[[dict[str, Any]], Any]] = (),
        run_info: dict[str, Any] | None = None,
    ):
        self.module = module
        self.run_info = dict(run_info or {})
        self.changes: list[dict[str, Any]] = []
        self._consistent = True  # the state is at an epoch boundary (safe to checkpoint)
        self._saved_epoch = -1
        self._record: dict[str, Any] | None = None
        self.train_data = train_data
        self.val_data = val_data
        self.config = config or TrainConfig()
        self.callbacks = [as_callback(c) for c in callbacks]
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.step = 0
        self.best_loss = float("inf")
        self.best_epoch = -1
        self._best_state: dict[str, torch.Tensor] | None = None
        self._bad_epochs = 0
        self._stop_requested = False
        self.stopped_early = False
        params = [p for p in module.parameters() if p.requires_grad]
        self._optimizer = torch.optim.Adam(
            params,
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
            # one kernel for every parameter update on CUDA; the CPU path is unchanged
            fused=bool(params) and all(p.is_cuda for p in params),
        )
        self._shuffle = torch.Generator()
        self._scheduler = self._build_scheduler()

    def _build_scheduler(self) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
        cfg = self.config
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
        if cfg.lr_schedule is None:
            return None
        if not 0 < cfg.lr_factor < 1 or int(cfg.lr_patience) < 0 or not 0 < cfg.min_lr_ratio <= 1:
            raise ValueError(
                f"lr_factor must be in (0, 1), lr_patience >= 0 and min_lr_ratio in (0, 1]; got "
                f"{cfg.lr_factor}, {cfg.lr_patience}, {cfg.min_lr_ratio}"
            )
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            self._optimizer, mode="min", factor=cfg.lr_factor, patience=int(cfg.lr_patience),
            threshold=0.0, min_lr=cfg.lr * cfg.min_lr_ratio,
        )

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Ask the loop to stop after the current epoch (thread-safe; used by widgets)."""
        self._stop_requested = True

    @property
    def checkpoint_dir(self) -> Path | None:
        """The folder of ``last.pt`` and ``best.pt`` (``config.checkpoint_dir``), or ``None``."""
        return Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else None

    # ------------------------------------------------------------------ state
    def run_record(self) -> dict[str, Any]:
        """What identifies this run: module class, parameter shapes, the :data:`MUST_MATCH` settings,
        ``run_info`` (and a digest of the data when ``run_info`` has no ``data``)."""
        cls = type(self.module)
        record = {
            "module_class": cls.__qualname__,  # not the module: a script may run as __main__
            "parameters": {k: list(v.shape) for k, v in self.module.state_dict().items()},
            "training": {k: getattr(self.config, k) for k in MUST_MATCH
                         + (SCHEDULE_SETTINGS if self.config.lr_schedule is not None else ())},
            **self.run_info,
        }
        if "data" not in record:
            record["data"] = batch_source_fingerprint(self.train_data, self.val_data)
        return plain(record)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, and the record of the run (:meth:`run_record`)."""
        return {
            "format": FORMAT,
            "run": self._run_record(),
            "changes": [dict(c) for c in self.changes],
            "module": self.module.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_state": self._best_state,
            "bad_epochs": self._bad_epochs,
            "history": self.history,
            "rng": get_rng_state(),
            "shuffle_rng": self._shuffle.get_state(),
            "config": asdict(self.config),
            **({"scheduler": self._scheduler.state_dict()} if self._scheduler is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        self.module.load_state_dict(state["module"])
        self._optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.step = state["step"]
        self.best_loss = state["best_loss"]
        self.best_epoch = state["best_epoch"]
        self._best_state = state["best_state"]
        self._bad_epochs = state["bad_epochs"]
        self.history = list(state["history"])
        self.changes = [dict(c) for c in state.get("changes", [])]
        set_rng_state(state["rng"])
        self._shuffle.set_state(state["shuffle_rng"].cpu())
        if self._scheduler is not None and "scheduler" in state:
            self._scheduler.load_state_dict(state["scheduler"])

    def _run_record(self) -> dict[str, Any]:
        if self._record is None:
            self._record = self.run_record()
        return self._record

    def _apply_changes(self, saved_config: dict[str, Any]) -> None:
        """Apply the :data:`MAY_CHANGE` settings that differ from the checkpoint's and record them."""
        for name in MAY_CHANGE:
            old, new = saved_config.get(name), getattr(self.config, name)
            if old == new:
                continue
            if name == "lr":
                for group in self._optimizer.param_groups:
                    group["lr"] = new
                if self._scheduler is not None:  # the floor follows the new starting rate
                    self._scheduler.min_lrs = [new * self.config.min_lr_ratio] * len(self._optimizer.param_groups)
            self.changes.append({"epoch": self.epoch, "setting": name, "from": old, "to": new})
            logger.info("resumed run: %s changed from %r to %r at epoch %d", name, old, new, self.epoch)

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.train_data.device)
        check_same_run(state.get("run") if state.get("format") == FORMAT else None, self._run_record(), path)
        require_keys(state, RESUME_KEYS, path)
        self.load_state_dict(state)
        self._apply_changes(state.get("config", {}))
        self._saved_epoch = self.epoch
        logger.info("resumed from %s at epoch %d (step %d)", path, self.epoch, self.step)

    def _finished(self) -> bool:
        """Whether the stopping rules already hold (checked before each epoch, so a resumed run that
        was interrupted after its last epoch does not run one more)."""
        cfg = self.config
        if cfg.patience is not None and self.history and self._bad_epochs >= cfg.patience:
            if not self.stopped_early:
                logger.info("early stopping at epoch %d (best epoch %d)", self.epoch, self.best_epoch)
            self.stopped_early = True
            return True
        return self.epoch >= cfg.max_epochs or (cfg.max_steps is not None and self.step >= cfg.max_steps)

    def _save_last(self, path: Path) -> None:
        save_checkpoint(self.state_dict(), path)
        self._saved_epoch = self.epoch

    # ------------------------------------------------------------------ loop
    def fit(self, *, resume: bool = True) -> list[dict[str, Any]]:
        """Train until ``max_epochs``, ``max_steps``, early stopping or :meth:`request_stop`.

        Returns
        -------
        The history: one record per epoch with ``epoch``, ``step``, ``train_loss``,
        ``val_loss`` and the mean of every loss part the module reports.
        """
        cfg = self.config
        last = self.checkpoint_dir / LAST if self.checkpoint_dir else None
        if resume and last is not None and last.exists():
            self._resume(last)
        elif self.epoch == 0:
            seed_everything(cfg.seed)
            self._shuffle.manual_seed(cfg.seed)
        self._stop_requested = False
        for cb in self.callbacks:
            cb.on_train_start(self)

        bar = tqdm(
            total=cfg.max_epochs, initial=self.epoch, desc="training", unit="epoch",
            disable=not cfg.progress_bar, leave=False,
        )
        try:
            while not self._finished():
                self._consistent = False
                record = self._run_epoch()
                self.history.append(record)
                improved = self._track_best(record)
                self._consistent = True
                if last is not None and (self.epoch % cfg.checkpoint_every == 0 or improved):
                    self._save_last(last)
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.4g}", val=f"{record.get('val_loss', float('nan')):.4g}")
                for cb in self.callbacks:
                    cb.on_epoch_end(self, record)
                if self._stop_requested:
                    logger.info("stopped on request after epoch %d", self.epoch)
                    break
        finally:
            bar.close()
            # only a state at an epoch boundary is written: an interruption mid-epoch keeps the last one
            if last is not None and self.history and self._consistent and self._saved_epoch != self.epoch:
                self._save_last(last)
        if cfg.restore_best and self._best_state is not None:
            self.module.load_state_dict(self._best_state)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _run_epoch(self) -> dict[str, Any]:
        cfg = self.config
        self.module.train()
        t0 = time.perf_counter()
        total = torch.zeros((), device=self.train_data.device)
        parts_sum: dict[str, torch.Tensor] = {}
        n_batches = 0
        params = [p for g in self._optimizer.param_groups for p in g["params"]]
        for batch in self.train_data.batches(cfg.batch_size, shuffle=True, generator=self._shuffle):
            loss, parts = self.module.loss(batch)
            if not torch.isfinite(loss):
                hint = nonfinite_hint(self.checkpoint_dir, self._saved_epoch, self.best_epoch)
                raise NonFiniteLossError(
                    f"loss is {loss.item()} at epoch {self.epoch + 1}, step {self.step + 1} "
                    f"(parts: { {k: float(v) for k, v in parts.items()} }); lower the learning rate "
                    f"or check the input counts.{hint}"
                )
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self._optimizer.step()
            self.step += 1
            n_batches += 1
            total += loss.detach()
            for k, v in parts.items():
                v = v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                parts_sum[k] = parts_sum.get(k, 0) + v
        self.epoch += 1
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": float(total / max(n_batches, 1)),
        }
        record.update({f"train_{k}": float(v / max(n_batches, 1)) for k, v in parts_sum.items()})
        if self.val_data is not None:
            record.update(self.evaluate(self.val_data, prefix="val"))
        record["lr"] = float(self._optimizer.param_groups[0]["lr"])
        record["seconds"] = time.perf_counter() - t0
        return record

    @torch.no_grad()
    def evaluate(self, data: DeviceData, *, prefix: str = "val") -> dict[str, float]:
        """Mean loss (and parts) over ``data`` with a fixed Monte-Carlo seed; training RNG untouched."""
        self.module.train(False)
        devices = [data.device] if data.device.type == "cuda" else []
        total, parts_sum, n = 0.0, {}, 0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.val_seed)
            for batch in data.batches(self.config.batch_size):
                size = next(iter(batch.values())).shape[0]
                loss, parts = self.module.loss(batch)
                total += float(loss) * size
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + float(v) * size
                n += size
        self.module.train(True)
        out = {f"{prefix}_loss": total / max(n, 1)}
        out.update({f"{prefix}_{k}": v / max(n, 1) for k, v in parts_sum.items()})
        return out

    def _track_best(self, record: dict[str, Any]) -> bool:
        value = record.get("val_loss", record["train_loss"])
        if self._scheduler is not None:
            self._scheduler.step(value)
        if value < self.best_loss:
            self.best_loss = value
            self.best_epoch = record["epoch"]
            self._bad_epochs = 0
            self._best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            if self.checkpoint_dir is not None:
                save_checkpoint({"format": FORMAT, "run": self._run_record(), "module": self._best_state,
                                 "epoch": self.epoch, "loss": value}, self.checkpoint_dir / BEST)
            return True
        self._bad_epochs += 1
        return False

