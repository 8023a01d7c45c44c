"""What the LatentDiffusion tests share: a tiny Autoencoder checkpoint (random weights, saved as Lightning would; also for
config smoke runs), a tiny UNet and datamodule, a fit that counts the encoder's calls per step, and a CLI config."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml
from conftest import TINY_CONFIG

from lightning_gen.data import ShapesDataModule
from lightning_gen.facts import DataFacts
from lightning_gen.models import LatentDiffusion

TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 8}


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


def datamodule() -> ShapesDataModule:
    return ShapesDataModule(num_images=40, image_size=16, batch_size=8, hflip=False)


class CountEncodes:
    """Wraps the frozen AutoencoderKL's encode; ``calls`` counts images encoded."""

    def __init__(self, model: LatentDiffusion):
        vae = model.autoencoder.vae
        self.original, self.images = vae.encode, 0
        vae.encode = self

    def __call__(self, x, *args, **kwargs):
        self.images += len(x)
        return self.original(x, *args, **kwargs)


class EncodesPerStep(pl.Callback):
    def __init__(self, counter: CountEncodes):
        self.counter, self.during_steps = counter, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = self.counter.images

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.during_steps.append(self.counter.images - self.before)


def fit_counting(model: LatentDiffusion, steps: int = 4) -> tuple[CountEncodes, EncodesPerStep]:
    counter = CountEncodes(model)
    per_step = EncodesPerStep(counter)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[per_step],
    )  # fmt: skip
    trainer.fit(model, datamodule())
    return counter, per_step


def cli_config(tmp_path: Path, autoencoder: Path, name: str) -> Path:
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"].update(max_steps=8, max_epochs=-1, check_val_every_n_epoch=1000, num_sanity_val_steps=0)
    config["model"] = {
        "class_path": "lightning_gen.models.LatentDiffusion",
        "init_args": {
            "autoencoder": str(autoencoder), "conditioning": "class", "unet": TINY_UNET, "sampling_steps": 2, "validation_steps": 2,
            "latent_cache_dir": str(tmp_path / "latents"), "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
        },
    }  # fmt: skip
    config["data"]["init_args"].update(num_images=40, max_rotation_degrees=0)
    config["tracking"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
