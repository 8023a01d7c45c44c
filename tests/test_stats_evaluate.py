"""The stats and evaluate commands, and the JudgeScore callback, in-process through lightning_gen.cli.main."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli
from conftest import save_checkpoint as save
from fixtures_awa2 import write_awa2
from fixtures_folders import image_folder_with_splits

from lightning_gen.data import ShapesDataModule
from lightning_gen.models import CVAE, Judge

FACTS = ShapesDataModule(image_size=16).facts


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    torch.manual_seed(0)
    generator = CVAE(FACTS, condition="class", channels=(8, 16), latent_dim=4)
    judge = Judge(FACTS, channels=(8, 16), hidden=8)
    return save(generator, root / "cvae.ckpt"), save(judge, root / "judge.ckpt")


def test_stats_counts_classes_and_attributes_of_a_config(tmp_path, capsys):
    root = tmp_path / "Animals_with_Attributes2"
    write_awa2(root)
    config = {
        "data": {
            "class_path": "lightning_gen.data.AwA2DataModule",
            "init_args": {
                "root": str(root),
                "classes": ["horse", "bat"],
                "attributes": ["black", "white"],
                "image_size": 8,
                "cache_dir": str(tmp_path / "cache"),
            },
        }
    }
    (tmp_path / "awa2.yaml").write_text(yaml.safe_dump(config))
    run_cli("stats", "--config", tmp_path / "awa2.yaml")
    out = capsys.readouterr().out
    assert "6 images" in out and "classes (2):" in out and "attributes (2):" in out
    # The fixture's matrix is (class + attribute) % 2: horse and bat (rows 1 and 5) are black, not white.
    assert [line.split()[:2] for line in out.splitlines() if line.strip().startswith(("black", "white"))] == [
        ["black", "6"],
        ["white", "0"],
    ]
    assert "least common: white (0); most common: black (6)" in out


def test_stats_of_an_unlabelled_dataset_exits_2(tmp_path, capsys):
    config = {"data": {"class_path": "lightning_gen.data.CatFacesDataModule", "init_args": {"root": str(tmp_path / "none")}}}
    (tmp_path / "cats.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        run_cli("stats", "--config", tmp_path / "cats.yaml")
    assert exit_info.value.code == 2 and "Cat faces" in capsys.readouterr().err


def test_evaluate_prints_and_writes_scores(checkpoints, tmp_path, capsys):
    generator, judge = checkpoints
    run_cli(
        "evaluate",
        "--ckpt_path",
        generator,
        "--judge",
        judge,
        "--num",
        48,
        "--group_names",
        "colour,shape",
        "--out",
        tmp_path / "scores.json",
    )
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert {"overall", "class/red circle", "class/cyan cross", "group/colour", "group/shape"} <= set(scores)
    assert len([key for key in scores if key.startswith("class/")]) == 24  # 48 samples spread over 24 classes
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    assert "group/colour" in capsys.readouterr().out


def test_evaluate_rejects_an_unconditional_generator(checkpoints, tmp_path, capsys):
    _, judge = checkpoints
    with pytest.raises(SystemExit) as exit_info:
        run_cli("evaluate", "--ckpt_path", judge, "--judge", judge)
    assert exit_info.value.code == 2 and "not conditional" in capsys.readouterr().err


def test_judge_score_callback_logs_judge_accuracy(checkpoints, tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {"class_path": "lightning_gen.models.CVAE", "init_args": {"condition": "class", "channels": [8, 16], "latent_dim": 4}}
    config["trainer"]["max_epochs"] = 1
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning_gen.callbacks.judge_score.JudgeScore",
            "init_args": {"judge_ckpt": str(checkpoints[1]), "num_samples": 24},
        }
    ]
    (tmp_path / "judged.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", tmp_path / "judged.yaml", "--trainer.default_root_dir", tmp_path / "runs")
    metrics = (tmp_path / "runs" / "judged" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "val/judge_overall" in metrics and "val/judge_class/red circle" in metrics


def test_evaluate_a_class_conditional_ddpm_with_sampling_options(checkpoints, tmp_path, capsys):
    from lightning_gen.models import DDPM

    _, judge = checkpoints
    torch.manual_seed(0)
    ddpm = DDPM(FACTS, conditioning="class", unet={"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8})
    generator = save(ddpm, tmp_path / "ddpm.ckpt")
    run_cli(
        "evaluate",
        "--ckpt_path",
        generator,
        "--judge",
        judge,
        "--num",
        24,
        "--steps",
        2,
        "--guidance_scale",
        3,
        "--out",
        tmp_path / "scores.json",
    )
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert len([key for key in scores if key.startswith("class/")]) == 24
    assert "steps 2, guidance_scale 3.0" in capsys.readouterr().out


def test_evaluate_rejects_sampling_options_a_cvae_does_not_take(checkpoints, capsys):
    generator, judge = checkpoints
    with pytest.raises(SystemExit) as exit_info:
        run_cli("evaluate", "--ckpt_path", generator, "--judge", judge, "--num", 4, "--steps", 5)
    assert exit_info.value.code == 2 and "does not take --steps" in capsys.readouterr().err


def test_evaluate_a_text_model_through_class_prompts(checkpoints, tmp_path, capsys):
    from lightning_gen.models import DDPM
    from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

    _, judge = checkpoints
    encoder = build_tiny_t5(tmp_path / "t5", shapes_captions())
    ddpm = DDPM(
        FACTS,
        conditioning="text",
        text_encoder=str(encoder),
        text_cache_dir=str(tmp_path / "cache"),
        max_text_length=8,
        unet={"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "attention_head_dim": 2},
    )
    generator = save(ddpm, tmp_path / "text.ckpt")
    with pytest.raises(SystemExit):
        run_cli("evaluate", "--ckpt_path", generator, "--judge", judge, "--num", 4, "--steps", 2)
    assert "--prompt_template" in capsys.readouterr().err
    run_cli(
        "evaluate",
        "--ckpt_path",
        generator,
        "--judge",
        judge,
        "--num",
        24,
        "--steps",
        2,
        "--prompt_template",
        "a large {name}",
        "--out",
        tmp_path / "scores.json",
    )
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert len([key for key in scores if key.startswith("class/")]) == 24


class MeanFeatures(torch.nn.Module):
    """A feature extractor for tests: the per-channel means and standard deviations (N×6)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def test_evaluate_split_test_names_the_test_split_and_its_size(tmp_path, capsys):
    root = image_folder_with_splits(tmp_path / "folder", {"train": 4, "val": 2, "test": 5})
    data = {
        "class_path": "lightning_gen.data.ImageFolderDataModule",
        "init_args": {"root": str(root), "image_size": 16, "cache_dir": str(tmp_path / "cache")},
    }
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": data}))
    torch.manual_seed(0)
    from lightning_gen.models import VAE

    checkpoint = save(VAE(FACTS, channels=(8, 16), latent_dim=4), tmp_path / "vae.ckpt")
    common = (
        "--ckpt_path",
        checkpoint,
        "--config",
        tmp_path / "data.yaml",
        "--metrics",
        "fid",
        "--num",
        6,
        "--log_to_run",
        "false",
        "--feature_extractor",
        "test_stats_evaluate.MeanFeatures",
        "--cache_dir",
        tmp_path / "features",
    )
    run_cli("evaluate", *common, "--split", "test", "--out", tmp_path / "test.json")
    out = capsys.readouterr().out
    assert "Real features of ImageFolderDataModule test: 10 images" in out and "no test split" not in out
    scores = json.loads((tmp_path / "test.json").read_text())["scores"]  # fid of samples and of reconstructions
    assert [(row["data"], row["real"]) for row in scores] == [("ImageFolderDataModule test", 10)] * 2  # 5 test images a class
    run_cli("evaluate", *common, "--split", "val", "--out", tmp_path / "val.json")
    assert "Real features of ImageFolderDataModule val: 4 images" in capsys.readouterr().out


