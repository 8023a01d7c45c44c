"""EMA of the weights through Lightning's own WeightAveraging, with the usual decay warm-up.

Lightning's EMAWeightAveraging uses a constant decay, so after a few hundred steps of a short
CPU run the average still mostly holds the random initialisation. The warm-up
decay_t = min(decay, (1 + t) / (10 + t)) (as in diffusers' EMAModel) fixes that.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def ema_update_fn(decay: float, warmup: bool):
    """A ``multi_avg_fn`` for AveragedModel: one fused lerp over all tensors, as torch's get_ema_multi_avg_fn."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            # AveragedModel groups tensors by dtype; integer buffers (BatchNorm's num_batches_tracked) are counters.
            torch._foreach_copy_(averaged, current)
            return
        step = float(num_averaged)
        rate = min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay
        torch._foreach_lerp_(averaged, current, 1.0 - rate)

    return update


class EMA(WeightAveraging):
    """Updated after every optimizer step. The checkpoint's ``state_dict`` holds the EMA weights and
    ``current_model_state`` the raw ones; resuming restores both (Lightning's WeightAveraging does that)."""

    def __init__(self, decay: float = 0.999, warmup: bool = True):
        super().__init__(use_buffers=True, multi_avg_fn=ema_update_fn(decay, warmup))
        self.decay = decay
        self.warmup = warmup
