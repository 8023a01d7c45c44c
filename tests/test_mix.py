"""`mix`: user images preprocessed like the training images, strips framed by the inputs and their
reconstructions, VAE / CVAE / DDPM (DDIM inversion), slerp maths, and the one-sentence errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, run_process
from latent_checkpoints import cvae, ddpm, train_tiny, write_photo
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import CelebADataModule, ShapesDataModule
from lightning_gen.data.image_cache import decode_image
from lightning_gen.data.preprocess import Preprocessing, load_user_image
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.latent.codec import Codec
from lightning_gen.latent.interpolate import interpolate, slerp
from lightning_gen.latent.mixing import blend, encode_pair, to_pil

SIDE = 16
TILE = SIDE + 1  # strips have 1-pixel gaps


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_torch_thread) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mix")
    return {
        "vae": train_tiny(root, "vae"),
        "cvae": train_tiny(root, "cvae", model=cvae("class")),
        "ddpm": train_tiny(root, "ddpm", model=ddpm()),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("photos")
    # Different sizes, aspect ratios and formats: the command must take any.
    return write_photo(root / "a.jpg", (50, 40), (230, 30, 30)), write_photo(root / "b.png", (64, 90), (30, 60, 240))


def tiles(path: Path, count: int) -> list[np.ndarray]:
    strip = np.asarray(Image.open(path).convert("RGB"))
    assert strip.shape == (TILE + 1, count * TILE + 1, 3)
    return [strip[1 : 1 + SIDE, 1 + i * TILE : 1 + i * TILE + SIDE] for i in range(count)]


def as_uint8(image: torch.Tensor) -> np.ndarray:
    return np.asarray(to_pil(image[0] if image.dim() == 4 else image))


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1  # within 1/255


def test_slerp_by_hand():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    middle = slerp(a, b, 0.5)
    assert torch.allclose(middle, torch.tensor([[2**-0.5, 2**-0.5]]))  # on the unit circle, not at (0.5, 0.5)
    path = interpolate(a, b, torch.tensor([0.0, 1 / 3, 1.0]))
    assert torch.allclose(path[1], torch.tensor([np.cos(np.pi / 6), np.sin(np.pi / 6)], dtype=torch.float32))
    assert torch.equal(path[0], a[0]) and torch.allclose(path[2], b[0], atol=1e-7)
    assert torch.allclose(interpolate(a, b, torch.tensor([0.5]), "lerp"), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel latents: the straight line


def test_user_images_are_preprocessed_like_the_training_images(tmp_path):
    """The CelebA datamodule's 148-px centre crop travels in its facts; the command applies the cache's own function."""
    datamodule = CelebADataModule(root=str(tmp_path), image_size=SIDE, crop_size=148)
    assert Preprocessing.of(datamodule.facts) == datamodule.preprocessing
    photo = tmp_path / "face.jpg"
    face = Image.new("RGB", (178, 218), (0, 0, 255))
    face.paste((200, 150, 0), (15, 35, 163, 183))  # the central 148×148 crop; blue only outside it
    face.save(photo, quality=95)
    expected = decode_image(photo, datamodule.preprocessing)
    assert torch.equal(load_user_image(photo, datamodule.facts)[0].mul(255).round().byte(), torch.from_numpy(expected.copy()))
    # Without the crop the blue border would enter the image.
    uncropped = load_user_image(photo, DataFacts(image_size=SIDE))
    assert uncropped[0, 2, 0, SIDE // 2] > 0.9 and load_user_image(photo, datamodule.facts)[0, 2, 0, SIDE // 2] < 0.1


def test_checkpoints_without_preprocessing_facts_still_load():
    old = {"image_size": 32, "channels": 3, "class_names": ["a"], "attribute_names": [], "has_captions": False}
    facts = DataFacts.coerce(old)
    assert facts.crop_size is None and facts.resize_filter == "bicubic"
    assert DataFacts.coerce(DataFacts(image_size=8, crop_size=6).to_dict()) == DataFacts(image_size=8, crop_size=6)
    assert ShapesDataModule(image_size=8).facts.crop_size is None


def test_vae_strip_has_inputs_and_reconstructions_at_both_ends(runs, photos, tmp_path):
    out, gif = tmp_path / "strip.png", tmp_path / "mix.gif"
    run_cli("mix", "--ckpt_path", runs["vae"], *photos, "--steps", "5", "--out", out, "--gif", gif)
    shown = tiles(out, 7)
    model = load_model(runs["vae"])
    inputs = [load_user_image(photo, model.data_facts) for photo in photos]
    with torch.no_grad():
        reconstructions = [model.reconstruct(image) for image in inputs]
    assert close(shown[0], as_uint8(inputs[0])) and close(shown[-1], as_uint8(inputs[1]))
    assert close(shown[1], as_uint8(reconstructions[0])) and close(shown[-2], as_uint8(reconstructions[1]))
    with torch.no_grad():
        latents = [model.encode(image) for image in inputs]
        middle = model.decode(slerp(latents[0], latents[1], 0.5))  # ratios 0, ¼, ½, ¾, 1
    assert not torch.allclose(latents[0], latents[1])
    assert close(shown[3], as_uint8(middle))
    frames = Image.open(gif)
    assert frames.n_frames == 2 * 5 - 2 and frames.size[0] >= 128


def test_lerp_middle_decodes_the_mean_latent(runs, photos):
    model = load_model(runs["vae"])
    codec = Codec(model)
    pair = encode_pair(codec, *(load_user_image(photo, model.data_facts) for photo in photos))
    with torch.no_grad():
        expected = model.decode(pair.latents.mean(0, keepdim=True))
    assert torch.allclose(blend(codec, pair, 0.5, "lerp"), expected, atol=1e-6)


def test_cvae_mixes_under_the_given_condition(runs, photos, tmp_path):
    out = tmp_path / "cvae.png"
    run_cli("mix", "--ckpt_path", runs["cvae"], *photos, "--steps", "3", "--condition", "red circle", "--out", out)
    shown = tiles(out, 5)
    model = load_model(runs["cvae"])
    condition = model.condition_from_names(["red circle"], 1)
    with torch.no_grad():
        expected = model.reconstruct(load_user_image(photos[0], model.data_facts), condition)
    assert close(shown[1], as_uint8(expected))
    result = run_process("mix", "--ckpt_path", runs["cvae"], *photos, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "needs a condition" in result.stderr


def test_ddpm_mixes_ddim_inverted_noises(runs, photos, tmp_path):
    out = tmp_path / "ddpm.png"
    run_cli("mix", "--ckpt_path", runs["ddpm"], *photos, "--steps", "3", "--inversion_steps", "4", "--out", out)
    shown = tiles(out, 5)
    model = load_model(runs["ddpm"])
    image = load_user_image(photos[0], model.data_facts)
    noise = model.invert(image, steps=4)
    assert noise.shape == image.shape and not torch.allclose(noise, image * 2 - 1)
    with torch.no_grad():
        regenerated = model.sample(1, steps=4, guidance_scale=1.0, sampler="ddim", initial_noise=noise)
    assert close(shown[1], as_uint8(regenerated))


def test_ddim_inversion_is_exact_for_a_known_noise_predictor():
    """With a UNet that predicts v for a fixed clean image, inversion must land on that image's exact noise."""
    from lightning_gen.models import DDPM

    model = DDPM(
        DataFacts(image_size=8),
        unet={"block_out_channels": [8, 16], "layers_per_block": 1},
        prediction_type="epsilon",
        dynamic_threshold_percentile=None,
    )
    clean = torch.rand(1, 3, 8, 8) * 2 - 1
    noise = torch.randn(1, 3, 8, 8)
    alphas = model.noise_schedule.alphas_cumprod

    class Oracle(torch.nn.Module):  # predicts the ε that maps x_t back to ``clean`` at any t
        def forward(self, sample, timestep, **_):
            a = alphas[int(timestep[0])]
            return type("Out", (), {"sample": (sample - a.sqrt() * clean) / (1 - a).sqrt()})

    model.unet = Oracle()
    inverted = model.invert((clean + 1) / 2, steps=5)
    # Every DDIM step keeps x0 = clean, so the final noise is x_T of the deterministic path: exact back again.
    regenerated = model.sample(1, steps=5, guidance_scale=1.0, sampler="ddim", initial_noise=inverted)
    assert torch.allclose(regenerated, (clean + 1) / 2, atol=1e-4)
    del noise


def test_unreadable_file_is_one_sentence(runs, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    result = run_process("mix", "--ckpt_path", runs["vae"], photos[0], broken, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "could not be read as an image" in result.stderr and "Traceback" not in result.stderr
    result = run_process("mix", "--ckpt_path", runs["vae"], photos[0], tmp_path / "missing.png", "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_a_model_that_cannot_encode_is_one_sentence():
    from lightning_gen.models import Judge

    judge = Judge(DataFacts(image_size=SIDE, class_names=("a", "b")), channels=(8, 16))
    with pytest.raises(UserError, match="has no way to encode"):
        Codec(judge)
