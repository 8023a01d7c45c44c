"""What the precision and skipped-step tests share: a tiny datamodule, a CPU trainer without logging or checkpoints,
a callback that poisons one batch with a NaN, and a 16-mixed precision plugin whose GradScaler overflows at first."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_gen.data import ShapesDataModule


def datamodule() -> ShapesDataModule:
    return ShapesDataModule(num_images=32, image_size=16, batch_size=8, val_fraction=0.25)


def trainer(precision: str | None = None, steps: int = 3, callbacks=(), plugins=None, root: Path | None = None) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        plugins=plugins,
        max_steps=steps,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )


class PoisonBatch(pl.Callback):
    """Bad data: one NaN pixel in the batch of the given step, so the loss and every gradient are NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch["image"][0, 0, 0, 0] = float("nan")


def overflowing_scaler() -> MixedPrecision:
    # fp16 autocast on CPU with a first scale so large that the scaled gradients overflow fp16: the scaler skips the
    # update and cuts the scale by 2^8 per skip until the gradients fit, as on a GPU early in a 16-mixed run.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**30, backoff_factor=2.0**-8, growth_interval=1000)
    return MixedPrecision("16-mixed", "cpu", scaler)
