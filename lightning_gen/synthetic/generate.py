"""Batched generation where every image's result depends only on its own noise seed and condition.

Latent models decode z drawn per image (``decode`` of the protocol); diffusion models denoise an
initial noise drawn per image (``sample(initial_noise=...)``) with DDIM, whose steps add no further
noise. Noise is drawn on the CPU, so a GPU export gives the images a CPU export gives (up to float
rounding). Batches are padded to a fixed size: on CPU the arithmetic of a row depends on the batch
size, and padding makes an image's bytes independent of which other images are still missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from lightning_gen.commands.sample import sampling_kwargs
from lightning_gen.errors import UserError
from lightning_gen.protocol import has_latents
from lightning_gen.synthetic.plan import condition_kind


def batch_condition(model: Any, conditions: Sequence[Any], device: torch.device) -> Any:
    """The per-image conditions of a plan as one batch condition the model reads."""
    kind = condition_kind(model)
    if kind == "class":
        return torch.tensor(list(conditions), dtype=torch.long, device=device)
    if kind == "attributes":
        return torch.tensor([list(vector) for vector in conditions], dtype=torch.float32, device=device)
    if kind == "text":
        return list(conditions)
    return None


class PerImageSampler:
    """Turns (noise seeds, conditions) into images with ``model``; options are ``sample``'s (steps, guidance)."""

    def __init__(self, model: Any, options: dict[str, Any], example_condition: Any = None):
        self.model = model
        self.decodes_latents = has_latents(model)
        if self.decodes_latents:
            self.options = sampling_kwargs(model, options)  # rejects --steps/--guidance_scale a latent model lacks
            # The protocol exposes encode, not a latent size: one encoding of a blank image gives its shape.
            blank = torch.zeros(1, *model.image_shape, device=model.device)
            with torch.no_grad():
                self.noise_shape = tuple(model.encode(blank, batch_condition(model, [example_condition], model.device)).shape[1:])
            return
        accepted = inspect.signature(model.sample).parameters
        if "initial_noise" not in accepted:
            raise UserError(
                f"{type(model).__name__} takes no initial noise, so its images cannot be made per (seed, "
                f"index); export a CVAE or DDPM checkpoint."
            )
        if "sampler" in accepted:
            options = model.sampling_options().deterministic(options)  # deterministic given the initial noise
        self.options = sampling_kwargs(model, options)
        self.noise_shape = tuple(model.image_shape)

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
        if self.decodes_latents:
            images = self.model.decode(noise, condition)
        else:
            images = self.model.sample(len(seeds), condition=condition, initial_noise=noise, **self.options)
        return images[:count].float().clamp(0.0, 1.0).cpu()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to bytes, rounding as torchvision's save_image does."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
