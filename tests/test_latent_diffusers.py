"""LatentDiffusion on a diffusers AutoencoderKL folder: its scaling_factor is the scale, its encoder fills the cache,
its decoder decodes samples, the checkpoint carries it, and a wrong folder is one sentence."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import run_cli
from diffusers import AutoencoderKL, UNet2DModel
from fixtures_latent import TINY_UNET, cli_config, datamodule, fit_counting
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.errors import UserError
from lightning_gen.models import LatentDiffusion

SCALING_FACTOR = 0.5


def write_diffusers_vae(folder: Path, in_channels: int = 3, levels: int = 3, seed: int = 0) -> Path:
    """A tiny AutoencoderKL (f = 2^(levels - 1), 4 latent channels), saved as diffusers saves any model folder."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=in_channels, out_channels=in_channels, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=(8,) + (16,) * (levels - 1), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=SCALING_FACTOR, mid_block_add_attention=False,
    )  # fmt: skip
    vae.save_pretrained(folder)
    return folder


def latent_model(autoencoder: Path, cache: Path, facts) -> LatentDiffusion:
    return LatentDiffusion(
        facts, autoencoder=str(autoencoder), conditioning="class", unet=TINY_UNET, sampling_steps=2, latent_cache_dir=str(cache)
    )


def test_a_diffusers_folder_is_the_autoencoder_of_a_trained_checkpoint_that_outlives_it(tmp_path, one_torch_thread):
    dm = datamodule()
    dm.setup("fit")
    folder = write_diffusers_vae(tmp_path / "vae")
    reference = AutoencoderKL.from_pretrained(folder).eval()  # diffusers' own reading of the folder
    model = latent_model(folder, tmp_path / "cache", dm.facts)
    assert model.scale == SCALING_FACTOR and model.latent_shape == (4, 4, 4)
    counter, per_step = fit_counting(model, steps=2)
    assert per_step.during_steps == [0, 0] and counter.images == 2 * len(dm.train_set)  # encoded once, image and mirror

    batch = dm.train_set.__getitems__([2, 0, 5])
    with torch.no_grad():
        posterior = reference.encode(batch["image"] * 2 - 1).latent_dist
        mirrored = reference.encode(batch["image"].flip(-1) * 2 - 1).latent_dist
        # Evaluation diffuses scaling_factor · posterior mean of the folder's VAE.
        torch.testing.assert_close(model.to_diffusion_space(batch["image"]), posterior.mean * SCALING_FACTOR, rtol=1e-5, atol=1e-6)
        # A training step diffuses scaling_factor · (a draw from the cached posterior): the flips, then ε, by hand.
        drawn = model.clean_batch(batch, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    flip = torch.rand(3, generator=generator) < 0.5
    epsilon = torch.randn(posterior.mean.shape, generator=generator)
    mean = torch.where(flip.view(-1, 1, 1, 1), mirrored.mean, posterior.mean)
    std = torch.where(flip.view(-1, 1, 1, 1), mirrored.std, posterior.std)
    torch.testing.assert_close(drawn, (mean + std * epsilon) * SCALING_FACTOR, rtol=1e-5, atol=1e-6)

    # Sampling decodes through the folder's decoder: latents / scaling_factor, then [-1, 1] → [0, 1].
    model.eval()
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1])
    images = model.sample(2, condition=labels, initial_noise=noise, guidance_scale=1.0)
    with torch.no_grad():
        latents, _ = model._denoise(2, labels, None, None, 1.0, "ddim", initial_noise=noise)
        expected = ((reference.decode(latents / SCALING_FACTOR).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(images, expected)

    # The checkpoint carries the VAE: it samples the same images after the folder is deleted.
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "latent.ckpt")
    shutil.rmtree(folder)
    restored = load_model(tmp_path / "latent.ckpt")
    assert restored.scale == SCALING_FACTOR
    torch.testing.assert_close(restored.sample(2, condition=labels, initial_noise=noise, guidance_scale=1.0), images)


def test_the_cli_fits_on_a_folder_and_its_checkpoint_samples_without_it(tmp_path, one_torch_thread):
    folder = write_diffusers_vae(tmp_path / "vae" / "vae")  # not beside the config: that would make it a run's
    run_cli(
        "fit", "--config", cli_config(tmp_path, folder, "kl"), "--trainer.default_root_dir", tmp_path / "runs", "--trainer.max_steps", "2"
    )
    checkpoint = tmp_path / "runs/kl/version_0/checkpoints/last.ckpt"
    shutil.rmtree(tmp_path / "vae")
    assert load_model(checkpoint).scale == SCALING_FACTOR
    run_cli("sample", "--ckpt_path", checkpoint, "--num", "4", "--nrow", "2", "--out", tmp_path / "grid.png", "--seed", "1", "--steps", "2")
    assert Image.open(tmp_path / "grid.png").size == (2 * 17 + 1, 2 * 17 + 1)


def test_a_folder_that_is_not_a_fitting_autoencoderkl_is_one_sentence(tmp_path):
    facts = datamodule().facts  # 3-channel 16×16 images

    def refused(folder: Path, *expected: str) -> None:
        with pytest.raises(UserError) as error:
            latent_model(folder, tmp_path / "cache", facts)
        message = str(error.value)
        assert "\n" not in message and str(folder) in message, message
        for part in expected:
            assert part in message, message

    unet = tmp_path / "unet"  # diffusers would load this as a randomly initialised AutoencoderKL, with a warning only
    UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
    ).save_pretrained(unet)  # fmt: skip
    refused(unet, "UNet2DModel", "not an AutoencoderKL")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "without config.json")
    refused(write_diffusers_vae(tmp_path / "gray", in_channels=1), "1-channel", "3-channel")
    refused(write_diffusers_vae(tmp_path / "f32", levels=6), "downsamples by 32", "multiple of 32")
    weightless = write_diffusers_vae(tmp_path / "weightless")
    (weightless / "diffusion_pytorch_model.safetensors").unlink()
    refused(weightless, "could not be loaded")
