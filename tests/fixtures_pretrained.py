"""A tiny random diffusers pipeline saved the way a Hub checkpoint is laid out: the ``pretrained:`` source of the tests."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

TINY_UNET = {
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": 8,
}


def save_tiny_pipeline(
    folder: Path, image_size: int = 16, beta_schedule: str = "linear", prediction_type: str = "epsilon", num_train_timesteps: int = 1000
) -> Path:
    """``DDPMPipeline(unet, scheduler).save_pretrained(folder)`` with a random 0.2M-parameter UNet (attention at the lower level)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DModel(sample_size=image_size, **TINY_UNET)
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, prediction_type=prediction_type)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder
