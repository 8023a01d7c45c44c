"""LatentDiffusion: encode-once posterior cache (never the encoder in a step), its key, resume, and the commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from fixtures_latent import TINY_UNET, cli_config, datamodule, fit_counting, write_tiny_autoencoder
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.errors import UserError
from lightning_gen.models import LatentDiffusion
from lightning_gen.models.latent_cache import LatentPosteriors
from lightning_gen.protocol import has_latents, is_generator, is_invertible


def tiny_model(autoencoder: Path, cache: Path, facts) -> LatentDiffusion:
    return LatentDiffusion(
        facts, autoencoder=str(autoencoder), conditioning="class", unet=TINY_UNET, sampling_steps=2, latent_cache_dir=str(cache)
    )


def test_no_step_encodes_and_the_cache_is_reused_until_the_autoencoder_changes(tmp_path, one_torch_thread):
    dm = datamodule()
    dm.setup("fit")
    train_images = len(dm.train_set)
    first_ae = write_tiny_autoencoder(tmp_path / "ae.ckpt", seed=0)
    counter, per_step = fit_counting(tiny_model(first_ae, tmp_path / "cache", dm.facts))
    assert per_step.during_steps == [0, 0, 0, 0]  # four steps, no encoder call
    assert counter.images == 2 * train_images  # each training image and its mirror, once
    counter, per_step = fit_counting(tiny_model(first_ae, tmp_path / "cache", dm.facts))
    assert counter.images == 0 and per_step.during_steps == [0, 0, 0, 0]  # same weights: the cache is read
    other_ae = write_tiny_autoencoder(tmp_path / "other.ckpt", seed=1)
    counter, _ = fit_counting(tiny_model(other_ae, tmp_path / "cache", dm.facts))
    assert counter.images == 2 * train_images  # other weights: rebuilt
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_the_cache_holds_each_images_posterior_and_draws_mean_plus_std_times_epsilon(tmp_path, one_torch_thread):
    dm = datamodule()
    dm.setup("fit")
    model = tiny_model(write_tiny_autoencoder(tmp_path / "ae.ckpt"), tmp_path / "cache", dm.facts)
    fit_counting(model, steps=1)
    cache = model.latent_posteriors
    batch = dm.train_set.__getitems__([3, 0, 7])
    with torch.no_grad():
        mean, log_var = model.autoencoder.posterior(batch["image"])
        mirrored_mean, _ = model.autoencoder.posterior(batch["image"].flip(-1))
    moments = cache.lookup(batch["index"])
    torch.testing.assert_close(moments[:, 0, 0], mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(moments[:, 0, 1], log_var, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(moments[:, 1, 0], mirrored_mean, rtol=1e-5, atol=1e-6)
    # The draw, by hand: a flip per image (uniform < 1/2), then ε, from the same generator.
    drawn = cache.draw(batch["index"], torch.Generator().manual_seed(5), torch.device("cpu"))
    generator = torch.Generator().manual_seed(5)
    flips = torch.rand(3, generator=generator) < 0.5
    epsilon = torch.randn(mean.shape, generator=generator)
    chosen = torch.stack([moments[i, int(flips[i])] for i in range(3)])
    torch.testing.assert_close(drawn, chosen[:, 0] + torch.exp(0.5 * chosen[:, 1]) * epsilon, rtol=0, atol=0)
    # Without flips the draw is the image's own posterior only.
    order = torch.argsort(batch["index"])
    single = LatentPosteriors(moments[order, :1].clone(), batch["index"][order], None)
    z = single.draw(batch["index"][order], torch.Generator().manual_seed(2), torch.device("cpu"))
    epsilon = torch.randn(mean.shape, generator=torch.Generator().manual_seed(2))
    expected = moments[order, 0, 0] + torch.exp(0.5 * moments[order, 0, 1]) * epsilon
    torch.testing.assert_close(z, expected, rtol=0, atol=0)


def test_an_autoencoder_for_another_image_size_is_one_sentence(tmp_path):
    dm = datamodule()
    with pytest.raises(UserError) as error:
        tiny_model(write_tiny_autoencoder(tmp_path / "ae32.ckpt", image_size=32), tmp_path / "cache", dm.facts)
    message = str(error.value)
    assert "32×32" in message and "16×16" in message and "data.init_args.image_size" in message and "\n" not in message
    with pytest.raises(UserError, match="does not exist"):
        tiny_model(tmp_path / "missing.ckpt", tmp_path / "cache", dm.facts)


# -- through the CLI: resume, and the commands on a checkpoint alone ------------------------------------------------
def test_resume_equals_an_uninterrupted_run(tmp_path, one_torch_thread):
    config = cli_config(tmp_path, write_tiny_autoencoder(tmp_path / "ae.ckpt"), "latent")
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "straight")
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "split", "--trainer.max_steps", "3")
    run_cli("fit", "--config", config, "--trainer.default_root_dir", tmp_path / "split", "--ckpt_path", "last")
    straight, resumed = (
        torch.load(tmp_path / where / "latent/version_0/checkpoints/last.ckpt", weights_only=False) for where in ("straight", "split")
    )
    assert straight["global_step"] == resumed["global_step"] == 8
    for key in ("state_dict", "current_model_state"):
        for name, value in straight[key].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, resumed[key][name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory) -> Path:
    """A fitted LatentDiffusion checkpoint whose autoencoder file was deleted afterwards."""
    root = tmp_path_factory.mktemp("latent_run")
    autoencoder = write_tiny_autoencoder(root / "ae.ckpt")
    run_cli("fit", "--config", cli_config(root, autoencoder, "latent"), "--trainer.default_root_dir", root / "runs")
    autoencoder.unlink()
    return root / "runs/latent/version_0/checkpoints/last.ckpt"


def test_a_checkpoint_alone_is_a_latent_model_that_samples_decoded_images(latent_run):
    model = load_model(latent_run)
    assert is_generator(model) and has_latents(model) and is_invertible(model)
    assert model.image_shape == (3, 16, 16) and model.latent_shape == (4, 4, 4) == model.sampling_options().noise_shape
    noise = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    images = model.sample(2, condition=torch.tensor([0, 1]), initial_noise=noise, guidance_scale=1.0)
    with torch.no_grad():  # an independent reading: the DDIM loop in latent space, then the autoencoder's decoder
        latents, _ = model._denoise(2, torch.tensor([0, 1]), None, None, 1.0, "ddim", initial_noise=noise)
        expected = model.autoencoder.decode(latents / model.scale)
    torch.testing.assert_close(images, expected)
    assert images.shape == (2, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    x = images.clone()
    torch.testing.assert_close(model.encode(x), model.autoencoder.posterior(x)[0] * model.scale)


def test_sample_evaluate_export_and_mix_run_on_the_checkpoint(latent_run, tmp_path, one_torch_thread):
    run_cli("sample", "--ckpt_path", latent_run, "--num", "4", "--nrow", "2", "--out", tmp_path / "grid.png", "--seed", "1", "--steps", "2")
    assert Image.open(tmp_path / "grid.png").size == (2 * 17 + 1, 2 * 17 + 1)
    out = tmp_path / "scores.json"
    run_cli(
        "evaluate", "--ckpt_path", latent_run, "--feature_extractor", "fixtures_features.TinyFeatures", "--num", "8",
        "--batch_size", "4", "--cache_dir", tmp_path / "cache", "--metrics", "fid,psnr", "--out", out, "--log_to_run", "false",
        "--device", "cpu", "--steps", "2",
    )  # fmt: skip
    metrics = {row["metric"] for row in json.loads(out.read_text())["scores"]}
    assert "fid" in metrics and "psnr_mean" in metrics  # samples scored, and reconstructions through the autoencoder
    run_cli("export", "--ckpt_path", latent_run, "--per_class", "2", "--out", tmp_path / "export", "--steps", "2")
    rows = [json.loads(line) for line in (tmp_path / "export/metadata.jsonl").read_text().splitlines()]
    classes = load_model(latent_run).condition_vocabulary
    assert sorted(row["class_name"] for row in rows) == sorted(list(classes) * 2)
    photos = []
    for index, colour in enumerate(((200, 40, 40), (40, 40, 200))):
        photos.append(tmp_path / f"photo{index}.png")
        Image.new("RGB", (16, 16), colour).save(photos[-1])
    run_cli("mix", "--ckpt_path", latent_run, *photos, "--steps", "3", "--out", tmp_path / "mix.png", "--device", "cpu")
    assert Image.open(tmp_path / "mix.png").size == (5 * 17 + 1, 16 + 2)


def test_latent_flow_matching_trains_on_cached_latents_with_the_straight_path_and_samples(tmp_path, one_torch_thread):
    """objective: flow_matching in the latent space: the loss is the velocity MSE on the cached latents, the sampler is
    the flow Euler one, and sampling decodes images."""
    dm = datamodule()
    dm.setup("fit")
    model = LatentDiffusion(
        dm.facts, autoencoder=str(write_tiny_autoencoder(tmp_path / "ae.ckpt")), conditioning="class", unet=TINY_UNET,
        sampling_steps=8, latent_cache_dir=str(tmp_path / "cache"), objective="flow_matching", min_snr_gamma=None,
    )  # fmt: skip
    counter, per_step = fit_counting(model, steps=2)
    assert per_step.during_steps == [0, 0]  # flow matching reads the same cache: no encoder call in a step
    options = model.sampling_options()
    assert options.deterministic_sampler == "euler" and options.noise_shape == model.latent_shape
    batch = dm.train_set.__getitems__([0, 1])
    clean = model.to_diffusion_space(batch["image"])  # the scaled posterior means
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    times = torch.tensor([0.25, 0.75])
    noisy, unet_times, target = model.training_pair(clean, noise, times)
    expected = (1 - times.view(-1, 1, 1, 1)) * clean + times.view(-1, 1, 1, 1) * noise  # the straight path
    torch.testing.assert_close(noisy, expected)
    torch.testing.assert_close(target, noise - clean)  # the velocity
    torch.testing.assert_close(unet_times, times * model.num_train_timesteps)
    model.eval()
    images = model.sample(2, torch.tensor([0, 1]), torch.Generator().manual_seed(1), steps=4)
    assert images.shape == (2, *model.image_shape) and 0.0 <= images.min() and images.max() <= 1.0
