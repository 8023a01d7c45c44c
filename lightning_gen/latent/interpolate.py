"""Paths between two latents: linear (lerp) or spherical (slerp).

Written by hand (a few lines) because torch has lerp but no slerp; slerp keeps the norm of
Gaussian latents (and of DDIM-inverted noises) where lerp would shrink it midway.
"""

from __future__ import annotations

from typing import Literal

import torch

Mode = Literal["slerp", "lerp"]
PARALLEL_COSINE = 0.9995  # nearly parallel latents: slerp's sin(θ) → 0, lerp is then the same path


def slerp(start: torch.Tensor, end: torch.Tensor, weight: torch.Tensor | float) -> torch.Tensor:
    """Per row (dim 0) spherical interpolation; ``weight`` is a scalar or one value per row, in [0, 1]."""
    flat_start, flat_end = start.flatten(1).double(), end.flatten(1).double()
    weight = torch.as_tensor(weight, dtype=torch.float64, device=start.device).reshape(-1, 1)
    cosine = torch.nn.functional.cosine_similarity(flat_start, flat_end, dim=1).clamp(-1.0, 1.0)[:, None]
    angle = torch.arccos(cosine)
    sine = torch.sin(angle).clamp_min(1e-12)
    spherical = (torch.sin((1 - weight) * angle) * flat_start + torch.sin(weight * angle) * flat_end) / sine
    linear = torch.lerp(flat_start, flat_end, weight)
    mixed = torch.where(cosine.abs() > PARALLEL_COSINE, linear, spherical)
    return mixed.to(start.dtype).view(-1, *start.shape[1:])


def interpolate(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor, mode: Mode = "slerp") -> torch.Tensor:
    """Latents at each of ``weights`` (K values) between ``start`` and ``end`` (1×… each): K×…"""
    if mode not in ("slerp", "lerp"):
        raise ValueError(f"unknown interpolation mode {mode!r}")
    count = len(weights)
    starts, ends = start.expand(count, *start.shape[1:]), end.expand(count, *end.shape[1:])
    if mode == "lerp":
        return torch.lerp(starts, ends, weights.to(start.dtype).view(-1, *[1] * (start.dim() - 1)))
    return slerp(starts, ends, weights)
