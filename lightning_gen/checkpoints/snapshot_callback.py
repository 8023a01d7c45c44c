"""Periodic weights-only snapshots (EMA weights, bf16 safetensors) beside the one full last.ckpt.

For a big model a periodic *full* checkpoint (raw + EMA weights + Adam moments, fp32) is 16 bytes a
parameter; a bf16 EMA snapshot is 2 — what keeps the Imagen preset's history on a Colab Drive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.checkpoints.snapshots import save_snapshot, snapshot_metadata
from lightning_gen.config.settings import SnapshotSettings

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def inference_state_dict(trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, Any], str]:
    """The EMA weights when an EMA callback runs (through its public on_save_checkpoint, as a .ckpt gets them), else the raw ones.

    Then the model's own on_save_checkpoint, as Lightning calls it after the callbacks': the VAE writes its current latent
    mixture over the averaged copy's (extra state, not averaged)."""
    checkpoint: dict[str, Any] = {"state_dict": pl_module.state_dict()}
    averaging = [callback for callback in trainer.callbacks if isinstance(callback, WeightAveraging)]
    for callback in averaging:
        callback.on_save_checkpoint(trainer, pl_module, checkpoint)
    pl_module.on_save_checkpoint(checkpoint)
    return checkpoint["state_dict"], "ema" if averaging and "current_model_state" in checkpoint else "raw"


class WeightSnapshots(pl.Callback):
    def __init__(self, directory: Path, settings: SnapshotSettings):
        self.directory = Path(directory)
        self.settings = settings
        self._last_step = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.settings.every_n_steps
        step = trainer.global_step
        if every and step > self._last_step and step % every == 0:
            self._last_step = step
            self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Path:
        path = self.directory / f"snapshot-step{trainer.global_step:07d}.safetensors"
        if trainer.is_global_zero:  # every rank holds the same weights; rank 0 writes
            state_dict, weights = inference_state_dict(trainer, pl_module)
            save_snapshot(path, state_dict, DTYPES[self.settings.dtype], snapshot_metadata(pl_module, weights, trainer.global_step))
            self._remove_old()
            rank_zero_info(f"Saved {weights} weight snapshot {path}")
        return path

    def _remove_old(self) -> None:
        if self.settings.keep <= 0:
            return
        snapshots = sorted(self.directory.glob("snapshot-step*.safetensors"))
        for old in snapshots[: -self.settings.keep]:
            old.unlink(missing_ok=True)
