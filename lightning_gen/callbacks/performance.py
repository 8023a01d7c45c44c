"""GPU speed options of the ``performance`` config group: torch.compile and channels_last for the model's networks,
float32 matmul precision for the process (lightning_gen.config.settings.PerformanceSettings).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric

from lightning_gen.config.settings import PerformanceSettings


def trainable_networks(module: nn.Module) -> dict[str, nn.Module]:
    """The module's children that hold trainable parameters (UNet, encoder, decoder, heads), metrics and frozen
    encoders (T5) aside: what compile and channels_last apply to."""
    return {
        name: child
        for name, child in module.named_children()
        if not isinstance(child, Metric) and any(parameter.requires_grad for parameter in child.parameters())
    }


def apply_matmul_precision(settings: PerformanceSettings) -> None:
    """Once per process, before the Trainer starts (Lightning's Ampere hint, acted on when the config asks)."""
    torch.set_float32_matmul_precision(settings.matmul_precision)


def channels_last_images(batch: Any) -> None:
    """The batch's image tensors (4-D) in channels_last, in place in the batch dict the step receives."""
    if isinstance(batch, dict):
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.dim() == 4:
                batch[key] = value.contiguous(memory_format=torch.channels_last)


class PerformanceOptions(pl.Callback):
    """Compiles and/or converts the model's trainable networks at setup; with channels_last, the batches too.

    ``nn.Module.compile`` compiles a network in place: its state_dict keys stay the eager ones (no ``_orig_mod.``),
    so a checkpoint written with compile loads without it. Listed after EMA: the average is a copy of the eager
    networks, taken before they are compiled.
    """

    def __init__(self, compile: bool = False, channels_last: bool = False):
        self.compile = compile
        self.channels_last = channels_last
        self._applied = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._applied:
            return
        for network in trainable_networks(pl_module).values():
            if self.channels_last:
                network.to(memory_format=torch.channels_last)
            if self.compile:
                network.compile()
        self._applied = True

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.channels_last:
            channels_last_images(batch)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.channels_last:
            channels_last_images(batch)


def performance_callbacks(settings: PerformanceSettings) -> list[pl.Callback]:
    """The callback when the config asks for compile or channels_last; none otherwise."""
    if not (settings.compile or settings.channels_last):
        return []
    return [PerformanceOptions(compile=settings.compile, channels_last=settings.channels_last)]