def test_evaluate_split_test_without_a_test_split_says_it_used_val(checkpoints, tmp_path, capsys):
    from lightning_gen.models import VAE

    data = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"num_images": 40, "image_size": 16, "val_fraction": 0.25}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": data}))
    checkpoint = save(VAE(FACTS, channels=(8, 16), latent_dim=4), tmp_path / "vae.ckpt")
    run_cli(
        "evaluate",
        "--ckpt_path",
        checkpoint,
        "--config",
        tmp_path / "data.yaml",
        "--metrics",
        "fid",
        "--num",
        6,
        "--split",
        "test",
        "--log_to_run",
        "false",
        "--feature_extractor",
        "test_stats_evaluate.MeanFeatures",
        "--cache_dir",
        tmp_path / "features",
    )
    assert "Real features of ShapesDataModule val (no test split): 10 images" in capsys.readouterr().out


def test_stats_labels_its_splits(tmp_path, capsys):
    root = image_folder_with_splits(tmp_path / "folder", {"train": 4, "val": 2, "test": 5})
    data = {
        "class_path": "lightning_gen.data.ImageFolderDataModule",
        "init_args": {"root": str(root), "image_size": 8, "cache_dir": str(tmp_path / "cache")},
    }
    (tmp_path / "folder.yaml").write_text(yaml.safe_dump({"data": data}))
    run_cli("stats", "--config", tmp_path / "folder.yaml")
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == "ImageFolderDataModule: 22 images in 3 splits: train 8, val 4, test 10 (counts below: all splits together, then each split)"
    )
    assert [line.split() for line in lines if line.strip().startswith(("a ", "b "))] == [
        ["a", "11", "50.0", "%", "train", "4", "val", "2", "test", "5"],
        ["b", "11", "50.0", "%", "train", "4", "val", "2", "test", "5"],
    ]
