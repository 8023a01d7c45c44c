"""Autoencoder (diffusers AutoencoderKL trained here): loss, shapes, latent scale, fit, checkpoint, sample/evaluate."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli, save_checkpoint
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import Autoencoder
from lightning_gen.protocol import has_latents, is_generator

FACTS = DataFacts(image_size=16, channels=3)


def tiny(**kwargs) -> Autoencoder:
    torch.manual_seed(0)
    return Autoencoder(FACTS, block_out_channels=[8, 16], **kwargs)


def quantised_images(n: int, seed: int = 0) -> torch.Tensor:
    """Images whose values are k/255, so the uint8 copies the model keeps for the scale are exact."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), generator=generator).float() / 255


@pytest.mark.parametrize("reconstruction", ["mse", "l1"])
def test_loss_is_the_per_image_sum_of_rec_plus_kl_weight_times_kl(reconstruction):
    model = tiny(kl_weight=0.25, reconstruction=reconstruction).eval()
    x = quantised_images(3)
    with torch.no_grad():
        out = model.losses(x, sample_latent=False)
        distribution = model.vae.encode(2 * x - 1).latent_dist  # diffusers' encoder directly, not the model's wrappers
        mean, log_var = distribution.mean.double(), distribution.logvar.double()
        output = model.vae.decode(distribution.mean).sample.double()
    error = output - (2 * x.double() - 1)
    per_pixel = error**2 if reconstruction == "mse" else error.abs()
    rec = sum(float(per_pixel[i].sum()) for i in range(3)) / 3
    kl = sum(0.5 * float((mean[i] ** 2 + log_var[i].exp() - log_var[i] - 1).sum()) for i in range(3)) / 3
    assert float(out["rec"]) == pytest.approx(rec, rel=1e-5)
    assert float(out["kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(rec + 0.25 * kl, rel=1e-5)
    assert kl > 0 and 0.25 * kl > 1e-3 * rec  # the KL term is not negligible here: a wrong weight would show


@pytest.mark.parametrize(("factor", "side"), [(4, 4), (8, 2)])
def test_encode_decode_shapes_follow_latent_shape(factor, side):
    model = tiny(downsampling_factor=factor, latent_channels=3).eval()
    assert model.latent_shape == (3, side, side)
    assert is_generator(model) and has_latents(model)
    x = quantised_images(2)
    with torch.no_grad():
        z = model.encode(x)
        mean, log_var = model.posterior(x)
        assert z.shape == mean.shape == log_var.shape == (2, 3, side, side)
        assert torch.equal(z, mean)
        images = model.decode(z)
        assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1
        assert model.sample(5).shape == (5, 3, 16, 16)
    assert model.sampling_options().noise_shape == (3, side, side)


def test_configuration_mistakes_are_one_sentence():
    with pytest.raises(UserError, match="downsampling_factor"):
        Autoencoder(FACTS, block_out_channels=[8, 16], downsampling_factor=2)
    with pytest.raises(UserError, match="block_out_channels"):
        Autoencoder(FACTS, block_out_channels=[8, 16, 16, 16])  # f = 4: three levels at most
    with pytest.raises(UserError, match="not divisible"):
        Autoencoder(DataFacts(image_size=20, channels=3), block_out_channels=[8, 16], downsampling_factor=8)
    with pytest.raises(UserError, match="norm_num_groups"):
        Autoencoder(FACTS, block_out_channels=[8, 12], norm_num_groups=8)


def test_sample_decodes_unit_noise_divided_by_the_scale():
    model = tiny().eval()
    model.latent_scale.value = 2.5
    noise = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.sample(2, initial_noise=noise), model.decode(noise / 2.5))
        a = model.sample(2, generator=torch.Generator().manual_seed(1))
        b = model.sample(2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_latent_scale_is_one_over_the_std_of_the_kept_images_latents():
    model = tiny(scale_images=10).eval()
    images = quantised_images(14)
    model.observe(images[:8], torch.arange(8))
    model.observe(images[4:8], torch.arange(4, 8))  # seen again: kept once, now the most recent
    model.observe(images[8:14], torch.arange(8, 14))  # 14 distinct > 10: the 4 oldest (0 … 3) leave
    kept = images[4:14]
    model.update_latent_scale()
    with torch.no_grad():
        latents = model.vae.encode(2 * kept - 1).latent_dist.mean.double()
    expected = 1 / latents.flatten().std(unbiased=False)
    assert model.scale == pytest.approx(float(expected), rel=1e-5)
    assert abs(model.scale - 1) > 0.01


def test_a_checkpoint_stores_the_scale_of_the_weights_it_saves():
    model = tiny().eval()
    images = quantised_images(6)
    model.observe(images, torch.arange(6))
    model.update_latent_scale()
    measured = model.scale
    saved = tiny()  # other weights (as EMA ones differ from the live ones)
    with torch.no_grad():
        for parameter in saved.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        latents = saved.vae.encode(2 * images - 1).latent_dist.mean.double()
    checkpoint = {"state_dict": saved.state_dict()}
    model.on_save_checkpoint(checkpoint)
    stored = checkpoint["state_dict"]["latent_scale._extra_state"]["value"]
    assert stored == pytest.approx(float(1 / latents.flatten().std(unbiased=False)), rel=1e-5)
    assert abs(stored - measured) > 1e-3


def test_checkpoint_round_trip_keeps_weights_and_scale(tmp_path):
    model = tiny().eval()
    model.observe(quantised_images(6), torch.arange(6))
    model.update_latent_scale()
    loaded = load_model(save_checkpoint(model, tmp_path / "ae.ckpt"))
    x = quantised_images(4, seed=1)
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))
    assert loaded.scale == model.scale != 1.0


