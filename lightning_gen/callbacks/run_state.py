"""What a checkpoint must hold to resume the *run*, not just the weights: run id, directory, RNG streams.

Lightning restores weights, optimizer, schedulers, loops and callback states, but not the random
number generators; with them restored, a resumed run draws the same noise as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.models.base import CHECKPOINT_KEY
from lightning_gen.run_dir import RunLocation
from lightning_gen.tracking.loggers import wandb_files


def capture_rng() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "cached": cached},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached"])
    )
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunState(pl.Callback):
    def __init__(self, run: RunLocation):
        self.run = run
        self._pending_rng: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault(CHECKPOINT_KEY, {}).update(
            {"run_id": self.run.run_id, "experiment": self.run.experiment, "run_directory": str(self.run.directory), "rng": capture_rng()}
        )

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending_rng = checkpoint.get(CHECKPOINT_KEY, {}).get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the sanity check, right before the first resumed batch: the point the checkpoint was taken at.
        if self._pending_rng is not None:
            restore_rng(self._pending_rng)
            self._pending_rng = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        verb = f"Resuming from {self.run.resume_from}" if self.run.resume_from else "Starting a new run"
        rank_zero_info(f"{verb}; run directory: {self.run.directory} (W&B/run id {self.run.run_id})")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        scores = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}
        lines = [
            "Final validation (EMA weights where EMA is on): "
            + ", ".join(f"{key} {value:.4g}" for key, value in sorted(scores.items())),
            f"Run directory: {self.run.directory}",
            f"  checkpoints: {self.run.checkpoints} (resume with --ckpt_path last)",
            f"  image grids: {self.run.images}",
        ]
        offline_runs = [path for path in wandb_files(self.run.directory) if path.name.startswith("offline-run")]
        if offline_runs:
            lines.append(f"  W&B offline run: {offline_runs[-1]} (upload with: wandb sync {offline_runs[-1]})")
        if not scores:
            lines.pop(0)
        if trainer.is_global_zero:
            print("\n".join(lines), flush=True)
