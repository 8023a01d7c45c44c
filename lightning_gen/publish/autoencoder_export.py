"""The Autoencoder as a stock diffusers ``AutoencoderKL`` folder: ``config.json`` + ``diffusion_pytorch_model.safetensors``.

``AutoencoderKL.from_pretrained(folder)`` loads it; its ``config.scaling_factor`` is the model's recorded latent
scale (1 / std of the training images' posterior means), so ``latents * vae.config.scaling_factor`` has unit
variance, as Stable Diffusion's VAEs. The one convention to mind: lightning_gen's images are in [0, 1], diffusers'
VAEs take and return [-1, 1] — ``Autoencoder.encode(x) == vae.encode(2x - 1).latent_dist.mean`` and
``Autoencoder.decode(z) == ((vae.decode(z).sample + 1) / 2).clamp(0, 1)``.

The same ``AutoencoderKL`` (``autoencoder_kl``) is the ``vae/`` component of a latent diffusion pipeline.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from diffusers import AutoencoderKL

from lightning_gen.models.autoencoder import Autoencoder

AUTOENCODER_CLASS = "AutoencoderKL"


@dataclass(frozen=True)
class AutoencoderExport:
    """What was written (for the model card)."""

    folder: Path
    scaling_factor: float
    scale_step: int  # the optimizer step whose weights the scale was measured with (-1: never measured)
    latent_shape: tuple[int, ...]


def autoencoder_kl(vae: AutoencoderKL, scaling_factor: float) -> AutoencoderKL:
    """A CPU fp32 copy of ``vae`` whose config records ``scaling_factor`` (the model's own module is left as it is)."""
    exported = copy.deepcopy(vae).float().cpu().eval()
    exported.register_to_config(scaling_factor=float(scaling_factor))
    return exported


def export_autoencoder(model: Autoencoder, folder: str | Path) -> AutoencoderExport:
    folder = Path(folder)
    autoencoder_kl(model.vae, model.scale).save_pretrained(folder, safe_serialization=True)
    return AutoencoderExport(folder, float(model.scale), int(model.latent_scale.step), tuple(model.latent_shape))


def autoencoder_snippet(location: str, export: AutoencoderExport, image_shape: tuple[int, int, int]) -> str:
    """Python that loads the folder with stock diffusers, encodes and decodes as lightning_gen's Autoencoder does."""
    channels, height, width = image_shape
    return "\n".join([
        "import torch",
        "from diffusers import AutoencoderKL",
        "from torchvision.utils import save_image",
        "",
        f"vae = AutoencoderKL.from_pretrained({json.dumps(location)}).eval()",
        f"images = torch.rand(4, {channels}, {height}, {width})  # N×C×H×W in [0, 1], lightning_gen's range",
        "with torch.no_grad():",
        "    latents = vae.encode(images * 2 - 1).latent_dist.mean  # diffusers' VAEs work in [-1, 1]; = Autoencoder.encode",
        "    unit = latents * vae.config.scaling_factor  # unit variance on the training images: what latent diffusion sees",
        "    reconstructions = ((vae.decode(unit / vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)  # = Autoencoder.decode",
        'save_image(reconstructions, "sample.png")',
    ])  # fmt: skip
