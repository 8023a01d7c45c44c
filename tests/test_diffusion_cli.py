"""DDPM through the CLI, end to end on shapes: fit with validation grids, resume, sample, the offline text-encoder error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import REPO, run_cli
from PIL import Image

from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

IMAGE_SIZE = 16
TINY_CLASS_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 16}
TINY_TEXT_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fit_arguments(config: str, root: Path, unet: dict, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(REPO / "configs" / config), "--trainer.default_root_dir", str(root),
        "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--tracking.logger", "csv",
        "--model.init_args.unet", json.dumps(unet),
        "--model.init_args.sampling_steps", "3", "--model.init_args.validation_steps", "2",
        "--data.init_args.image_size", str(IMAGE_SIZE), "--data.init_args.num_images", "64",
        "--data.init_args.batch_size", "16", "--images.num_images", "4", "--images.interpolation_pairs", "2", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def class_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("class_runs")
    run_cli(*fit_arguments("shapes_ddpm.yaml", root, TINY_CLASS_UNET))
    return root


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text_runs")
    encoder = build_tiny_t5(root / "tiny_t5", shapes_captions(), d_model=16)
    run_cli(
        *fit_arguments(
            "shapes_text_ddpm.yaml", root, TINY_TEXT_UNET,
            "--model.init_args.text_encoder", str(encoder), "--model.init_args.text_cache_dir", str(root / "text_cache"),
        )
    )  # fmt: skip
    return root


def run_directory(root: Path, experiment: str) -> Path:
    versions = sorted((root / experiment).glob("version_*"))
    assert len(versions) == 1, versions
    return versions[0]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def grid_side(count: int) -> int:
    return count * (IMAGE_SIZE + 1) + 1  # make_grid's one-pixel padding


def test_class_fit_writes_checkpoint_and_condition_and_denoising_grids(class_run):
    run = run_directory(class_run, "shapes_ddpm")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # 64 shapes: 58 train images (a tenth held out), 3 full batches of 16 in the one epoch.
    assert (checkpoint["global_step"], checkpoint["epoch"]) == (3, 0)
    assert checkpoint["lightning_gen"]["model_class"] == "lightning_gen.models.ddpm.DDPM"
    rows = list((run / "images" / "class_rows").glob("*.png"))
    denoising = list((run / "images" / "denoising").glob("*.png"))
    assert len(rows) == 1 and len(denoising) == 1
    assert png_size(rows[0]) == (grid_side(4), grid_side(24))  # 4 fixed-noise columns × every one of the 24 classes
    assert png_size(denoising[0]) == (grid_side(2), grid_side(1))  # one frame per validation step


def test_resume_with_ckpt_path_last_continues_the_same_run(class_run):
    run = run_directory(class_run, "shapes_ddpm")
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    run_cli(*fit_arguments("shapes_ddpm.yaml", class_run, TINY_CLASS_UNET, "--ckpt_path", "last"), "--trainer.max_epochs", "2")
    after = torch.load(run_directory(class_run, "shapes_ddpm") / "checkpoints" / "last.ckpt", weights_only=False)
    assert after["global_step"] > before["global_step"] > 0
    assert after["lightning_gen"]["run_id"] == before["lightning_gen"]["run_id"]


def test_sample_a_class_by_name_with_guidance(class_run, tmp_path):
    checkpoint = run_directory(class_run, "shapes_ddpm") / "checkpoints" / "last.ckpt"
    out = tmp_path / "red.png"
    run_cli(
        "sample", "--ckpt_path", checkpoint, "--condition", "red circle", "--steps", "3", "--guidance_scale", "3",
        "--num", "4", "--nrow", "4", "--out", out, "--device", "cpu",
    )  # fmt: skip
    assert png_size(out) == (grid_side(4), grid_side(1))


def test_text_fit_writes_prompt_rows_and_samples_from_a_prompt(text_run, tmp_path):
    run = run_directory(text_run, "shapes_text_ddpm")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    # The caption cache holds every caption the 64 shapes serve (36 distinct), filled before the first step.
    (cache_file,) = (text_run / "text_cache").glob("*.safetensors")
    assert len(safetensors.torch.load_file(cache_file)) == 2 * 36  # an embedding and a mask each
    rows = list((run / "images" / "prompt_rows").glob("*.png"))
    assert len(rows) == 1 and png_size(rows[0])[0] == grid_side(4)
    assert len(list((run / "images" / "denoising").glob("*.png"))) == 1
    out = tmp_path / "prompt.png"
    run_cli(
        "sample", "--ckpt_path", run / "checkpoints" / "last.ckpt", "--prompt", "a large red circle",
        "--steps", "3", "--num", "2", "--nrow", "2", "--out", out, "--device", "cpu",
    )  # fmt: skip
    assert png_size(out) == (grid_side(2), grid_side(1))


def test_missing_text_encoder_is_one_sentence_naming_the_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = "google/t5-v1_1-not-downloaded"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*fit_arguments("shapes_text_ddpm.yaml", tmp_path / "runs", TINY_TEXT_UNET, "--model.init_args.text_encoder", missing))
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: ") and missing in message
    assert "Traceback" not in message
