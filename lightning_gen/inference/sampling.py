"""The sampling options a command passes (``--steps``, ``--guidance_scale``, ``--sampler``, ``--prior``), checked
against what the model's ``sampling_options()`` declares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_gen.protocol import SAMPLING_OPTION_NAMES, Generator


def options_of(args: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling options in parsed arguments (None where a command has no such flag or it was not given)."""
    return {key: args.get(key) for key in SAMPLING_OPTION_NAMES}


def sampling_kwargs(model: Generator, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that are set, for ``model.sample``; one sentence naming a flag the model does not take."""
    return model.sampling_options().given(options, type(model).__name__)
