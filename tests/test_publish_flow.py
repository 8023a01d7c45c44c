"""`publish` on a flow-matching DDPM: unconditional → stock DDPMPipeline with the flow scheduler, class-conditional → the
shipped pipeline; in a fresh process (torch + diffusers only) both give `lightning_gen sample`'s images (≤ 1e-4) for the
same seed and steps, with the Euler sampler the folder holds and with Heun swapped in."""

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

from lightning_gen.facts import DataFacts
from lightning_gen.models import DDPM

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOAD_AND_SAMPLE = """
import sys, json, torch
from diffusers import DiffusionPipeline, FlowMatchHeunDiscreteScheduler
torch.set_num_threads(1)
folder, out = sys.argv[1:3]
calls = json.loads(sys.argv[3])
results = {"classes": {}}
for name, kwargs in calls.items():
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    if kwargs.pop("heun", False):
        pipe.scheduler = FlowMatchHeunDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    results["classes"][name] = [type(pipe).__name__, type(pipe.scheduler).__name__]
    generator = torch.Generator().manual_seed(kwargs.pop("seed"))
    results[name] = pipe(generator=generator, output_type="pt", **kwargs).images
torch.save(results, out)
"""


def tiny_flow(kind: str) -> DDPM:
    torch.manual_seed(0)
    facts = DataFacts(image_size=8, channels=3, class_names=CLASSES)
    unet = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}
    flow = {"objective": "flow_matching", "min_snr_gamma": None}
    model = DDPM(facts, conditioning=kind, unet=unet, sampling_steps=STEPS, guidance_scale=2.5, **flow)
    batch = {"image": torch.rand(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 0])}
    train_briefly(model, batch)
    return model.eval()


def published_flow(kind: str, root: Path) -> tuple[Path, Path]:
    ckpt = write_run(root, tiny_flow(kind))
    run_cli("publish", "--ckpt_path", ckpt, "--out", root / "published", "--num", "4")
    return ckpt, root / "published"


def pipeline_images(folder: Path, calls: dict, tmp_path: Path) -> dict:
    out = tmp_path / "images.pt"
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SAMPLE, str(folder), str(out), json.dumps(calls)],
        env=process_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


def test_unconditional_flow_is_a_stock_ddpm_pipeline_with_the_flow_scheduler(tmp_path):
    ckpt, folder = published_flow("none", tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline" and index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    assert not (folder / "pipeline.py").exists()  # nothing of lightning_gen's code runs on load
    calls = {
        "euler": {"seed": SEED, "batch_size": 3, "num_inference_steps": STEPS},
        "heun": {"seed": SEED, "batch_size": 3, "num_inference_steps": STEPS, "heun": True},
    }
    images = pipeline_images(folder, calls, tmp_path)
    assert images["classes"]["euler"] == ["DDPMPipeline", "FlowMatchEulerDiscreteScheduler"]
    assert images["classes"]["heun"] == ["DDPMPipeline", "FlowMatchHeunDiscreteScheduler"]
    expected = {sampler: lightning_gen_sample(ckpt, 3, steps=STEPS, sampler=sampler) for sampler in ("euler", "heun")}
    for sampler, reference in expected.items():
        assert images[sampler].shape == reference.shape == (3, 3, 8, 8)
        assert (images[sampler] - reference).abs().max() <= TOLERANCE, sampler
    assert (expected["euler"] - expected["heun"]).abs().max() > 1e-4  # the two samplers differ: each comparison can fail
    card = ModelCard.load(folder / "README.md")
    assert "flow-matching" in card.data.tags and "euler" in card.text
    assert "DDPMPipeline.from_pretrained" in card.text
    run_snippet(folder / "README.md", tmp_path)  # the card's copy-paste snippet runs with stock diffusers
    from PIL import Image

    assert Image.open(tmp_path / "sample.png").size == (8, 8)


def test_class_conditional_flow_pipeline_with_guidance_equals_lightning_gen_sample(tmp_path):
    ckpt, folder = published_flow("class", tmp_path)
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == "FlowMatchEulerDiscreteScheduler"
    calls = {
        "euler": {"seed": SEED, "class_labels": ["triangle", "circle", "triangle"], "guidance_scale": 3.0, "num_inference_steps": STEPS},
        "heun": {"seed": SEED, "class_labels": [1, 0], "num_inference_steps": STEPS, "heun": True},  # the model's guidance 2.5
        "null": {"seed": SEED, "batch_size": 2},
    }
    images = pipeline_images(folder, calls, tmp_path)
    expected = {
        "euler": lightning_gen_sample(ckpt, 3, torch.tensor([2, 0, 2]), steps=STEPS, guidance_scale=3.0),
        "heun": lightning_gen_sample(ckpt, 2, torch.tensor([1, 0]), steps=STEPS, sampler="heun"),
        "null": lightning_gen_sample(ckpt, 2),
    }
    for name, reference in expected.items():
        assert (images[name] - reference).abs().max() <= TOLERANCE, name
    assert (expected["euler"][0] - expected["euler"][1]).abs().max() > 1e-3  # the condition matters
