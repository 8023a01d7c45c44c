"""A model from a checkpoint (``.ckpt``) or a weights snapshot (``.safetensors``), in eval mode on a device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.inference.devices import resolve_device
from lightning_gen.models.base import GenerativeModel

__all__ = ["load_model", "load_on_device"]


def load_on_device(path: str | Path, device: Any = "auto") -> GenerativeModel:
    """The model of ``path`` on ``device`` (``auto``, ``cpu``, ``cuda``, ...), with its EMA weights where the run had EMA."""
    return load_model(path, resolve_device(device))
