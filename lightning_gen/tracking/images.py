"""Log an image grid through every active logger and keep a PNG copy in the run directory."""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import save_image


def save_grid_png(grid: torch.Tensor, directory: Path, key: str, epoch: int, step: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.rsplit("/", 1)[-1])
    path = directory / safe / f"epoch{epoch:04d}-step{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid.float().cpu(), path)
    return path


def log_grid(trainer: pl.Trainer, key: str, grid: torch.Tensor, directory: Path, caption: str | None = None) -> Path:
    """``grid`` is a 3×H×W image in [0, 1] (from torchvision.utils.make_grid)."""
    path = save_grid_png(grid, directory, key, trainer.current_epoch, trainer.global_step)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            extra = {"caption": [caption]} if caption else {}
            logger.log_image(key=key, images=[str(path)], **extra)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid.float().cpu(), global_step=trainer.global_step)
    return path
