"""Learning-rate schedules usable from a config (``lr_scheduler: class_path: lightning_gen.models.schedules.WarmupCosine``)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lightning_gen.errors import UserError


class WarmupCosine(LambdaLR):
    """Linear warm-up to the optimizer's lr over ``warmup_steps``, then cosine decay to ``min_lr_ratio``·lr.

    Step it every optimizer step (``scheduler_interval: step``, the default). After ``total_steps``
    the rate stays at its minimum.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ):
        if warmup_steps < 0 or total_steps <= 0 or warmup_steps > total_steps:
            raise UserError(
                f"WarmupCosine needs 0 <= warmup_steps <= total_steps and total_steps > 0, got warmup_steps={warmup_steps}, "
                f"total_steps={total_steps}; fix lr_scheduler.init_args in the config."
            )
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise UserError(f"WarmupCosine min_lr_ratio must be in [0, 1], got {min_lr_ratio}; fix lr_scheduler.init_args.")
        # Set before LambdaLR.__init__, which already evaluates the factor for step 0.
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self.factor, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps  # never 0: the first step already learns
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
