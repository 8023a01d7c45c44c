"""`publish` on an Autoencoder: a stock diffusers AutoencoderKL folder whose encode/decode, in a fresh process that imports
only torch and diffusers, equal lightning_gen's Autoencoder.encode/decode (≤ 1e-5 fp32), with the recorded latent scale as
``scaling_factor``; the model card's metadata and snippet."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import process_env, run_cli
from fixtures_publish import run_snippet, tiny_autoencoder, write_run
from huggingface_hub import ModelCard

from lightning_gen.checkpoints.loading import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOLERANCE = 1e-5

# What a diffusers user writes: images in [0, 1] mapped to the VAE's [-1, 1] and back.
ENCODE_DECODE = """
import sys, json, torch
from diffusers import AutoencoderKL
torch.set_num_threads(1)
vae = AutoencoderKL.from_pretrained(sys.argv[1]).eval()
images, latents = torch.load(sys.argv[2])
with torch.no_grad():
    means = vae.encode(images * 2 - 1).latent_dist.mean
    decoded = ((vae.decode(latents).sample + 1) / 2).clamp(0, 1)
torch.save({"means": means, "decoded": decoded, "scaling_factor": vae.config.scaling_factor}, sys.argv[3])
"""


def test_autoencoder_publishes_as_stock_autoencoder_kl(tmp_path):
    model = tiny_autoencoder()
    ckpt = write_run(tmp_path, model, ema=False)
    folder = tmp_path / "published"
    run_cli("publish", "--ckpt_path", ckpt, "--out", folder, "--num", "4", "--license", "mit")
    assert {"config.json", "diffusion_pytorch_model.safetensors", "README.md", "samples.png"} <= {path.name for path in folder.iterdir()}

    loaded = load_model(ckpt, "cpu")
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    latents = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    torch.save((images, latents), tmp_path / "inputs.pt")
    done = subprocess.run(
        [sys.executable, "-c", ENCODE_DECODE, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        env=process_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        expected_means, expected_decoded = loaded.encode(images), loaded.decode(latents)
    assert result["means"].shape == expected_means.shape == (3, 4, 4, 4)
    assert (result["means"] - expected_means).abs().max() <= TOLERANCE
    assert (result["decoded"] - expected_decoded).abs().max() <= TOLERANCE
    assert (expected_decoded[0] - expected_decoded[1]).abs().max() > 1e-3  # the latents matter: the comparison can fail

    # The scale recorded in the checkpoint, recomputed here by hand from the same images' posterior means.
    with torch.no_grad():
        means = model.encode(model.observed_images()).double()
    assert result["scaling_factor"] == pytest.approx(1.0 / means.std(unbiased=False).item(), rel=1e-6)
    assert result["scaling_factor"] != pytest.approx(1.0, abs=1e-3)
    assert json.loads((folder / "config.json").read_text())["_class_name"] == "AutoencoderKL"

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffusers" and card.data.license == "mit"
    assert card.data.pipeline_tag is None  # as the Hub's diffusers VAEs
    assert {"lightning_gen", "autoencoder", "diffusers:AutoencoderKL"} <= set(card.data.tags)
    assert "2 * x - 1" in card.text and f"{result['scaling_factor']:.6g}" in card.text
    run_snippet(folder / "README.md", tmp_path)
    from PIL import Image

    assert Image.open(tmp_path / "sample.png").size[0] > 16  # a 4-image grid of 16×16 reconstructions
