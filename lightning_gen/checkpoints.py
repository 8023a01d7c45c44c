"""Load a model from a lightning_gen checkpoint alone (class, hyperparameters, data facts, EMA weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lightning_gen.errors import UserError
from lightning_gen.models.base import GenerativeModel, model_class_from_checkpoint
from lightning_gen.weight_snapshots import load_weight_snapshot


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass --ckpt_path with a .ckpt file from a run's checkpoints/ folder.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise UserError(f"could not read checkpoint {path} ({type(error).__name__}: {error}); pass another --ckpt_path.") from error


def load_model(path: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """The checkpoint's ``state_dict`` holds the EMA weights when EMA was on (Lightning's WeightAveraging puts them there)."""
    if Path(path).suffix == ".safetensors":  # a weights-only snapshot (lightning_gen.weight_snapshots)
        return load_weight_snapshot(path, device)
    checkpoint = load_checkpoint_file(path)
    try:
        model_class = model_class_from_checkpoint(checkpoint)
    except (KeyError, ImportError, AttributeError) as error:
        raise UserError(f"{path} was not written by lightning_gen (no model class recorded: {error}); pass a checkpoint from a lightning_gen run.") from error
    hyperparameters = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    model = model_class(**hyperparameters)
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
