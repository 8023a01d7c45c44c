"""The checkpoints of a run: last.ckpt, best-k by a monitored metric, and periodic ones.

Lightning writes each file through an fsspec transaction (temporary file, then move), so a session
killed mid-save keeps the previous last.ckpt intact.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_gen.settings import CheckpointSettings


def checkpoint_callbacks(directory: Path, settings: CheckpointSettings) -> list[ModelCheckpoint]:
    best = ModelCheckpoint(
        dirpath=directory,
        filename="best-epoch{epoch:03d}-step{step:07d}",
        monitor=settings.monitor,
        mode="min",
        save_top_k=settings.save_top_k,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,  # a resumed run rewrites last.ckpt instead of adding last-v1.ckpt
    )
    callbacks = [best]
    if settings.every_n_steps or settings.every_n_minutes:
        callbacks.append(
            ModelCheckpoint(
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
