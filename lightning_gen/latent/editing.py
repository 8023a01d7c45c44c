"""Attribute edits: an image's latent moved along attribute directions, decoded (``edit`` and the app's Edit tab)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from lightning_gen.errors import UserError
from lightning_gen.latent.codec import Codec
from lightning_gen.latent.directions import Directions, check_attribute


def parse_strengths(text: str) -> list[float]:
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise UserError(f"--strengths must be comma-separated numbers such as -2,-1,0,1,2, got '{text}'.") from error
    if not values:
        raise UserError("--strengths needs at least one number, e.g. -2,-1,0,1,2.")
    return values


def edit_offset(directions: Directions, attribute: str | None = None, source: str | None = None, target: str | None = None) -> torch.Tensor:
    """The unit of an edit: ``attribute``'s direction, or ``target``'s minus ``source``'s (``--from``/``--to``)."""
    if attribute is not None and (source is not None or target is not None):
        raise UserError("pass either --attribute, or --from and --to, not both.")
    if attribute is not None:
        return directions.vector(attribute)
    if source is None or target is None:
        raise UserError(f"pass --attribute NAME, or --from NAME --to NAME; attributes: {', '.join(directions.names)}.")
    for name in (source, target):
        check_attribute(name, directions.names)
    return directions.vector(target) - directions.vector(source)


@torch.no_grad()
def edit_images(codec: Codec, images: torch.Tensor, offset: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """N×K×C×S×S: each image decoded at each strength (0 = its reconstruction)."""
    latents = codec.encode(images)
    weights = torch.as_tensor(list(strengths), dtype=latents.dtype, device=latents.device)
    moved = latents[:, None] + weights[None, :, None] * offset.to(latents.device)[None, None]
    decoded = codec.decode(moved.flatten(0, 1))
    return decoded.view(len(images), len(strengths), *decoded.shape[1:])


@torch.no_grad()
def edit_with_sliders(codec: Codec, image: torch.Tensor, directions: Directions, strengths: Mapping[str, float]) -> torch.Tensor:
    """One image with several attributes applied at once (the app's sliders): 1×C×S×S."""
    latent = codec.encode(image)
    return codec.decode(latent + directions.combined(strengths).to(latent.device)[None])


def edit_strip(codec: Codec, image: torch.Tensor, offset: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """(1 + K)×C×S×S: the input, then its decodes at each strength."""
    edits = edit_images(codec, image, offset, strengths)[0]
    return torch.cat([image.to(edits.device).float(), edits])


def condition_pair(model: Any, image_condition: Any, condition: Any) -> Codec:
    """A CVAE encodes with the image's own condition and decodes with ``condition`` (a swap) or, without one, the same."""
    return Codec(model, encode_condition=image_condition, decode_condition=condition if condition is not None else image_condition)
