"""A tiny Autoencoder checkpoint for LatentDiffusion tests and config smoke runs (random weights, saved as Lightning would)."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_gen.facts import DataFacts


def write_tiny_autoencoder(path: Path, image_size: int = 16, seed: int = 0, latent_channels: int = 4) -> Path:
    """An f = 4 Autoencoder for ``image_size`` RGB images (latent ``latent_channels`` × image_size/4 squared) at ``path``."""
    from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
    from lightning_gen.models import Autoencoder

    if path.exists():
        return path
    torch.manual_seed(seed)
    model = Autoencoder(
        DataFacts(image_size=image_size), block_out_channels=[8, 16], layers_per_block=1, latent_channels=latent_channels,
        mid_block_attention=False,
    )  # fmt: skip
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    checkpoint[CHECKPOINT_KEY] = {"model_class": "lightning_gen.models.autoencoder.Autoencoder", "data_facts": model.data_facts.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
