"""JudgeScore on every kind of DDPM: refused at setup when it cannot score, prompts for text models."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import TINY_CONFIG, run_cli, save_checkpoint

from lightning_gen.data import ShapesDataModule
from lightning_gen.models import Judge

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8}


@pytest.fixture(scope="module")
def judge_ckpt(tmp_path_factory) -> Path:
    judge = Judge(ShapesDataModule(image_size=16).facts, channels=(8, 16), hidden=8)
    return save_checkpoint(judge, tmp_path_factory.mktemp("judge") / "judge.ckpt")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> str:
    from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

    return str(build_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny_t5", shapes_captions(), d_model=16))


def judged_fit(tmp_path: Path, judge_ckpt: Path, model_args: dict, **judge_args: object) -> Path:
    config = copy.deepcopy(TINY_CONFIG)
    config["trainer"]["max_epochs"] = 1
    config["data"]["init_args"]["num_images"] = 40
    config["model"] = {
        "class_path": "lightning_gen.models.DDPM",
        "init_args": {"unet": TINY_UNET, "sampling_steps": 2, "validation_steps": 2, **model_args},
    }
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning_gen.callbacks.judge_score.JudgeScore",
            "init_args": {"judge_ckpt": str(judge_ckpt), "num_samples": 6, **judge_args},
        }
    ]
    path = tmp_path / "judged.yaml"
    path.write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", path, "--trainer.default_root_dir", tmp_path / "runs")
    return tmp_path / "runs" / "judged" / "version_0"


def test_an_unconditional_ddpm_is_refused_before_training(judge_ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        judged_fit(tmp_path, judge_ckpt, {"conditioning": "none"})
    assert exit_info.value.code == 2 and "is not conditional" in capsys.readouterr().err
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # refused at setup, not after an epoch


def test_a_text_ddpm_needs_a_prompt_template(judge_ckpt, tiny_t5, tmp_path, capsys):
    text = {"conditioning": "text", "text_encoder": tiny_t5, "max_text_length": 8, "text_cache_dir": str(tmp_path / "cache")}
    with pytest.raises(SystemExit) as exit_info:
        judged_fit(tmp_path, judge_ckpt, text)
    assert exit_info.value.code == 2 and "prompt_template" in capsys.readouterr().err
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_a_text_ddpm_is_judged_through_class_prompts(judge_ckpt, tiny_t5, tmp_path):
    text = {"conditioning": "text", "text_encoder": tiny_t5, "max_text_length": 8, "text_cache_dir": str(tmp_path / "cache")}
    run = judged_fit(tmp_path, judge_ckpt, text, prompt_template="a large {name}")
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "val/judge_overall" in header and "val/judge_class/red circle" in header
