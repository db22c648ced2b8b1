"""Training of :class:`~cradlekit.model.PerturbationModel`: batch sources, the fit, stopping.

Like scvi-tools' ``UnsupervisedTrainingMixin``, this is a mixin that the model class inherits; it
reads the model's ``adata``, ``registry``, ``module``, ``module_options`` and ``_build_module`` and
writes ``history``, ``train_info`` and ``is_trained``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch

from .._locks import RunLock, holder
from .._logging import logger
from ..errors import FolderInUseError, NonFiniteLossError
from ..train import Callback, CellBatches, TrainConfig, Trainer, resolve_device
from ._batches import build_batches
from ._fingerprint import adata_fingerprint
from ._train_args import check_train_args

#: The lock file a training holds in its checkpoint folder (:class:`~cradlekit._locks.RunLock`).
CHECKPOINT_LOCK = ".cradlekit-training.lock"

__all__ = ["TrainingMixin"]


class TrainingMixin:
    """:meth:`train`, :meth:`request_stop` and :meth:`minibatch` of a :class:`~cradlekit.model.PerturbationModel`."""

    def _datasets(self) -> dict[str, CellBatches | None]:
        """Train/val batch sources on the host (sparse counts, dense per batch), built on first use."""
        if self._data is None:
            if self.adata is None:
                raise ValueError(
                    "this model was loaded without adata; pass adata= to PerturbationModel.load to train it"
                )
            self._data = build_batches(self.adata, self.registry, check_counts=not self._counts_checked)
        return self._data

    def minibatch(self, n: int = 128, *, split: str = "train", seed: int = 0) -> dict[str, torch.Tensor]:
        """``n`` random cells of ``split`` (``"train"``/``"val"``) as the tensors one training step reads
        (``X``, ``D`` and, for CRADLE-VAE, ``A``, ``X_cf``, ``cf_mask``), on the host: for inspecting the
        Pyro model and guide, e.g. ``pyro.poutine.trace(model.module.model).get_trace(batch)``."""
        part = self._datasets().get(split)
        if part is None:
            raise ValueError(f"no {split!r} cells in this model's data (splits: train, val)")
        rows = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))[:n]
        return part.take(rows.numpy())

    def _device_datasets(self, device: torch.device) -> tuple[CellBatches, CellBatches | None]:
        """Train/val batch sources for ``device``: the counts stay on the host, each batch is copied there."""
        if self._device_data is not None and self._device_data[0] == device:
            return self._device_data[1], self._device_data[2]
        data = self._datasets()
        train = data["train"].to(device)
        val = data["val"].to(device) if data["val"] is not None else None
        if val is None:
            logger.warning("no validation cells: the training loss drives early stopping")
        self._device_data = (device, train, val)
        return train, val

    def _fingerprint(self) -> dict[str, Any]:
        """The training data's fingerprint (computed once per AnnData)."""
        if self._adata_fingerprint is None:
            if self.adata is None:
                raise ValueError(
                    "this model was loaded without adata; pass adata= to PerturbationModel.load to train it"
                )
            self._adata_fingerprint = adata_fingerprint(self.adata, self.registry)
        return self._adata_fingerprint

    def train(
        self,
        *,
        max_epochs: int = 2000,
        max_steps: int | None = None,
        lr: float = 3e-4,
        weight_decay: float = 1e-6,
        batch_size: int = 512,
        patience: int | None = 50,
        grad_clip: float = 100.0,
        lr_schedule: str | None = None,
        lr_factor: float = 0.5,
        lr_patience: int = 10,
        seed: int = 0,
        accelerator: str | torch.device = "auto",
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        resume: bool = True,
        callbacks: Sequence[Callback | Callable[[dict[str, Any]], Any]] = (),
        progress_bar: bool = True,
    ) -> list[dict[str, Any]]:
        """Fit the model (Adam, gradient clipping, early stopping on the validation loss).

        The first call initialises the weights from ``seed`` (same seed, same data: identical
        weights and losses); a later call continues from the current weights with a new optimiser.
        The best state by validation loss is kept at the end.

        Parameters
        ----------
        max_epochs, max_steps
            Budgets in epochs and optimiser steps (the run ends with the epoch that reaches ``max_steps``).
        lr, weight_decay, batch_size, grad_clip
            Adam settings, cells per step, gradient-norm clip (the paper's: 3e-4, 1e-6, 512, 100).
        patience
            Epochs without a new best validation loss before stopping (``None``: never; 100 for Replogle).
        lr_schedule, lr_factor, lr_patience
            ``None`` keeps ``lr`` constant (the paper); ``"plateau"`` multiplies it by ``lr_factor``
            after ``lr_patience`` epochs without a new best validation loss (down to ``lr / 64``),
            see :class:`~cradlekit.train.TrainConfig`.
        seed
            Seeds the initial weights, shuffling and Monte-Carlo samples.
        accelerator
            ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a device.
        checkpoint_dir, checkpoint_every
            Folder for ``last.pt`` (every ``checkpoint_every`` epochs) and ``best.pt``. While training, the
            folder is locked (``.cradlekit-training.lock``, released when the training or its process
            ends): a second training into it is refused.
        resume
            Continue from ``checkpoint_dir/last.pt`` when it exists (weights, optimiser, RNG states).
            The checkpoint must come from the same run: model and options, genes (names and order),
            training data (cells, split, labels, counts; see :func:`~cradlekit.model._fingerprint.adata_fingerprint`)
            and ``batch_size``, ``weight_decay``, ``grad_clip``, ``seed``. ``max_epochs``, ``max_steps``,
            ``patience`` and ``lr`` may change (e.g. a lower ``lr`` after a NaN loss): the new values
            apply to the restored optimiser and are listed in ``train_info["resume_changes"]``.
        callbacks
            Objects with ``on_train_start/on_epoch_end/on_train_end`` or functions of the epoch
            record (``epoch``, ``step``, ``train_loss``, ``val_loss`` and every loss part).
        progress_bar
            Show a progress bar over epochs.

        Returns
        -------
        list of dict
            The history (also in :attr:`history`); :attr:`train_info` records the device and outcome.

        Raises
        ------
        TypeError, ValueError
            An argument of the wrong type or out of range (``lr='1e-3'``, ``batch_size=0``,
            ``checkpoint_every=0``, ``lr=0``), named in the message; raised before anything runs.
        cradlekit.errors.FolderInUseError
            Another training (in this or another process) is writing into ``checkpoint_dir``: two
            runs in one folder would overwrite each other's checkpoints. Nothing is changed.
        cradlekit.errors.NonFiniteLossError
            On a NaN/inf loss, naming the epoch and step and what the checkpoint folder holds (``last.pt``
            keeps the last completed epoch, if one was saved). The model's weights are then those of
            the diverged step: :meth:`save` refuses them unless ``allow_nonfinite=True``.
        cradlekit.errors.CheckpointMismatchError
            ``resume=True`` and ``last.pt`` was written by a different run; the message names the
            differing fields (nothing is changed; use a fresh ``checkpoint_dir`` or ``resume=False``).
        cradlekit.errors.CheckpointError
            ``last.pt`` is damaged or holds Python objects (it is never unpickled).
        """
        check_train_args(
            max_epochs=max_epochs, max_steps=max_steps, lr=lr, weight_decay=weight_decay, batch_size=batch_size,
            patience=patience, grad_clip=grad_clip, seed=seed, accelerator=accelerator, checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every, resume=resume, callbacks=callbacks, progress_bar=progress_bar,
        )
        seed = int(seed)  # NumPy integers too (Python's random.seed takes int only)
        device = resolve_device(accelerator)
        if not self.is_trained:
            self.module.load_state_dict(self._build_module(seed).state_dict())
        self.module.to(device)
        train_data, val_data = self._device_datasets(device)
        config = TrainConfig(
            lr=lr, weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs, max_steps=max_steps,
            patience=patience, grad_clip=grad_clip, seed=seed, checkpoint_every=checkpoint_every,
            lr_schedule=lr_schedule, lr_factor=lr_factor, lr_patience=lr_patience,
            checkpoint_dir=None if checkpoint_dir is None else os.fspath(checkpoint_dir), progress_bar=progress_bar,
        )
        run_info = {"model": {"name": self.registry["model"], "options": self.module_options},
                    "genes": list(self.registry["genes"])}
        if checkpoint_dir is not None:  # the record is only written to (and checked against) checkpoints
            run_info["data"] = self._fingerprint()
        self._trainer = Trainer(
            self.module, train_data, val_data, config=config, callbacks=list(callbacks), run_info=run_info
        )
        lock = None if checkpoint_dir is None else _lock_checkpoint_dir(checkpoint_dir, self)
        try:
            with pyro.validation_enabled(False):  # skips per-sample support checks; restored on exit
                history = self._trainer.fit(resume=resume)
        except NonFiniteLossError as err:
            self._nonfinite = str(err)  # the module holds the diverged step's weights; save() refuses them
            raise
        finally:
            if lock is not None:
                lock.release()
            trainer, self._trainer = self._trainer, None
            self.module.eval()
        self.history = list(history)
        self.is_trained = True
        self._nonfinite = None
        self.train_info = {
            "device": str(device), "seed": int(seed), "epochs": trainer.epoch, "steps": trainer.step,
            "best_epoch": trainer.best_epoch, "best_loss": trainer.best_loss, "stopped_early": trainer.stopped_early,
            "lr": lr, "lr_schedule": lr_schedule, "max_epochs": max_epochs, "max_steps": max_steps,
            "patience": patience, "batch_size": batch_size, "resume_changes": [dict(c) for c in trainer.changes],
        }
        logger.info(
            "trained %d epochs (%d steps) on %s; best epoch %d", trainer.epoch, trainer.step, device, trainer.best_epoch
        )
        return self.history

    def request_stop(self) -> None:
        """Ask a running :meth:`train` to stop after the current epoch (e.g. from a widget)."""
        if self._trainer is None:
            logger.debug("request_stop: no training is running")
            return
        self._trainer.request_stop()


def _lock_checkpoint_dir(checkpoint_dir: str | os.PathLike, model: Any) -> RunLock:
    """Take the checkpoint folder's lock, or raise :class:`~cradlekit.errors.FolderInUseError` (and
    forget ``model``'s trainer: nothing ran)."""
    lock = RunLock(os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_LOCK))
    if not lock.acquire():
        model._trainer = None
        raise FolderInUseError(
            f"checkpoint_dir {os.fspath(checkpoint_dir)} is in use by another training ({holder(lock.path)}): two runs "
            "writing into one folder would overwrite each other's checkpoints. Use another checkpoint_dir, or wait "
            "until that training ends (its lock is released when its process ends, however it ends)."
        )
    return lock
