"""The denoising UNets of DDPM, all built by diffusers: a small default, the Imagen base preset, one builder.

``UNet2DModel`` serves unconditional and class-conditional models (the class embedding is added to
the timestep embedding); ``UNet2DConditionModel`` serves text models (cross-attention on the
caption's T5 embeddings). A config's ``model.unet`` dict overrides the defaults key by key; the
sizes that come from the data (image size, channels, classes, text width) are filled in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from lightning_gen.errors import UserError

Conditioning = Literal["none", "class", "text"]
FROM_DATA = ("sample_size", "in_channels", "out_channels", "num_class_embeds", "cross_attention_dim")


def small_unet(conditioning: Conditioning) -> dict[str, Any]:
    """About 1.1M parameters (1.4M for text) at 32×32: three levels, attention at the lowest resolution only."""
    return {
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        # UNet2DModel reads attention_head_dim as the width of a head (64 / 32 = 2 heads);
        # UNet2DConditionModel reads it as the number of heads (4 heads of 16).
        "attention_head_dim": 4 if conditioning == "text" else 32,
    }


def imagen_base_unet() -> dict[str, Any]:
    """Seed 002's Imagen base UNet (dim 128, dim_mults 1,2,4,8, resnet blocks 2,4,8,8, 8 heads) in diffusers blocks.

    Differences diffusers' blocks impose: each up level has ``layers_per_block + 1`` resnets
    (9, 9, 5, 3 from the lowest resolution up) instead of Imagen's mirrored counts; attention heads
    are 8 of width channels/8 (128 at the lowest level) rather than Imagen's 8 × 64; Imagen's pooled
    text embedding added to the time embedding is left out. Self- and cross-attention sit only at the
    lowest resolution (the last down level, the middle and the first up level), as in the seed.
    About 1.0B parameters with T5-large (1024-wide) text embeddings.

    In a YAML config::

        model:
          class_path: lightning_gen.models.DDPM
          init_args:
            conditioning: text
            text_encoder: google/t5-v1_1-large
            unet:
              block_out_channels: [128, 256, 512, 1024]
              layers_per_block: [2, 4, 8, 8]
              down_block_types: [DownBlock2D, DownBlock2D, DownBlock2D, CrossAttnDownBlock2D]
              up_block_types: [CrossAttnUpBlock2D, UpBlock2D, UpBlock2D, UpBlock2D]
              mid_block_type: UNetMidBlock2DCrossAttn
              attention_head_dim: 8
              norm_num_groups: 32
    """
    return {
        "block_out_channels": (128, 256, 512, 1024),
        "layers_per_block": (2, 4, 8, 8),  # the installed diffusers takes one count per level for UNet2DConditionModel
        "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "attention_head_dim": 8,  # UNet2DConditionModel reads this as the number of heads
        "norm_num_groups": 32,
    }


def lowest_resolution_attention(levels: int, conditioning: Conditioning) -> dict[str, Any]:
    """Block types for ``levels`` levels with (cross-)attention only at the lowest resolution."""
    if conditioning == "text":
        attention_down, attention_up = "CrossAttnDownBlock2D", "CrossAttnUpBlock2D"
    else:
        attention_down, attention_up = "AttnDownBlock2D", "AttnUpBlock2D"
    return {
        "down_block_types": ("DownBlock2D",) * (levels - 1) + (attention_down,),
        "up_block_types": (attention_up,) + ("UpBlock2D",) * (levels - 1),
    }


def _as_tuples(config: Mapping[str, Any]) -> dict[str, Any]:
    # YAML gives lists; diffusers stores configs and is happiest with tuples.
    return {key: tuple(value) if isinstance(value, list) else value for key, value in config.items()}


def unet_config(
    conditioning: Conditioning,
    overrides: Mapping[str, Any] | None,
    image_size: int,
    channels: int,
    num_classes: int = 0,
    cross_attention_dim: int | None = None,
) -> dict[str, Any]:
    overrides = _as_tuples(overrides or {})
    fixed = sorted(set(overrides) & set(FROM_DATA))
    if fixed:
        raise UserError(f"model.unet sets {', '.join(fixed)}, which come from the data and the text encoder; remove them from the config.")
    config = {**small_unet(conditioning), **overrides}
    levels = len(config["block_out_channels"])
    for key, value in lowest_resolution_attention(levels, conditioning).items():
        config.setdefault(key, value)
    for key in ("down_block_types", "up_block_types"):
        if len(config[key]) != levels:
            raise UserError(
                f"model.unet.{key} has {len(config[key])} entries but block_out_channels has {levels} levels; "
                f"give one block type per level (or leave the types out to get attention at the lowest level only)."
            )
    if image_size % 2 ** (levels - 1):
        raise UserError(
            f"image size {image_size} cannot be halved {levels - 1} times by model.unet's {levels} levels; "
            f"use fewer block_out_channels or an image size divisible by {2 ** (levels - 1)}."
        )
    if conditioning != "text" and not isinstance(config["layers_per_block"], int):
        raise UserError(
            f"model.unet.layers_per_block {config['layers_per_block']} gives one count per level, which only the text "
            f"UNet (UNet2DConditionModel) accepts; use a single integer for conditioning '{conditioning}'."
        )
    config.update(sample_size=image_size, in_channels=channels, out_channels=channels)
    if conditioning == "class":
        config["num_class_embeds"] = num_classes + 1  # the extra row is the learned null class of guidance
    if conditioning == "text":
        config["cross_attention_dim"] = cross_attention_dim
    return config


def build_unet(conditioning: Conditioning, config: dict[str, Any]) -> nn.Module:
    unet_class = UNet2DConditionModel if conditioning == "text" else UNet2DModel
    try:
        return unet_class(**config)
    except (TypeError, ValueError) as error:
        raise UserError(f"model.unet is not a valid {unet_class.__name__} configuration ({error}); fix the model.unet entries.") from error
