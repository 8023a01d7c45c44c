"""Whether an optimizer step's update actually happened, for the callbacks that average weights (EMA, PostHocEMA).

Under 16-mixed the grad scaler skips the update when the gradients overflow (and lowers its scale exactly then),
and NonFiniteGuard drops every gradient of a non-finite step. Averaging the unchanged weights in again would pull
the average towards them and advance its step count, as if a step had been trained.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.precision import MixedPrecision


def grad_scaler(trainer: Any) -> torch.amp.GradScaler | None:
    """The run's GradScaler (16-mixed on CUDA), or None."""
    plugin = trainer.precision_plugin
    scaler = plugin.scaler if isinstance(plugin, MixedPrecision) else None
    return scaler if scaler is not None and scaler.is_enabled() else None


class SkippedSteps:
    """Call ``before_optimizer_step`` from a callback's ``on_before_optimizer_step`` (which runs after NonFiniteGuard's
    check and the scaler's unscale_, before its step and update), then ``was_skipped`` once after the step."""

    def __init__(self) -> None:
        self._no_gradients = False  # the step's gradients were all dropped (NonFiniteGuard)
        self._scale_before: float | None = None  # the grad scaler's scale before the step's update

    def before_optimizer_step(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self._no_gradients = all(parameter.grad is None for parameter in pl_module.parameters())
        scaler = grad_scaler(trainer)
        self._scale_before = scaler.get_scale() if scaler is not None else None

    def was_skipped(self, trainer: Any) -> bool:
        """No update happened: every gradient dropped, or the scaler skipped it (it lowers its scale exactly then)."""
        no_gradients, scale_before = self._no_gradients, self._scale_before
        self._no_gradients, self._scale_before = False, None  # read once per optimizer step
        if no_gradients:
            return True
        scaler = grad_scaler(trainer) if scale_before is not None else None
        return scaler is not None and scaler.get_scale() < scale_before
