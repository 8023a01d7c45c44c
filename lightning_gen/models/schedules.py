"""Learning-rate schedules usable from a config (``lr_scheduler: class_path: lightning_gen.models.schedules.WarmupCosine``)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lightning_gen.errors import UserError


class RunLengthSchedule:
    """A schedule shaped by the run's length: without an explicit ``total_steps`` it gets the run's count of
    scheduler steps from the model (``trainer.estimated_stepping_batches``, or the epochs when stepped per epoch)."""

    total_steps: int | None

    def set_total_steps(self, total_steps: int) -> None:
        raise NotImplementedError


class WarmupCosine(LambdaLR, RunLengthSchedule):
    """Linear warm-up to the optimizer's lr over ``warmup_steps``, then cosine decay to ``min_lr_ratio``·lr.

    Step it every optimizer step (``scheduler_interval: step``, the default). ``total_steps`` defaults to
    the run's length (Lightning's estimate from max_steps or max_epochs, devices and gradient accumulation),
    so the rate reaches its minimum exactly as the run ends; a config may still give it, after which the
    rate stays at its minimum.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ):
        if warmup_steps < 0:
            raise UserError(f"WarmupCosine warmup_steps must be >= 0, got {warmup_steps}; fix lr_scheduler.init_args in the config.")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise UserError(f"WarmupCosine min_lr_ratio must be in [0, 1], got {min_lr_ratio}; fix lr_scheduler.init_args.")
        # Set before LambdaLR.__init__, which already evaluates the factor for step 0 (the same for any total).
        self.warmup_steps = warmup_steps
        self.total_steps = None
        self.min_lr_ratio = min_lr_ratio
        if total_steps is not None:
            self.set_total_steps(total_steps, given=True)
        super().__init__(optimizer, self.factor, last_epoch)

    def set_total_steps(self, total_steps: int, given: bool = False) -> None:
        where = "lr_scheduler.init_args.total_steps" if given else "the run's length (trainer.max_steps or max_epochs)"
        if total_steps <= 0 or self.warmup_steps > total_steps:
            raise UserError(
                f"WarmupCosine needs 0 <= warmup_steps <= total_steps and total_steps > 0, got warmup_steps={self.warmup_steps} "
                f"and total_steps={total_steps} from {where}; fix lr_scheduler.init_args or the run's length in the config."
            )
        self.total_steps = int(total_steps)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps  # never 0: the first step already learns
        if self.total_steps is None:  # step 0 before the model set the run's length
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
