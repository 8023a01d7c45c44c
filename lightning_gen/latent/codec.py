"""One encode/decode pair per checkpoint, whatever the model: a VAE's posterior mean and decoder, or a
diffusion model's DDIM inversion and deterministic DDIM sampling. ``mix``, ``edit`` and the app use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lightning_gen.errors import UserError
from lightning_gen.protocol import has_latents, is_invertible


@dataclass
class Codec:
    """``encode`` maps images in [0, 1] to latents, ``decode`` maps them back, both under fixed conditions.

    Args:
        model: a model of the protocol with latents (``encode``/``decode``) or ``invert``.
        encode_condition: the condition the images are encoded with (a CVAE's image condition).
        decode_condition: the condition decoded with (a CVAE: another one swaps it); defaults to encode_condition.
        steps: DDIM steps of inversion and sampling (diffusion models; None: the model's default).
    """

    model: Any
    encode_condition: Any = None
    decode_condition: Any = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if not (has_latents(self.model) or is_invertible(self.model)):
            raise UserError(
                f"{type(self.model).__name__} in this checkpoint has no way to encode an image (no encoder, no inversion); "
                "pass a VAE, β-VAE, CVAE or DDPM checkpoint."
            )
        if self.decode_condition is None:
            self.decode_condition = self.encode_condition

    @property
    def is_diffusion(self) -> bool:
        return not has_latents(self.model)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.model.device)
        if self.is_diffusion:
            return self.model.invert(images, self.encode_condition, steps=self.steps)
        return self.model.encode(images, self.encode_condition)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.is_diffusion:
            # The deterministic sampler (DDIM, flow Euler) without guidance: the reverse of the inversion's path.
            options = self.model.sampling_options().deterministic({"steps": self.steps, "guidance_scale": 1.0})
            return self.model.sample(len(latents), condition=self.decode_condition, initial_noise=latents, **options).float()
        return self.model.decode(latents, self.decode_condition).float()


def condition_by_names(model: Any, names: str | None, flag: str = "--condition") -> Any:
    """The model's condition for comma-separated class or attribute names; None when no names are given."""
    if names is None or not names.strip():
        return None
    build = getattr(model, "condition_from_names", None)
    if build is None:
        raise UserError(f"{type(model).__name__} in this checkpoint is unconditional; drop {flag}.")
    return build([name.strip() for name in names.split(",") if name.strip()], 1)
