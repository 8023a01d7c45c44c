"""`publish`: a tiny trained DDPM (unconditional, class, text) → diffusers pipeline in a fresh process → the same images as
lightning_gen's sampling (max abs diff ≤ 1e-4); a VAE/CVAE → huggingface_hub folder → identical reconstructions; the model card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import process_env, run_cli
from fixtures_publish import CLASSES, SEED, STEPS, TOLERANCE, lightning_gen_sample, run_snippet, train_briefly, write_run
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.facts import DataFacts
from lightning_gen.models import CVAE, DDPM, VAE
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["a large red circle", "a small blue square"]

# Run in a fresh interpreter that imports only diffusers and torch: what a user of the published folder has.
LOAD_AND_SAMPLE = """
import sys, json, torch
from diffusers import DDIMPipeline, DDPMPipeline, DDPMScheduler, DiffusionPipeline
folder, kind, out = sys.argv[1:4]
calls = json.loads(sys.argv[4])
results = {}
for name, kwargs in calls.items():
    if kind == "none":
        pipe = DDIMPipeline.from_pretrained(folder)
        if kwargs.pop("ancestral", False):
            pipe = DDPMPipeline(unet=pipe.unet, scheduler=DDPMScheduler.from_config(pipe.scheduler.config))
    else:
        pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(kwargs.pop("seed"))
    results[name] = pipe(generator=generator, output_type="pt", **kwargs).images
torch.save(results, out)
"""


def tiny_ddpm(kind: str, root: Path, sampler: str = "ddim") -> DDPM:
    torch.manual_seed(0)
    facts = DataFacts(image_size=8, channels=3, class_names=CLASSES, has_captions=kind == "text")
    unet = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 2 if kind == "text" else 16}
    extra = {}
    if kind == "text":
        encoder = build_tiny_t5(root / "tiny_t5", shapes_captions(), d_model=16)
        extra = {"text_encoder": str(encoder), "text_cache_dir": str(root / "text_cache"), "max_text_length": 8}
    model = DDPM(facts, conditioning=kind, unet=unet, sampling_steps=STEPS, sampler=sampler, guidance_scale=2.5, **extra)
    batch = {"image": torch.rand(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 0]), "caption": PROMPTS * 2}
    train_briefly(model, batch)
    return model.eval()


def pipeline_images(folder: Path, kind: str, calls: dict, tmp_path: Path) -> dict[str, torch.Tensor]:
    out = tmp_path / f"{kind}-images.pt"
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SAMPLE, str(folder), kind, str(out), json.dumps(calls)],
        env=process_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """kind → (checkpoint, published folder) for the three DDPM kinds."""
    found = {}
    for kind in ("none", "class", "text"):
        root = tmp_path_factory.mktemp(f"publish_{kind}")
        scores = [{"metric": "fid", "subject": "samples", "value": 123.4, "data": "shapes val", "generated": 64, "real": 64, "seed": 0,
                   "extractor": "inception", "note": ""}] if kind == "class" else None  # fmt: skip
        ckpt = write_run(root, tiny_ddpm(kind, root), scores=scores)
        prompt = ["--prompt", PROMPTS[0]] if kind == "text" else []
        run_cli("publish", "--ckpt_path", ckpt, "--out", root / "published", "--num", "4", "--license", "mit", *prompt)
        found[kind] = (ckpt, root / "published")
    return found


def test_unconditional_ddim_and_ddpm_pipelines_equal_lightning_gen_sample(published, tmp_path):
    ckpt, folder = published["none"]
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "DDIMPipeline"
    calls = {
        "ddim": {"seed": SEED, "batch_size": 3, "num_inference_steps": STEPS, "eta": 0.0, "use_clipped_model_output": True},
        "ddpm": {"seed": SEED, "batch_size": 3, "num_inference_steps": STEPS, "ancestral": True},
    }
    images = pipeline_images(folder, "none", calls, tmp_path)
    for sampler in ("ddim", "ddpm"):
        expected = lightning_gen_sample(ckpt, 3, steps=STEPS, sampler=sampler)
        assert images[sampler].shape == expected.shape == (3, 3, 8, 8)
        assert (images[sampler] - expected).abs().max() <= TOLERANCE, sampler


def test_class_pipeline_with_guidance_equals_lightning_gen_sample(published, tmp_path):
    ckpt, folder = published["class"]
    calls = {
        "names": {"seed": SEED, "class_labels": ["triangle", "circle", "triangle"], "guidance_scale": 3.0, "num_inference_steps": STEPS},
        "defaults": {"seed": SEED, "class_labels": [1, 0]},  # the model's own guidance scale (2.5) and steps from the folder
        "null": {"seed": SEED, "batch_size": 2},
    }
    images = pipeline_images(folder, "class", calls, tmp_path)
    expected = {
        "names": lightning_gen_sample(ckpt, 3, torch.tensor([2, 0, 2]), steps=STEPS, guidance_scale=3.0),
        "defaults": lightning_gen_sample(ckpt, 2, torch.tensor([1, 0])),
        "null": lightning_gen_sample(ckpt, 2),
    }
    for name, reference in expected.items():
        assert (images[name] - reference).abs().max() <= TOLERANCE, name
    assert (expected["names"][0] - expected["names"][1]).abs().max() > 1e-3  # the condition matters: the test can fail


def test_text_pipeline_with_guidance_equals_lightning_gen_sample(published, tmp_path):
    ckpt, folder = published["text"]
    assert {"text_encoder", "tokenizer", "null_text", "unet", "scheduler"} <= {path.name for path in folder.iterdir()}
    calls = {
        "guided": {"seed": SEED, "prompt": PROMPTS, "guidance_scale": 4.0, "num_inference_steps": STEPS},
        "unguided": {"seed": SEED, "prompt": PROMPTS[1], "guidance_scale": 1.0},
        "null": {"seed": SEED, "batch_size": 2},
    }
    images = pipeline_images(folder, "text", calls, tmp_path)
    expected = {
        "guided": lightning_gen_sample(ckpt, 2, PROMPTS, steps=STEPS, guidance_scale=4.0),
        "unguided": lightning_gen_sample(ckpt, 1, [PROMPTS[1]], guidance_scale=1.0),
        "null": lightning_gen_sample(ckpt, 2),
    }
    for name, reference in expected.items():
        assert (images[name] - reference).abs().max() <= TOLERANCE, name
    assert (expected["guided"] - expected["null"]).abs().max() > 1e-3


def test_ema_weights_by_default_raw_weights_on_request(published, tmp_path):
    ckpt, folder = published["class"]
    checkpoint = torch.load(ckpt, weights_only=True)
    exported = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    run_cli("publish", "--ckpt_path", ckpt, "--out", tmp_path / "raw", "--raw_weights", "true", "--num", "1")
    raw = load_file(tmp_path / "raw" / "unet" / "diffusion_pytorch_model.safetensors")
    key = "conv_in.weight"
    assert torch.equal(exported[key], checkpoint["state_dict"][f"unet.{key}"])
    assert torch.equal(raw[key], checkpoint["current_model_state"][f"unet.{key}"])
    assert not torch.equal(raw[key], exported[key])


def test_model_card_metadata_parses_and_names_the_run(published):
    _, folder = published["class"]
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffusers"
    assert card.data.pipeline_tag == "unconditional-image-generation"
    assert card.data.license == "mit"
    assert "lightning_gen" in card.data.tags and "class-conditional-image-generation" in card.data.tags
    assert "| fid | samples | 123.4 | 64 | 64 | 0 | shapes val | inception |" in card.text  # evaluate's recorded score
    assert "class_path: lightning_gen.models.DDPM" in card.text and "optimizer steps: 2" in card.text
    assert (folder / "samples.png").is_file()
    text_card = ModelCard.load(published["text"][1] / "README.md")
    assert text_card.data.pipeline_tag == "text-to-image"


def test_model_card_snippet_runs(published, tmp_path):
    _, folder = published["class"]
    run_snippet(folder / "README.md", tmp_path)
    from PIL import Image

    assert Image.open(tmp_path / "sample.png").size == (8, 8)


def fitted_vae(kind: str) -> VAE:
    torch.manual_seed(0)
    facts = DataFacts(image_size=16, channels=3, class_names=CLASSES)
    if kind == "cvae":
        model = CVAE(facts, channels=(8, 16), latent_dim=4, variant="v2")
    else:
        model = VAE(facts, channels=(8, 16), latent_dim=4, prior="gmm", gmm_components=2, prior_fit_images=32)
        with torch.no_grad():  # the mixture a validation epoch would fit, on these images' codes
            model.latent_prior.fit(model.encode(torch.rand(32, 3, 16, 16)))
    return model.eval()


@pytest.mark.parametrize("kind", ["vae", "cvae"])
def test_vae_round_trip_gives_identical_reconstructions(kind, tmp_path):
    ckpt = write_run(tmp_path, fitted_vae(kind), ema=False)
    run_cli("publish", "--ckpt_path", ckpt, "--out", tmp_path / "published", "--num", "4")
    folder = tmp_path / "published"
    assert {"config.json", "model.safetensors", "README.md"} <= {path.name for path in folder.iterdir()}
    check = """
