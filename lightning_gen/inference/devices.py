"""``--device``: ``auto`` → cuda when a GPU is there, else cpu; an unavailable GPU refused in one sentence."""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse import Namespace

from lightning_gen.errors import UserError


def resolve_device(device: Any) -> str:
    """``auto`` → cuda when a GPU is there, else cpu; accepts parsed arguments with a ``device`` key."""
    if isinstance(device, (Namespace, dict)):
        device = device.get("device", "auto")
    device = device or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked but no CUDA GPU is visible; pass --device cpu or auto.")
    return str(device)