def test_perceptual_term_from_a_local_vgg16_file(tmp_path):
    from torchvision.models import vgg16

    from lightning_gen.models.perceptual import VGGPerceptual

    torch.manual_seed(0)
    weights = tmp_path / "vgg16.pth"
    torch.save(vgg16(weights=None).state_dict(), weights)  # a random-weights stand-in for the real file
    perceptual = VGGPerceptual(weights)
    a, b = quantised_images(2), quantised_images(2, seed=5)
    assert torch.allclose(perceptual(a, a), torch.zeros(2))
    distance = perceptual(a, b)
    assert distance.shape == (2,) and (distance > 0).all()
    model = tiny(perceptual_weights=str(weights), perceptual_weight=0.5).eval()
    model.on_fit_start()
    with torch.no_grad():
        out = model.losses(a, sample_latent=False)
    # the term: weight × distance per pixel, summed over the C·H·W pixels of an image, as SD adds LPIPS
    assert float(out["loss"]) == pytest.approx(float(out["rec"] + 1e-6 * out["kl"] + 0.5 * out["perceptual"] * 3 * 16 * 16), rel=1e-5)
    with pytest.raises(UserError, match="perceptual_weights"):
        VGGPerceptual(tmp_path / "missing.pth")


# -- a short fit on the built-in shapes, then the commands on its checkpoint --------------------------------
AE_CONFIG = copy.deepcopy(TINY_CONFIG)
AE_CONFIG["trainer"]["max_epochs"] = 6
AE_CONFIG["model"] = {
    "class_path": "lightning_gen.models.Autoencoder",
    "init_args": {
        "block_out_channels": [8, 16],
        "latent_channels": 4,
        "mid_block_attention": False,
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}},
    },
}
AE_CONFIG["data"]["init_args"].update(hflip=False, max_rotation_degrees=0)  # the kept images are the dataset's own


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("autoencoder")
    config = root / "ae.yaml"
    config.write_text(yaml.safe_dump(AE_CONFIG))
    run_cli("fit", "--config", config, "--trainer.default_root_dir", root / "runs")
    return root / "runs/ae/version_0/checkpoints/last.ckpt"


