"""Attribute edits: an image's latent moved along attribute directions, decoded (``edit`` and the app's Edit tab)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


DEFAULT_NEIGHBOURS = 16


@dataclass(frozen=True)
class AttributeEdit:
    """What an edit adds to a latent at strength 1, per image.

    ``terms``: (towards, away, weight) — move towards attribute ``towards`` and away from ``away`` (None: from
    its absence), scaled by ``weight``. ``neighbours`` > 0: each image's own local direction (its nearest
    references, see ``Directions.local``); 0: seed 001's global mean-difference direction, the same for all.
    """

    directions: Directions
    terms: tuple[tuple[str, str | None, float], ...]
    neighbours: int = DEFAULT_NEIGHBOURS

    def offsets(self, latents: torch.Tensor) -> torch.Tensor:
        """N×latent: the offset of each latent at strength 1."""
        total = torch.zeros_like(latents)
        for towards, away, weight in self.terms:
            if not weight:
                continue
            if self.neighbours > 0 and self.directions.has_references:
                step = self.directions.local(latents, towards, away, self.neighbours)
            else:
                step = self.directions.vector(towards) - (self.directions.vector(away) if away is not None else 0)
            total = total + float(weight) * step.to(latents)
        return total


def edit_offset(
    directions: Directions,
    attribute: str | None = None,
    source: str | None = None,
    target: str | None = None,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> AttributeEdit:
    """The edit of ``attribute``, or from ``source`` to ``target`` (``--from``/``--to``)."""
    if neighbours < 0:
        raise UserError(f"--neighbours must be 0 (one global direction) or more, got {neighbours}.")
    if attribute is not None and (source is not None or target is not None):
        raise UserError("pass either --attribute, or --from and --to, not both.")
    if attribute is not None:
        directions.vector(attribute)  # checks the name and that it has a direction
        return AttributeEdit(directions, ((attribute, None, 1.0),), neighbours)
    if source is None or target is None:
        raise UserError(f"pass --attribute NAME, or --from NAME --to NAME; attributes: {', '.join(directions.names)}.")
    for name in (source, target):
        directions.vector(name)
    return AttributeEdit(directions, ((target, source, 1.0),), neighbours)


def slider_edit(directions: Directions, strengths: Mapping[str, float], neighbours: int = DEFAULT_NEIGHBOURS) -> AttributeEdit:
    """Several attributes at once (the app's sliders), each at its own strength."""
    for name in strengths:
        check_attribute(name, directions.names)
    return AttributeEdit(directions, tuple((name, None, float(strength)) for name, strength in strengths.items()), neighbours)


@torch.no_grad()
def edit_images(codec: Codec, images: torch.Tensor, edit: AttributeEdit, strengths: Sequence[float]) -> torch.Tensor:
    """N×K×C×S×S: each image decoded at each strength (0 = its reconstruction)."""
    latents = codec.encode(images)
    weights = torch.as_tensor(list(strengths), dtype=latents.dtype, device=latents.device)
    moved = latents[:, None] + weights[None, :, None] * edit.offsets(latents)[:, None]
    decoded = codec.decode(moved.flatten(0, 1))
    return decoded.view(len(images), len(strengths), *decoded.shape[1:])


def edit_strip(codec: Codec, image: torch.Tensor, edit: AttributeEdit, strengths: Sequence[float]) -> torch.Tensor:
    """(1 + K)×C×S×S: the input, then its decodes at each strength."""
    edits = edit_images(codec, image, edit, strengths)[0]
    return torch.cat([image.to(edits.device).float(), edits])


def condition_pair(model: Any, image_condition: Any, condition: Any) -> Codec:
    """A CVAE encodes with the image's own condition and decodes with ``condition`` (a swap) or, without one, the same."""
    return Codec(model, encode_condition=image_condition, decode_condition=condition if condition is not None else image_condition)
