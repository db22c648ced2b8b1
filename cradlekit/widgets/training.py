"""TrainingController: pick a model and its key settings; start, stop and resume training in a thread."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import traitlets as T
from anndata import AnnData
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..model import PerturbationModel
from ..module import MODELS
from ..train import resolve_device
from ..train.checkpoint import LAST
from ._messages import _log_sink, add_warnings, capture_logs, describe_error, report_errors, set_message
from ._training_view import TrainingView
from ._views import DATA_COLOR, GENERATED_COLOR, Controller, new_figure

__all__ = ["TrainingController", "draw_losses"]

_ARCH_TRAITS = ("model_name", "latent_dim", "hidden_dim", "alpha", "artifact_key")


class TrainingController(Controller):
    """Train a :class:`cradlekit.PerturbationModel` in a background thread, with live loss curves.

    :meth:`start` builds a fresh model from the current settings and trains it in a
    :class:`threading.Thread` (the notebook stays responsive); every epoch record arrives through
    a ``callbacks=[...]`` hook of :meth:`PerturbationModel.train` and is appended to
    :attr:`history`. :meth:`stop` asks the run to end after the current epoch
    (:meth:`~PerturbationModel.request_stop`); :meth:`resume` continues from
    ``checkpoint_dir/last.pt`` (weights, optimiser, epoch, random state) up to ``max_epochs``.

    Parameters
    ----------
    adata
        Prepared AnnData: QC labels, split and (CRADLE-VAE) counterfactual references; see
        :class:`cradlekit.PerturbationModel`. Problems are reported in the widget.
    model
        Initial model name (:data:`cradlekit.module.MODELS`).
    checkpoint_dir
        Folder of the checkpoints; ``None``: a new temporary folder.
    model_options
        Further :class:`~cradlekit.PerturbationModel` options (e.g. ``num_particles``).
    train_options
        Further :meth:`~cradlekit.PerturbationModel.train` options (e.g. ``max_steps``).
    **traits
        Initial values of the traits below (``lr=1e-3, max_epochs=50, ...``).

    Attributes
    ----------
    model_name, lr, max_epochs, batch_size, latent_dim, hidden_dim, alpha, patience, seed, artifact_key, accelerator
        Settings (``alpha``: CRADLE-VAE models only; ``patience`` 0 disables early stopping).
    status : str
        ``idle``, ``running``, ``stopping``, ``stopped``, ``finished`` or ``failed``.
    history : list of dict
        Epoch records (``epoch``, ``train_loss``, ``val_loss``, ``train_elbo``, ``train_j2``...).
    epoch : int
        Last finished epoch.
    device : str
        Training device (from :func:`cradlekit.train.resolve_device`).
    model : PerturbationModel or None
        The model being (or last) trained; hand it to :class:`PerturbationExplorer`.

    Examples
    --------
    >>> from cradlekit.widgets import TrainingController
    >>> tc = TrainingController(adata, max_epochs=200)   # doctest: +SKIP
    >>> tc                                                # Start / Stop / Resume buttons  # doctest: +SKIP
    >>> tc.start(); tc.wait(); tc.model                   # doctest: +SKIP
    """

    model_name = T.Enum(tuple(MODELS), default_value="cradle")
    lr = T.Float(3e-4)
    max_epochs = T.Int(200)
    batch_size = T.Int(512)
    latent_dim = T.Int(200)
    hidden_dim = T.Int(400)
    alpha = T.Float(0.5)
    patience = T.Int(50)
    seed = T.Int(0)
    artifact_key = T.Unicode("artifact_k3")
    accelerator = T.Unicode("auto")
    checkpoint_dir = T.Unicode("")
    status = T.Enum(("idle", "running", "stopping", "stopped", "finished", "failed"), default_value="idle")
    history = T.List()
    epoch = T.Int(0)
    device = T.Unicode("")
    confirm_replace = T.Bool(False, help="Start was pressed with a trained model: the next Start replaces it")

    def __init__(
        self,
        adata: AnnData,
        *,
        model: str = "cradle",
        checkpoint_dir: str | os.PathLike | None = None,
        model_options: Mapping[str, Any] | None = None,
        train_options: Mapping[str, Any] | None = None,
        **traits: Any,
    ):
        super().__init__(model_name=model, **traits)
        self.adata = adata
        self.model: PerturbationModel | None = None
        self.model_options = dict(model_options or {})
        self.train_options = dict(train_options or {})
        if checkpoint_dir is None:
            checkpoint_dir = tempfile.mkdtemp(prefix="cradlekit-train-")
        self.checkpoint_dir = os.fspath(checkpoint_dir)
        self._checkpoint_root, self._run_number = self.checkpoint_dir, 1
        self.previous_checkpoints: list[str] = []
        self._start_notes = ""
        self.train_info: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._built_with: dict[str, Any] = {}

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """Whether a training thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoint_dir/last.pt``, the file :meth:`resume` continues from."""
        return Path(self.checkpoint_dir) / LAST

    @property
    def progress(self) -> float:
        """Finished epochs over ``max_epochs`` (0–1)."""
        return min(1.0, self.epoch / max(self.max_epochs, 1))

    def _settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ARCH_TRAITS}

    def _build_model(self) -> PerturbationModel:
        kwargs: dict[str, Any] = {
            "model": self.model_name, "artifact_key": self.artifact_key,
            "latent_dim": self.latent_dim, "hidden_dim": self.hidden_dim, **self.model_options,
        }  # fmt: skip
        if getattr(MODELS.get(self.model_name), "takes_alpha", False):
            kwargs.setdefault("alpha", self.alpha)
        model = PerturbationModel(self.adata, **kwargs)
        self._built_with = self._settings()
        return model

    # ------------------------------------------------------------------ actions
    def start(self, *, replace: bool = False) -> bool:
        """Build a fresh model from the settings and train it in a background thread.

        Parameters
        ----------
        replace
            Needed when a model was already trained: without it nothing happens and the widget
            asks to confirm (its Start button turns into "Replace model"). The new run writes its
            checkpoints to a new folder (``<checkpoint_dir>/run-2``...): the previous checkpoint
            is kept, and widgets holding this controller (e.g. a PerturbationExplorer) switch to
            the new model.

        Returns
        -------
        bool
            Whether training started (otherwise :attr:`message` says why).
        """
        if self.running:
            set_message(self, "Training is already running: stop it first.", "warning")
            return False
        if self.model is not None and self.history and not replace:
            self.confirm_replace = True
            finished = self._finished_note()
            resume = ("or Resume to continue it" if not finished else
                      f"it finished at epoch {self.epoch}, so Resume continues it only after you raise max epochs"
                      f"{' and patience' if self.train_info.get('stopped_early') else ''}")  # fmt: skip
            set_message(self, f"A model is already trained ({self.epoch} epochs, checkpoint {self.checkpoint_path}). "
                        "Starting again trains a new model and replaces it here and in the widgets using it (its "
                        f"checkpoint is kept): press 'Replace model' to confirm; {resume}.",
                        "warning")  # fmt: skip
            return False
        self.confirm_replace = False
        ok = False
        with report_errors(self, "start training"):
            self.device = str(resolve_device(self.accelerator))
            model = self._build_model()  # the previous model stays if this fails
            if self.model is not None and self.history:
                self.previous_checkpoints.append(str(self.checkpoint_path))
                self._run_number += 1
                self.checkpoint_dir = os.path.join(self._checkpoint_root, f"run-{self._run_number}")
            self.model = model
            self.train_info = {}
            self.history, self.epoch = [], 0
            ok = self._launch(resume=False)
        self._start_notes = self.message if ok else ""
        if not ok:
            self.status = "failed"
        return ok

    def resume(self) -> bool:
        """Continue training from ``checkpoint_dir/last.pt`` up to ``max_epochs``.

        Returns
        -------
        bool
            Whether training resumed (otherwise :attr:`message` says why).
        """
        if self.running:
            set_message(self, "Training is already running.", "warning")
            return False
        if not self.checkpoint_path.exists():
            set_message(self, f"Nothing to resume: no checkpoint at {self.checkpoint_path}. Press Start.", "warning")
            return False
        ok = False
        with report_errors(self, "resume training"):
            if self.model is not None and self._settings() != self._built_with:
                set_message(self, "The model settings changed since this checkpoint: press Start to train a "
                            "new model, or restore the settings to resume.", "warning")  # fmt: skip
                return False
            if self._finished_note():
                set_message(self, self._finished_note(), "warning")
                return False
            self.device = str(resolve_device(self.accelerator))
            if self.model is None:  # e.g. a new session on an old checkpoint folder
                self.model = self._build_model()
            ok = self._launch(resume=True)
        return ok

    def _finished_note(self) -> str:
        """Why resuming would do nothing (``""`` when it would continue)."""
        if self.status != "finished" or not (self.epoch >= self.max_epochs or self.train_info.get("stopped_early")):
            return ""
        why = "early stopping ended it" if self.train_info.get("stopped_early") and self.epoch < self.max_epochs \
            else f"it reached max epochs ({self.max_epochs})"  # fmt: skip
        return (f"Nothing to resume: training finished at epoch {self.epoch} ({why}). Raise max epochs (and "
                "patience) to continue it, or press Start for a new model.")  # fmt: skip

    def stop(self) -> None:
        """Ask the running training to stop after the current epoch (the checkpoint is kept)."""
        if not self.running:
            set_message(self, "Training is not running.", "info")
            return
        self._stop.set()
        if self.model is not None:
            self.model.request_stop()
        self.status = "stopping"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the training thread ends (or ``timeout`` seconds); return whether it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _launch(self, *, resume: bool) -> bool:
        self._stop.clear()
        self.status = "running"
        self._thread = threading.Thread(target=self._run, args=(resume,), name="cradlekit-training", daemon=True)
        self._thread.start()
        return True

    def _run(self, resume: bool) -> None:
        """The thread's body: one ``model.train`` call; every outcome ends in ``status``/``message``."""
        model = self.model
        assert model is not None
        notes: list[str] = []
        try:
            with capture_logs(_log_sink(self, notes), warnings_to=notes):  # this thread's warnings: the widget
                self._train(model, resume)
        except Exception as exc:  # noqa: BLE001 - reported in the widget
            set_message(self, describe_error(exc, "train"), "error")
            self.status = "failed"
        if self._start_notes and self._start_notes not in self.message:
            set_message(self, f"{self.message}\n{self._start_notes}", "warning")
        add_warnings(self, notes)

    def _train(self, model: PerturbationModel, resume: bool) -> None:
        options = {
            "max_epochs": self.max_epochs, "lr": self.lr, "batch_size": self.batch_size,
            "patience": self.patience if self.patience > 0 else None, "seed": self.seed,
            "accelerator": self.accelerator, "checkpoint_dir": self.checkpoint_dir, "resume": resume,
            "progress_bar": False, **self.train_options,
        }  # fmt: skip
        model.train(callbacks=[_WidgetCallback(self)], **options)
        info = self.train_info = dict(model.train_info)
        stopped = self._stop.is_set() and info.get("epochs", 0) < self.max_epochs
        how = "Stopped" if stopped else ("Early stopping" if info.get("stopped_early") else "Finished")
        set_message(
            self,
            f"{how} after epoch {info.get('epochs')} on {info.get('device')}; best epoch "
            f"{info.get('best_epoch')} (loss {info.get('best_loss', float('nan')):.4g}). "
            f"Checkpoint: {self.checkpoint_path}",
            "info",
        )
        self.status = "stopped" if stopped else "finished"

    def _on_epoch(self, trainer: Any, record: Mapping[str, Any]) -> None:
        self.history = [*self.history, dict(record)]
        self.epoch = int(record.get("epoch", self.epoch + 1))
        if self._stop.is_set():
            trainer.request_stop()

    # ------------------------------------------------------------------ figures and view
    def static_figure(self) -> Figure:
        """Loss curves: −ELBO (train/val) and the counterfactual loss J2 (CRADLE-VAE); a one-line
        placeholder before the first epoch."""
        if not self.history:
            fig, axes = new_figure(1, 1, (9.0, 0.6))
            axes[0, 0].axis("off")
            axes[0, 0].text(0.5, 0.5, "no epochs yet: the −ELBO and J2 curves appear here after the first epoch",
                            ha="center", va="center", fontsize="small", color="#555555")  # fmt: skip
            return fig
        fig, axes = new_figure(1, 2, (9.0, 3.2))
        draw_losses(axes[0, 0], axes[0, 1], self.history)
        return fig

    def _make_view(self):
        return TrainingView(self)

    def tables(self):
        """The tables the widget shows, by name (exported as CSV): the training history once there is one."""
        import pandas as pd

        return {"history": pd.DataFrame(self.history).set_index("epoch")} if self.history else {}