def shapes_datamodule() -> ShapesDataModule:
    datamodule = ShapesDataModule(**AE_CONFIG["data"]["init_args"])
    datamodule.setup("fit")
    return datamodule


def all_images(loader) -> torch.Tensor:
    return torch.cat([batch["image"] for batch in loader])


def test_fit_lowers_reconstruction_error_and_stores_the_scale(fitted, one_torch_thread):
    trained = load_model(fitted)
    torch.manual_seed(AE_CONFIG["seed_everything"])
    untrained = Autoencoder(trained.data_facts, **{k: v for k, v in AE_CONFIG["model"]["init_args"].items() if k != "optimizer"}).eval()
    datamodule = shapes_datamodule()
    validation = all_images(datamodule.val_dataloader())
    with torch.no_grad():
        error_trained = float((trained.reconstruct(validation) - validation).pow(2).mean())
        error_untrained = float((untrained.reconstruct(validation) - validation).pow(2).mean())
        # every training image (the shuffled loader drops a different last partial batch each epoch, so the run saw all)
        training = datamodule.train_set.__getitems__(list(range(len(datamodule.train_set))))["image"]
        latents = torch.cat([trained.encode(training[i : i + 32]) for i in range(0, len(training), 32)]).double()
    assert error_trained < 0.5 * error_untrained
    # the stored scale is that of the saved (EMA) weights over every training image (fewer than scale_images)
    assert trained.scale == pytest.approx(float(1 / latents.flatten().std(unbiased=False)), rel=1e-4)


def test_sample_command_on_the_checkpoint(fitted, tmp_path):
    out = tmp_path / "samples.png"
    run_cli("sample", "--ckpt_path", fitted, "--num", "4", "--nrow", "2", "--out", out, "--seed", "1")
    assert Image.open(out).size == (2 * 17 + 1, 2 * 17 + 1)


def test_evaluate_psnr_ssim_on_the_checkpoint(fitted, tmp_path):
    out = tmp_path / "scores.json"
    run_cli("evaluate", "--ckpt_path", fitted, "--metrics", "psnr,ssim", "--out", out, "--log_to_run", "false", "--device", "cpu")
    scores = {row["metric"]: row["value"] for row in json.loads(out.read_text())["scores"]}
    model = load_model(fitted)
    validation = all_images(shapes_datamodule().val_dataloader())
    with torch.no_grad():
        reconstruction = model.reconstruct(validation)
    psnr = [float(10 * math.log10(1 / (reconstruction[i] - validation[i]).pow(2).mean())) for i in range(len(validation))]
    assert scores["psnr_mean"] == pytest.approx(sum(psnr) / len(psnr), rel=1e-3)
    assert 0 < scores["ssim_mean"] < 1


def test_mix_interpolates_the_spatial_latents(fitted, tmp_path):
    import numpy as np

    images = quantised_images(2, seed=4)
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(paths[-1])
    out = tmp_path / "mix.png"
    run_cli("mix", "--ckpt_path", fitted, *paths, "--steps", "3", "--mode", "lerp", "--out", out, "--device", "cpu")
    strip = torch.from_numpy(np.asarray(Image.open(out).convert("RGB"))).permute(2, 0, 1).float() / 255
    assert strip.shape == (3, 16 + 2, 5 * 17 + 1)  # A, three mixes, B
    model = load_model(fitted)
    with torch.no_grad():
        ends = model.reconstruct(images)
        middle = model.decode(model.encode(images).mean(0, keepdim=True))[0]
    tile = lambda column: strip[:, 1:17, 1 + 17 * column : 17 * (column + 1)]  # noqa: E731
    assert torch.allclose(tile(1), ends[0], atol=1.5 / 255)  # ratio 0: A's reconstruction
    assert torch.allclose(tile(2), middle, atol=1.5 / 255)  # ratio 0.5: the decoded mean of the two latents
    assert torch.allclose(tile(3), ends[1], atol=1.5 / 255)
