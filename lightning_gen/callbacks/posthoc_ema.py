"""Post-hoc EMA tracks (``--ema.post_hoc true``): power-function EMAs updated every step, snapshotted every N steps.

Each track (one per ``ema.sigma_rels``) averages the trainable floating-point parameters with
β_t = (1 - 1/t)^(γ+1) at optimizer step t, one fused lerp over the parameter list per track, as
callbacks/ema.py does; buffers and frozen weights are not averaged but copied from the model into
each snapshot (as EDM2 does). Every ``snapshot_every_n_steps`` steps rank 0 writes each track as a
weight snapshot (safetensors, bf16 by default, the step, γ and σ_rel in its metadata) into
``<run>/posthoc_ema/``, atomically. The tracks and their step go into the checkpoint, so a resumed run
continues them exactly; snapshots a killed run wrote after its last checkpoint are removed on resume
(the resumed run writes them again). lightning_gen.checkpoints.posthoc_ema rebuilds any σ_rel from them.

t counts optimizer updates, as in EDM2, not batches or trainer steps: a step whose update did not happen
(the grad scaler skipped it on overflow, or NonFiniteGuard dropped every gradient; detected by
callbacks/skipped_steps.py, the same test the ordinary EMA uses) leaves every track and t unchanged, so
the snapshots' step (and the σ_rel rebuilt from them) is the number of updates averaged in, which is below
the trainer's global step once a step was skipped. Snapshots are still written every N trainer steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info

from lightning_gen.callbacks.skipped_steps import SkippedSteps
from lightning_gen.checkpoints.posthoc_ema import (
    FOLDER,
    list_snapshots,
    power_ema_beta,
    sigma_rel_to_gamma,
    snapshot_metadata,
    snapshot_name,
)
from lightning_gen.checkpoints.snapshots import save_snapshot
from lightning_gen.checkpoints.snapshots import snapshot_metadata as model_metadata
from lightning_gen.errors import UserError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class PostHocEMA(pl.Callback):
    def __init__(self, run_directory: str | Path, sigma_rels: list[float], every_n_steps: int, dtype: str = "bfloat16"):
        sigma_rels = [float(value) for value in sigma_rels]
        if len(set(sigma_rels)) < 2:
            raise UserError(f"--ema.sigma_rels {sigma_rels} needs at least two different values to rebuild others; e.g. [0.05, 0.10].")
        if every_n_steps < 1:
            raise UserError(f"--ema.snapshot_every_n_steps must be at least 1, got {every_n_steps}.")
        self.directory = Path(run_directory) / FOLDER
        self.sigma_rels = sigma_rels
        self.gammas = [sigma_rel_to_gamma(value) for value in sigma_rels]
        self.every_n_steps = every_n_steps
        self.dtype = DTYPES[dtype]
        self._names: list[str] = []
        self._parameters: list[torch.Tensor] = []
        self._tracks: list[list[torch.Tensor]] = []
        self._step = 0  # t: optimizer updates averaged into the tracks (skipped updates do not count)
        self._trainer_step = 0  # the trainer's global step last seen (an optimizer step happened when it grows)
        self._skipped = SkippedSteps()
        self._loaded: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)):
            raise UserError(
                f"post-hoc EMA keeps full copies of the model, which {type(trainer.strategy).__name__} shards; "
                "set --ema.post_hoc false with a sharded strategy."
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The model is on its device and any checkpoint restored: these tensors are the ones every step updates.
        tracked = [(name, p) for name, p in pl_module.named_parameters() if p.requires_grad and p.is_floating_point()]
        self._names = [name for name, _ in tracked]
        self._parameters = [p.detach() for _, p in tracked]
        if self._loaded is None:
            self._tracks = [[p.clone() for p in self._parameters] for _ in self.gammas]
        else:
            self._tracks = [[track[name].to(p) for name, p in zip(self._names, self._parameters)] for track in self._loaded["tracks"]]
            self._step = int(self._loaded["step"])
            self._loaded = None
        self._trainer_step = trainer.global_step
        if trainer.is_global_zero:
            self._remove_snapshots_after(self._step)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        self._skipped.before_optimizer_step(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step <= self._trainer_step:  # no optimizer step in this batch (gradient accumulation)
            return
        self._trainer_step = step
        if not self._skipped.was_skipped(trainer):
            self._update()
        if step % self.every_n_steps == 0 and self._step > 0:  # t = 0: nothing averaged in yet, no snapshot of it
            self.save(trainer, pl_module)

    @torch.no_grad()
    def _update(self) -> None:
        step = self._step + 1
        for gamma, track in zip(self.gammas, self._tracks):
            if step == 1:
                torch._foreach_copy_(track, self._parameters)
            else:
                torch._foreach_lerp_(track, self._parameters, 1.0 - power_ema_beta(gamma, step))
        self._step = step

    def save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:  # every rank holds the same tracks; rank 0 writes
            return
        checkpoint: dict[str, Any] = {"state_dict": pl_module.state_dict()}
        pl_module.on_save_checkpoint(checkpoint)  # a model's extra state (the VAE's latent mixture), as a .ckpt gets it
        metadata = model_metadata(pl_module, "posthoc_ema", self._step)
        for sigma_rel, gamma, track in zip(self.sigma_rels, self.gammas, self._tracks):
            state = {**checkpoint["state_dict"], **dict(zip(self._names, track))}
            path = self.directory / snapshot_name(sigma_rel, self._step)
            save_snapshot(path, state, self.dtype, {**metadata, **snapshot_metadata(self._step, gamma, sigma_rel, self._names)})
        rank_zero_info(f"Saved post-hoc EMA snapshots of step {self._step} (sigma_rel {', '.join(map(str, self.sigma_rels))})")

    def _remove_snapshots_after(self, step: int) -> None:
        if not self.directory.is_dir() or not any(self.directory.glob("*.safetensors")):
            return
        for snapshot in list_snapshots(self.directory):
            if snapshot.step > step:
                snapshot.path.unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        if not self._tracks:
            return dict(self._loaded or {})
        return {
            "step": self._step,
            "sigma_rels": list(self.sigma_rels),
            "tracks": [{name: tensor.to("cpu", copy=True) for name, tensor in zip(self._names, track)} for track in self._tracks],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if [float(value) for value in state_dict["sigma_rels"]] != self.sigma_rels:
            raise UserError(
                f"the checkpoint's post-hoc EMA tracks sigma_rel {state_dict['sigma_rels']}, not {self.sigma_rels}; "
                f"resume with --ema.sigma_rels {state_dict['sigma_rels']}."
            )
        self._loaded = state_dict
