"""A NaN/Inf loss or gradient never reaches the weights: the step is skipped, counted and warned about.

Checked in ``on_before_optimizer_step`` (after backward and, under 16-mixed, after the grad scaler has
unscaled the gradients; before clipping and the optimizer's update). Skipping drops every gradient
(``grad = None``): torch optimizers leave a parameter without a gradient untouched, moments and step
count included — the same thing Lightning does when ``training_step`` returns None. The forward pass has
already moved BatchNorm's running statistics towards the bad batch's (NaN, for a NaN image), so a skipped
step also puts them back as they were before it: the model after a skipped step is exactly the one before
(every state_dict tensor, not only the weights — RunEndSave saves it only when all are finite). The decision is
reduced over all ranks (any rank non-finite → every rank skips), so DDP replicas stay identical. Under DDP that
costs no wait of its own: the gradients are all-reduced, the same on every rank, so their check agrees without a
collective, and each rank's loss flag is all-reduced asynchronously from before the backward pass, finished by the
optimizer step alongside DDP's own gradient all-reduce (a blocking reduction per step cost DDP on CPU several ms).
Under 16-mixed, Inf gradients are the grad scaler's business (it skips the step and lowers its scale);
only a non-finite loss counts there. After ``max_consecutive`` skipped steps in a row the run stops
(NonFiniteStop), and RunEndSave keeps last.ckpt at the last good weights.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy
from lightning.pytorch.utilities import rank_zero_warn
from torch.nn.modules.batchnorm import _NormBase

from lightning_gen.errors import UserError


class NonFiniteStop(UserError):
    """Raised on every rank at once when too many consecutive steps were non-finite."""


def running_statistics(module: torch.nn.Module) -> list[torch.Tensor]:
    """The buffers a training forward pass changes: BatchNorm's (and InstanceNorm's, when tracked) running statistics."""
    return [
        buffer
        for norm in module.modules()
        if isinstance(norm, _NormBase) and norm.track_running_stats
        for buffer in (norm.running_mean, norm.running_var, norm.num_batches_tracked)
        if buffer is not None
    ]


def gradients_all_reduced(trainer: pl.Trainer) -> bool:
    """Whether every rank holds the same, all-reduced gradients at the optimizer step (DDP; DeepSpeed partitions them)."""
    strategy = trainer.strategy
    return (
        isinstance(strategy, DDPStrategy)
        and not isinstance(strategy, DeepSpeedStrategy)
        and trainer.world_size > 1
        and dist.is_available()
        and dist.is_initialized()
    )


class NonFiniteGuard(pl.Callback):
    def __init__(self, max_consecutive: int = 20):
        if max_consecutive < 1:
            raise UserError(f"guard.max_consecutive_nonfinite is {max_consecutive}; it must be at least 1.")
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self.consecutive = 0
        self._losses: list[torch.Tensor] = []
        self._loss_flags: list[tuple[torch.Tensor, Any]] = []  # under DDP: each micro-batch's "any rank non-finite", in flight
        self._statistics: list[torch.Tensor] = []
        self._statistics_before: list[torch.Tensor] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The model is on its device and any checkpoint restored in place: these tensors are the ones every step updates.
        self._statistics = running_statistics(pl_module)
        self._statistics_before = [buffer.detach().clone() for buffer in self._statistics]

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._statistics and not self._losses:  # the first micro-batch of an optimizer step
            torch._foreach_copy_(self._statistics_before, self._statistics)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach())  # one per accumulated micro-batch; checked once, at the optimizer step
        if gradients_all_reduced(trainer):
            # Every rank calls backward as often, so every rank starts these all-reduces in the same order as DDP's own.
            flag = (~torch.isfinite(loss.detach()).all()).to(torch.float32).reshape(1)
            self._loss_flags.append((flag, dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True)))

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        finite = all(bool(torch.isfinite(loss).all()) for loss in self._losses)
        self._losses = []
        flags, self._loss_flags = self._loss_flags, []
        if flags:
            # Every rank's losses, reduced in flight; then the gradients, which are the same on every rank.
            for _, work in flags:
                work.wait()
            finite = not any(bool(flag.item()) for flag, _ in flags)
        if finite and getattr(trainer.precision_plugin, "scaler", None) is None:
            gradients = [parameter.grad for parameter in pl_module.parameters() if parameter.grad is not None]
            finite = not gradients or bool(torch.isfinite(torch.nn.utils.get_total_norm(gradients, error_if_nonfinite=False)))
        skip = not finite if flags else trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not skip:
            self.consecutive = 0
            return
        for parameter in pl_module.parameters():
            parameter.grad = None
        if self._statistics:
            with torch.no_grad():
                torch._foreach_copy_(self._statistics, self._statistics_before)
        self.skipped += 1
        self.consecutive += 1
        step = trainer.global_step + 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteStop(
                f"training stopped at step {step}: the loss or gradients were NaN/Inf in {self.consecutive} steps in a row "
                f"(each skipped, so the weights are still those of step {step - self.consecutive}, saved to last.ckpt) — "
                f"lower the learning rate, clip gradients (--trainer.gradient_clip_val) or check the data, "
                f"then resume with --ckpt_path last."
            )
        rank_zero_warn(
            f"step {step}: NaN/Inf loss or gradients, step skipped (weights unchanged); "
            f"{self.consecutive} in a row, the run stops at {self.max_consecutive}."
        )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.skipped or trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            pl_module.log("train/skipped_nonfinite", float(self.skipped), on_step=True, on_epoch=False, batch_size=1)

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)
        self.consecutive = state_dict.get("consecutive", 0)
