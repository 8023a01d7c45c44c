"""Tiny checkpoints for the latent-space tests (mix, edit, app): trained for one short epoch through the CLI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from conftest import TINY_CONFIG, run_cli
from PIL import Image

TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1}


def train_tiny(root: Path, name: str, model: dict[str, Any] | None = None, data: dict[str, Any] | None = None, epochs: int = 1) -> Path:
    """Fits a tiny model (the conftest VAE unless ``model`` is given) and returns its last.ckpt."""
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"]["max_epochs"] = epochs
    config["tracking"]["name"] = name
    config["ema"] = {"enabled": False}
    if model is not None:
        config["model"] = model
    if data is not None:
        config["data"] = data
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", path, "--trainer.default_root_dir", root / "runs")
    return root / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"


def cvae(condition: str = "class") -> dict[str, Any]:
    return {"class_path": "lightning_gen.models.CVAE", "init_args": {"channels": [8, 16], "latent_dim": 8, "conditioning": condition}}


def ddpm() -> dict[str, Any]:
    return {"class_path": "lightning_gen.models.DDPM", "init_args": {"unet": TINY_UNET, "sampling_steps": 4, "validation_steps": 2}}


def write_photo(path: Path, size: tuple[int, int], colour: tuple[int, int, int], background=(30, 30, 30)) -> Path:
    """A photo-like input of any size: a coloured disc off-centre on a dark background."""
    image = Image.new("RGB", size, background)
    from PIL import ImageDraw

    width, height = size
    ImageDraw.Draw(image).ellipse((width * 0.2, height * 0.25, width * 0.7, height * 0.75), fill=colour)
    image.save(path)
    return path
