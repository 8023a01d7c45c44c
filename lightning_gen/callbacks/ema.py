"""EMA of the weights through Lightning's own WeightAveraging, with the usual decay warm-up.

Lightning's EMAWeightAveraging uses a constant decay, so after a few hundred steps of a short
CPU run the average still mostly holds the random initialisation. The warm-up
decay_t = min(decay, (1 + t) / (10 + t)) (as in diffusers' EMAModel) fixes that.

The per-step update skips AveragedModel.update_parameters' generic walk (two module traversals,
a detach per tensor and a regrouping by dtype on every step, plus reading the step counter back
from the device, a CUDA sync): the tensor lists are gathered once when training starts and the
update is one fused lerp. AveragedModel still holds the averaged weights and its ``n_averaged``
counter, so checkpoints, resume and the validation swap are Lightning's own.

Under DDP the averaged parameters are the same on every rank by construction (same start, same
all-reduced gradients), but buffers such as BatchNorm's running statistics are updated from each
rank's own batch after DDP broadcast them, so their averages drift apart; they are taken from rank 0
whenever the average is used (validation, the end of training).

A step whose optimizer update did not happen (grad scaler overflow, or every gradient dropped by
NonFiniteGuard; detected by callbacks/skipped_steps.py, shared with PostHocEMA) is not averaged in and does
not advance the warm-up.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

from lightning_gen.callbacks.skipped_steps import SkippedSteps
from lightning_gen.compat import averaged_model
from lightning_gen.errors import UserError


def ema_rate(decay: float, warmup: bool, step: int) -> float:
    """The decay used at update number ``step`` (0-based count of updates already averaged in)."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


def ema_update_fn(decay: float, warmup: bool):
    """A ``multi_avg_fn`` for AveragedModel: one fused lerp over all tensors, as torch's get_ema_multi_avg_fn."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor | int) -> None:
        if not averaged[0].is_floating_point():
            # AveragedModel groups tensors by dtype; integer buffers (BatchNorm's num_batches_tracked) are counters.
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1.0 - ema_rate(decay, warmup, int(num_averaged)))

    return update


def _tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


class EMA(WeightAveraging):
    """Updated after every optimizer step. The checkpoint's ``state_dict`` holds the EMA weights and
    ``current_model_state`` the raw ones; resuming restores both (Lightning's WeightAveraging does that)."""

    def __init__(self, decay: float = 0.999, warmup: bool = True):
        self._update = ema_update_fn(decay, warmup)
        super().__init__(use_buffers=True, multi_avg_fn=self._update)
        self.decay = decay
        self.warmup = warmup
        self._groups: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        self._count = 0
        self._skipped = SkippedSteps()

    def setup(self, trainer: Any, pl_module: torch.nn.Module, stage: str) -> None:
        if isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy)):
            # The average is a full, unsharded copy of the model on every device: it would undo the sharding.
            raise UserError(
                f"EMA keeps a full copy of the model, which {type(trainer.strategy).__name__} shards; "
                f"set --ema.enabled false with a sharded strategy."
            )
        super().setup(trainer, pl_module, stage)

    def on_train_start(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        # The model sits on its device and any checkpoint is restored (both in place from here on),
        # so the tensors gathered now are the ones every step updates.
        average = averaged_model(self)
        assert average is not None
        # Grouped by device and dtype, as AveragedModel does: one fused lerp needs matching tensors.
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = defaultdict(lambda: ([], []))
        for averaged, current in zip(_tensors(average.module), _tensors(pl_module), strict=True):
            if isinstance(current, torch.nn.Parameter) and not current.requires_grad:
                continue  # frozen (a LoRA base UNet): its average is its value, copied once with the model
            if averaged.device != current.device:
                raise RuntimeError(
                    f"EMA keeps the average on the model's device, but a tensor is on {current.device} "
                    f"and its average on {averaged.device}."
                )
            group = groups[(averaged.device, averaged.dtype)]
            group[0].append(averaged.detach())
            group[1].append(current.detach())
        self._groups = list(groups.values())
        self._count = int(average.n_averaged)

    def on_before_optimizer_step(self, trainer: Any, pl_module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._skipped.before_optimizer_step(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: torch.nn.Module, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Lightning's rule (once per optimizer step, when should_update says so) with the cached lists.
        # The last step averaged in goes through WeightAveraging's public state_dict/load_state_dict (what it checkpoints).
        if trainer.global_step > self.state_dict()["latest_update_step"] and self.should_update(step_idx=trainer.global_step - 1):
            if not self._skipped.was_skipped(trainer):
                self._update_average()
            self.load_state_dict({"latest_update_step": trainer.global_step})

    @torch.no_grad()
    def _update_average(self) -> None:
        for averaged, current in self._groups:
            if self._count == 0:
                torch._foreach_copy_(averaged, current)  # the first update copies, as AveragedModel does
            else:
                self._update(averaged, current, self._count)
        averaged_model(self).n_averaged += 1
        self._count += 1

    def _buffers_from_rank_zero(self) -> None:
        average = averaged_model(self)
        if average is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for buffer in average.module.buffers():
            if buffer.is_floating_point():
                dist.broadcast(buffer.data, src=0)

    def on_validation_epoch_start(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self._buffers_from_rank_zero()
        super().on_validation_epoch_start(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self._buffers_from_rank_zero()
        super().on_train_end(trainer, pl_module)
