"""Blending two images through a model's latent space: the work of ``mix`` and of the app's Mix tab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from lightning_gen.errors import UserError
from lightning_gen.latent.codec import Codec
from lightning_gen.latent.interpolate import Mode, interpolate

GIF_MIN_SIDE = 128  # GIF frames are enlarged (nearest neighbour) to at least this side, or 32 px images are specks
GIF_FRAME_MS = 120


@dataclass
class EncodedPair:
    """Two preprocessed images (2×C×S×S in [0, 1]) and their latents (2×…)."""

    images: torch.Tensor
    latents: torch.Tensor


def encode_pair(codec: Codec, image_a: torch.Tensor, image_b: torch.Tensor) -> EncodedPair:
    images = torch.cat([image_a, image_b]).to(codec.model.device)
    return EncodedPair(images=images, latents=codec.encode(images))


def blend(codec: Codec, pair: EncodedPair, ratios: torch.Tensor | list[float] | float, mode: Mode = "slerp") -> torch.Tensor:
    """Decoded images at each mix ratio (0 = the first image's reconstruction, 1 = the second's): K×C×S×S."""
    ratios = torch.as_tensor(ratios, dtype=torch.float32).reshape(-1)
    if ((ratios < 0) | (ratios > 1)).any():
        raise UserError(f"mix ratios must be in [0, 1], got {ratios.tolist()}.")
    latents = pair.latents
    return codec.decode(interpolate(latents[:1], latents[1:], ratios.to(latents.device), mode))


def strip_ratios(steps: int) -> torch.Tensor:
    if steps < 2:
        raise UserError(f"--steps must be at least 2 (the two reconstructions), got {steps}.")
    return torch.linspace(0.0, 1.0, steps)


def mix_strip(codec: Codec, pair: EncodedPair, steps: int = 8, mode: Mode = "slerp") -> torch.Tensor:
    """(steps + 2)×C×S×S: image A, ``steps`` decoded mixes from A's reconstruction to B's, image B."""
    mixes = blend(codec, pair, strip_ratios(steps), mode)
    return torch.cat([pair.images[:1].float(), mixes, pair.images[1:].float()])


def strip_grid(images: torch.Tensor) -> torch.Tensor:
    """One row, 1 px black gaps: the layout of every strip written by ``mix`` and ``edit``."""
    return make_grid(images.float().cpu(), nrow=len(images), padding=1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """C×H×W in [0, 1] → PIL, rounded the way torchvision's save_image rounds."""
    array = image.float().cpu().mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def write_gif(frames: torch.Tensor, path: str | Path) -> None:
    """A back-and-forth loop through ``frames`` (K×C×S×S)."""
    side = frames.shape[-1]
    scale = max(1, -(-GIF_MIN_SIDE // side))
    pictures = [to_pil(frame).resize((side * scale, side * scale), Image.Resampling.NEAREST) for frame in frames]
    loop = pictures + pictures[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    loop[0].save(path, save_all=True, append_images=loop[1:], duration=GIF_FRAME_MS, loop=0)
