"""Widgets of a :class:`~cradlekit.widgets.TrainingController`: settings, buttons, progress, loss curves."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import ipywidgets as W
import torch
import traitlets as T

from ..module import MODELS
from ._messages import describe_error, set_message
from ._views import FigureImage, View

if TYPE_CHECKING:  # annotations only: no import cycle at run time
    from .training import TrainingController

__all__ = ["TrainingView"]


class TrainingView(View):
    """Widgets of a :class:`TrainingController`: settings, buttons, progress, loss curves."""

    render_every = 1.0  # seconds between redraws of the loss curves during training

    def __init__(self, controller: TrainingController):
        super().__init__(controller)
        c = controller
        kw = {"style": {"description_width": "90px"}, "layout": W.Layout(width="220px")}
        devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        if c.accelerator not in devices:
            devices.append(c.accelerator)
        self.inputs = {
            "model_name": W.Dropdown(options=list(MODELS), description="model", **kw),
            "lr": W.BoundedFloatText(min=1e-7, max=1.0, step=1e-4, description="learning rate", **kw),
            "max_epochs": W.BoundedIntText(min=1, max=100_000, description="max epochs", **kw),
            "batch_size": W.BoundedIntText(min=1, max=1_000_000, description="batch size", **kw),
            "latent_dim": W.BoundedIntText(min=1, max=4096, description="latent dim", **kw),
            "hidden_dim": W.BoundedIntText(min=1, max=16384, description="hidden dim", **kw),
            "alpha": W.BoundedFloatText(min=0.0, max=100.0, step=0.05, description="alpha (J2)", **kw),
            "patience": W.BoundedIntText(min=0, max=100_000, description="patience", **kw),
            "artifact_key": W.Text(description="QC labels", **kw),
            "accelerator": W.Dropdown(options=devices, description="device", **kw),
        }  # fmt: skip
        for name, widget in self.inputs.items():
            T.link((c, name), (widget, "value"))
        self.start = W.Button(description="Start", icon="play", button_style="success")
        self.stop = W.Button(description="Stop", icon="stop", button_style="danger")
        self.resume = W.Button(description="Resume", icon="forward")
        self.start.on_click(lambda _: c.start(replace=c.confirm_replace))
        c.observe(self._on_confirm, names="confirm_replace")
        self.stop.on_click(lambda _: c.stop())
        self.resume.on_click(lambda _: c.resume())
        self.progress = W.IntProgress(min=0, max=max(c.max_epochs, 1), description="epochs")
        self.state = W.HTML()
        self.state.add_class("cradlekit-training-status")
        self.image = FigureImage()
        self._last_draw = 0.0
        c.observe(self._on_history, names="history")
        c.observe(self._on_state, names=["status", "epoch", "max_epochs", "device", "checkpoint_dir", "model_name"])
        self._on_state()
        self._draw()
        items = list(self.inputs.values())
        self.root = W.VBox([
            W.HBox([W.VBox(items[:5]), W.VBox(items[5:])]),
            W.HBox([self.start, self.stop, self.resume]),
            W.HBox([self.progress, self.state]),
            self.image.widget,
            self.message,
            self.export_bar,
        ])  # fmt: skip
        self.root.add_class("cradlekit-training")

    def _on_confirm(self, change) -> None:
        confirm = self.controller.confirm_replace
        self.start.description = "Replace model" if confirm else "Start"
        self.start.button_style = "warning" if confirm else "success"

    def _on_state(self, change=None) -> None:
        c = self.controller
        running = c.status in ("running", "stopping")
        self.start.disabled = self.resume.disabled = running
        self.stop.disabled = not running
        for name, widget in self.inputs.items():
            widget.disabled = running or (
                name == "alpha" and not getattr(MODELS.get(c.model_name), "takes_alpha", False)
            )
        self.progress.max = max(c.max_epochs, 1)
        self.progress.value = min(c.epoch, self.progress.max)
        self.state.value = (
            f"status: <b>{c.status}</b> · epoch {c.epoch}/{c.max_epochs} · device: {c.device or '—'}"
            f"<br><small>checkpoint: <code>{c.checkpoint_path}</code></small>"
        )
        if change is not None and change["name"] == "status" and not running:
            self._draw()

    def _on_history(self, change) -> None:
        if time.monotonic() - self._last_draw >= self.render_every or not self.controller.running:
            self._draw()

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        try:
            self.image.show(self.controller.static_figure())
        except Exception as exc:  # noqa: BLE001 - a drawing problem must not stop training
            set_message(self.controller, describe_error(exc, "draw the loss curves"), "warning")
