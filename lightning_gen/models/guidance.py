"""Classifier-free guidance and Imagen's dynamic thresholding, as used by DDPM's sampling loop."""

from __future__ import annotations

from typing import Any

import torch


def classifier_free_guidance(conditional: torch.Tensor, unconditional: torch.Tensor, scale: float) -> torch.Tensor:
    """Ho & Salimans: ``uncond + scale·(cond − uncond)``; scale 1 is the conditional output, 0 the unconditional.

    Valid for ε- and v-prediction alike: at a fixed x_t both are affine in the predicted x0.
    """
    return unconditional + scale * (conditional - unconditional)


def guidance_active(scale: float, has_condition: bool) -> bool:
    """The second (unconditional) UNet pass is only worth its cost when it changes the result."""
    return has_condition and scale != 1.0


def thresholding_config(percentile: float | None) -> dict[str, Any]:
    """Scheduler settings for the clipping of the predicted x0 at every sampling step.

    With a percentile p, diffusers' DDPM/DDIM schedulers apply exactly Imagen's dynamic
    thresholding: s = max(1, quantile(|x0|, p)) per sample, x0 = clamp(x0, −s, s) / s — provided
    ``sample_max_value`` does not cap s, hence infinity. Without one, x0 is clipped to [−1, 1].
    """
    if percentile is None:
        return {"thresholding": False, "clip_sample": True, "clip_sample_range": 1.0}
    return {
        "thresholding": True,
        "dynamic_thresholding_ratio": percentile,
        "sample_max_value": float("inf"),
        "clip_sample": False,
    }
