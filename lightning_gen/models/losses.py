"""VAE loss terms, summed per image and averaged over the batch (the convention of seeds 001, 003 and 004)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

ReconstructionLoss = Literal["mse", "bce"]


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, kind: ReconstructionLoss) -> torch.Tensor:
    """Per-image sum over pixels and channels; ``logits`` are pre-sigmoid decoder outputs."""
    if kind == "mse":
        per_pixel = F.mse_loss(torch.sigmoid(logits.float()), target.float(), reduction="none")
    else:
        per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return per_pixel.flatten(1).sum(1)


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) ‖ N(0, I)) per image, in closed form, summed over latent dimensions."""
    mean, log_var = mean.float(), log_var.float()
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1.0).flatten(1).sum(1)
