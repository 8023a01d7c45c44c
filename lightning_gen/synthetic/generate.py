"""Batched generation where every image's result depends only on its own noise seed and condition.

Every generator takes its noise per image as ``sample(initial_noise=...)`` (N × its
``sampling_options().noise_shape``): latent models decode it as their latents, diffusion models
denoise it with their deterministic sampler (DDIM), whose steps add no further noise. Noise is drawn
on the CPU, so a GPU export gives the images a CPU export gives (up to float rounding). Batches are
padded to a fixed size: on CPU the arithmetic of a row depends on the batch size, and padding makes
an image's bytes independent of which other images are still missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lightning_gen.inference.sampling import sampling_kwargs
from lightning_gen.protocol import Generator


def batch_condition(model: Generator, conditions: Sequence[Any], device: torch.device) -> Any:
    """The per-image conditions of a plan as one batch condition the model reads."""
    kind = model.conditioning
    if kind == "class":
        return torch.tensor(list(conditions), dtype=torch.long, device=device)
    if kind == "attributes":
        return torch.tensor([list(vector) for vector in conditions], dtype=torch.float32, device=device)
    if kind == "text":
        return list(conditions)
    return None


class PerImageSampler:
    """Turns (noise seeds, conditions) into images with ``model``; options are ``sample``'s (steps, guidance)."""

    def __init__(self, model: Generator, options: dict[str, Any]):
        self.model = model
        declared = model.sampling_options()
        # Rejects --steps/--guidance_scale a model lacks; with the deterministic sampler (DDIM) the noise alone decides.
        self.options = declared.deterministic(sampling_kwargs(model, options))
        self.noise_shape = tuple(declared.noise_shape)  # a latent model's latents, a diffusion model's initial image noise

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        return torch.stack([torch.randn(self.noise_shape, generator=torch.Generator().manual_seed(seed)) for seed in seeds])

    @torch.no_grad()
    def images(self, seeds: Sequence[int], conditions: Sequence[Any], pad_to: int = 0) -> torch.Tensor:
        """Images in [0, 1] (N×C×H×W, on the CPU) for ``seeds[i]`` and ``conditions[i]``."""
        count = len(seeds)
        padding = max(0, pad_to - count)
        seeds = list(seeds) + [seeds[-1]] * padding
        conditions = list(conditions) + [conditions[-1]] * padding
        device = self.model.device
        noise = self.noise(seeds).to(device)
        condition = batch_condition(self.model, conditions, device)
        images = self.model.sample(len(seeds), condition=condition, initial_noise=noise, **self.options)
        return images[:count].float().clamp(0.0, 1.0).cpu()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to bytes, rounding as torchvision's save_image does."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
