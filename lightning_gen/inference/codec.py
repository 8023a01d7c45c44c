"""The latent codec of a checkpoint for ``mix`` and the app: encode with a condition named on the command line."""

from __future__ import annotations

from lightning_gen.inference.conditions import condition_by_names
from lightning_gen.latent.codec import Codec
from lightning_gen.protocol import Generator


def make_codec(model: Generator, condition: str | None, inversion_steps: int | None = None) -> Codec:
    return Codec(model, encode_condition=condition_by_names(model, condition), steps=inversion_steps)
