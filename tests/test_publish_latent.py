"""The latent-diffusion hook of `publish`: a DDPM on an Autoencoder's scaled latents (built here by hand, as LatentDiffusion
composes them) exports as unet + scheduler + vae/; the shipped pipeline in a fresh process (torch + diffusers only) decodes
``latents / vae.config.scaling_factor`` and gives the images of an independent sampling loop written below (≤ 1e-4)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import torch
from conftest import process_env
from fixtures_publish import CLASSES, SEED, STEPS, TOLERANCE, lightning_gen_sample, tiny_autoencoder, train_briefly, write_run

from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM
from lightning_gen.publish.pipelines import export_ddpm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOAD_AND_SAMPLE = """
import sys, json, torch
from diffusers import DiffusionPipeline
torch.set_num_threads(1)
pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
kwargs = json.loads(sys.argv[3])
generator = torch.Generator().manual_seed(kwargs.pop("seed"))
images = pipe(generator=generator, output_type="pt", **kwargs).images
torch.save({"images": images, "vae": type(pipe.vae).__name__, "scaling_factor": pipe.vae.config.scaling_factor}, sys.argv[2])
"""


class LatentDDPM(DDPM):
    """The DDPM on latents as LatentDiffusion configures it: no clipping of the predicted x0 (latents are not in [-1, 1])."""

    def schedule_config(self) -> dict[str, Any]:
        return {**super().schedule_config(), "thresholding": False, "clip_sample": False}


def latent_ddpm(kind: str, objective: str) -> LatentDDPM:
    torch.manual_seed(0)
    facts = DataFacts(image_size=4, channels=4, class_names=CLASSES)  # the autoencoder's 4 × 4 × 4 latent
    unet = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}
    extra = {"objective": "flow_matching", "min_snr_gamma": None} if objective == "flow_matching" else {}
    model = LatentDDPM(facts, conditioning=kind, unet=unet, sampling_steps=STEPS, guidance_scale=2.5, **extra)
    train_briefly(model, {"image": torch.rand(4, 4, 4, 4), "label": torch.tensor([0, 1, 2, 0])})
    return model.eval()


@torch.no_grad()
def reference_images(model: DDPM, autoencoder, labels: list[int] | None, n: int, scale: float) -> torch.Tensor:
    """Sampling written out from the definitions: noise, guided UNet calls, the scheduler's steps, decode(z / scale)."""
    scheduler = model.sampling_scheduler(model.sampler)
    scheduler.set_timesteps(STEPS)
    sample = torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(SEED))
    options = {"use_clipped_model_output": True} if model.sampler == "ddim" else {}
    for timestep in scheduler.timesteps:
        t = timestep.expand(n)
        if labels is None:
            output = model.unet(sample, t).sample
        else:
            conditional = model.unet(sample, t, class_labels=torch.tensor(labels)).sample
            unconditional = model.unet(sample, t, class_labels=torch.full((n,), len(CLASSES))).sample
            output = unconditional + model.guidance_scale * (conditional - unconditional)
        sample = scheduler.step(output, timestep, sample, **options).prev_sample
    return autoencoder.decode(sample / scale)


@pytest.mark.parametrize(("kind", "objective"), [("class", "diffusion"), ("none", "flow_matching")])
def test_latent_model_publishes_unet_scheduler_and_vae(kind, objective, tmp_path):
    autoencoder = tiny_autoencoder()
    model = latent_ddpm(kind, objective)
    folder = tmp_path / "published"
    export = export_ddpm(model, folder, vae=autoencoder.vae, scaling_factor=autoencoder.scale)
    assert export.latent and export.pipeline_class == "LightningGenConditionalPipeline"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"] and (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert autoencoder.vae.config.scaling_factor != autoencoder.scale  # the model's own module is not changed by the export

    labels = [2, 0, 1] if kind == "class" else None
    kwargs = {"seed": SEED, "num_inference_steps": STEPS, **({"class_labels": labels} if labels else {"batch_size": 3})}
    out = tmp_path / "images.pt"
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SAMPLE, str(folder), str(out), json.dumps(kwargs)],
        env=process_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(out)
    assert result["vae"] == "AutoencoderKL" and result["scaling_factor"] == pytest.approx(autoencoder.scale)
    expected = reference_images(model, autoencoder, labels, 3, autoencoder.scale)
    assert result["images"].shape == expected.shape == (3, 3, 16, 16)
    assert (result["images"] - expected).abs().max() <= TOLERANCE
    # Decoding with another scale gives other images: the scaling factor is what makes them equal.
    assert (reference_images(model, autoencoder, labels, 3, 1.0) - expected).abs().max() > 1e-3


def test_a_latent_diffusion_checkpoint_publishes_with_its_autoencoder(tmp_path):
    """`publish` on a LatentDiffusion checkpoint: unet + scheduler + the model's own autoencoder as vae/ with its latent
    scale, and the stock-diffusers folder samples exactly what `lightning_gen sample` draws with the same seed and steps."""
    from conftest import run_cli
    from fixtures_latent import write_tiny_autoencoder

    from lightning_gen.models import LatentDiffusion

    torch.manual_seed(0)
    facts = DataFacts(image_size=16, channels=3, class_names=CLASSES)
    model = LatentDiffusion(
        facts, autoencoder=str(write_tiny_autoencoder(tmp_path / "ae.ckpt")), conditioning="class",
        unet={"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}, sampling_steps=STEPS,
        guidance_scale=2.5, latent_cache_dir=str(tmp_path / "latents"),
    ).eval()  # fmt: skip
    ckpt = write_run(tmp_path / "runs", model, ema=False)
    folder = tmp_path / "published"
    run_cli("publish", "--ckpt_path", ckpt, "--out", folder)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    out = tmp_path / "images.pt"
    kwargs = {"seed": SEED, "num_inference_steps": STEPS, "class_labels": [2, 0, 1]}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SAMPLE, str(folder), str(out), json.dumps(kwargs)],
        env=process_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(out)
    assert result["scaling_factor"] == pytest.approx(model.scale)
    expected = lightning_gen_sample(ckpt, 3, condition=torch.tensor([2, 0, 1]))
    assert (result["images"] - expected).abs().max() <= TOLERANCE
