"""Augmentation on whole batches of tensors, on the device the batch already lives on.

Randomness comes from a generator seeded by (seed, global step, DDP rank), so the augmentations of a
resumed run equal those of an uninterrupted one, and each rank augments its images differently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lightning_gen.seeding import AUGMENTATION, derived_generator, process_rank


def augment_batch(images: torch.Tensor, generator: torch.Generator, hflip: bool = True, max_rotation_degrees: float = 0.0) -> torch.Tensor:
    """Random horizontal flips (p = 0.5) and rotations uniform in ±max_rotation_degrees, per image."""
    batch = images.shape[0]
    if hflip:
        flip = (torch.rand(batch, generator=generator, device=images.device) < 0.5).nonzero().flatten()
        images[flip] = images[flip].flip(-1)  # only the chosen images are copied
    if max_rotation_degrees > 0:
        angles = (torch.rand(batch, generator=generator, device=images.device) * 2 - 1) * math.radians(max_rotation_degrees)
        cos, sin = torch.cos(angles), torch.sin(angles)
        zeros = torch.zeros_like(cos)
        theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        # Reflection padding keeps the corners filled with image content instead of black wedges.
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        images = images.clamp_(0.0, 1.0)  # bilinear resampling can overshoot by rounding
    return images


def step_generator(seed: int, step: int, device: torch.device, rank: int | None = None) -> torch.Generator:
    """The augmentation generator of a training step; ``rank`` defaults to this process's DDP rank."""
    return derived_generator(device, seed, AUGMENTATION, process_rank() if rank is None else rank, step)