import sys, torch
from lightning_gen.publish import PublishedModel
torch.set_num_threads(1)  # as the test process: the same reduction order, so the same bits
model = PublishedModel.from_pretrained(sys.argv[1])
images = torch.load(sys.argv[2])
condition = torch.tensor([0, 2, 1]) if model.model.conditioning != "none" else None
torch.save({"reconstructions": model.reconstruct(images, condition),
            "samples": model.sample(3, condition, torch.Generator().manual_seed(1))}, sys.argv[3])
"""
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    torch.save(images, tmp_path / "images.pt")
    done = subprocess.run([sys.executable, "-c", check, str(folder), str(tmp_path / "images.pt"), str(tmp_path / "out.pt")],
                          env=process_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = torch.load(tmp_path / "out.pt")
    model = load_model(ckpt)
    condition = torch.tensor([0, 2, 1]) if kind == "cvae" else None
    with torch.no_grad():
        assert torch.equal(result["reconstructions"], model.reconstruct(images, condition))
    # The VAE's fitted mixture travels too: its samples equal the checkpoint's (a standard-normal prior would not).
    assert torch.equal(result["samples"], model.sample(3, condition, torch.Generator().manual_seed(1)))
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "lightning_gen"
    run_snippet(folder / "README.md", tmp_path)


def test_refusals_are_one_sentence(published, tmp_path, capsys):
    ckpt, folder = published["class"]
    vae_ckpt = write_run(tmp_path, fitted_vae("cvae"), ema=False)
    for args, words in [
        (("--ckpt_path", ckpt, "--out", folder), "already holds files"),
        (("--ckpt_path", vae_ckpt, "--out", tmp_path / "x", "--raw_weights", "true"), "drop --raw_weights"),
    ]:
        with pytest.raises(SystemExit):
            run_cli("publish", *args)
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()