class _WidgetCallback:
    """Training callback that forwards epoch records to the controller (runs in the training thread)."""

    def __init__(self, controller: TrainingController):
        self.controller = controller

    def on_train_start(self, trainer: Any) -> None:
        c = self.controller
        c.history = [dict(r) for r in getattr(trainer, "history", [])]
        c.epoch = int(getattr(trainer, "epoch", 0))
        if c._stop.is_set():
            trainer.request_stop()

    def on_epoch_end(self, trainer: Any, record: Mapping[str, Any]) -> None:
        self.controller._on_epoch(trainer, record)

    def on_train_end(self, trainer: Any) -> None:
        pass


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(r["epoch"], r[key]) for r in history if key in r and r[key] is not None]
    if not rows:
        return np.empty(0), np.empty(0)
    x, y = np.asarray(rows, dtype=np.float64).T
    return x, y


def draw_losses(ax_elbo, ax_j2, history: list[dict]) -> None:
    """Draw −ELBO and J2 curves (train solid blue, validation dashed green) from epoch records."""
    for ax, title in ((ax_elbo, "−ELBO per cell"), (ax_j2, "J2 (counterfactual loss)")):
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
    if not history:
        for ax in (ax_elbo, ax_j2):
            ax.text(0.5, 0.5, "no epochs yet", ha="center", va="center", transform=ax.transAxes)
        return
    for split, color, ls in (("train", DATA_COLOR, "-"), ("val", GENERATED_COLOR, "--")):
        x, y = _series(history, f"{split}_elbo")
        if x.size:
            y = -y
        else:  # models without an 'elbo' part: the loss itself
            x, y = _series(history, f"{split}_loss")
        if x.size:
            ax_elbo.plot(x, y, color=color, ls=ls, marker="." if x.size < 30 else None, label=split)
        x, y = _series(history, f"{split}_j2")
        if x.size:
            ax_j2.plot(x, y, color=color, ls=ls, marker="." if x.size < 30 else None, label=split)
    for ax in (ax_elbo, ax_j2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 0.5 ticks on a short run
        if ax.lines:
            ax.legend(fontsize="small")
    if not ax_j2.lines:
        ax_j2.text(0.5, 0.5, "this model has no J2", ha="center", va="center", transform=ax_j2.transAxes)
