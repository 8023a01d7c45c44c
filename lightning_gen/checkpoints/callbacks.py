"""The checkpoints of a run: last.ckpt, best-k by a monitored metric, and periodic ones.

Files are written by lightning_gen.checkpoints.files (a temporary file beside the target, fsynced, then
renamed), so a session killed mid-save keeps the previous last.ckpt intact. The save at the end of a
run (max_steps, max_time, a signal, an exception) is lightning_gen.checkpoints.run_end's, which runs
before EMA's on_train_end copies the average into the model.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_gen.config.settings import CheckpointSettings

# Words that make a metric higher-is-better, matched against the parts of its name (val/class_accuracy → class, accuracy).
HIGHER_IS_BETTER = {"psnr", "ssim", "accuracy", "acc", "precision", "recall", "f1", "auc", "judge", "clip"}


def monitor_mode(monitor: str, mode: Literal["auto", "min", "max"] = "auto") -> Literal["min", "max"]:
    """``max`` for metrics where higher is better (PSNR, SSIM, accuracy, ...), else ``min`` (loss, FID, KID, ...)."""
    if mode != "auto":
        return mode
    words = re.split(r"[/_\-.]", monitor.lower())
    return "max" if HIGHER_IS_BETTER.intersection(words) else "min"


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint without its end-of-training save of last.ckpt.

    Lightning runs checkpoint callbacks after all others, so its on_train_end would save after EMA's
    on_train_end has copied the average over the raw weights (losing them); RunEndSave saves instead.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        return


def checkpoint_callbacks(directory: Path, settings: CheckpointSettings) -> list[ModelCheckpoint]:
    best = RunCheckpoint(
        dirpath=directory,
        filename="best-epoch{epoch:03d}-step{step:07d}",
        monitor=settings.monitor,
        mode=monitor_mode(settings.monitor, settings.mode),
        save_top_k=settings.save_top_k,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,  # a resumed run rewrites last.ckpt instead of adding last-v1.ckpt
    )
    callbacks: list[ModelCheckpoint] = [best]
    if settings.every_n_steps or settings.every_n_minutes:
        callbacks.append(
            RunCheckpoint(
                dirpath=directory,
                filename="periodic-step{step:07d}",
                monitor="step",
                mode="max",
                save_top_k=settings.keep_periodic,
                every_n_train_steps=settings.every_n_steps,
                train_time_interval=timedelta(minutes=settings.every_n_minutes) if settings.every_n_minutes else None,
                save_last=True,
                auto_insert_metric_name=False,
                enable_version_counter=False,
            )
        )
    return callbacks
