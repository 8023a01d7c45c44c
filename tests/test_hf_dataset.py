"""HFDatasetDataModule on datasets the tests build: save_to_disk folders, parquet files, and an offline hub name."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

datasets = pytest.importorskip("datasets")

from conftest import TINY_CONFIG, run_cli, run_process  # noqa: E402

from lightning_gen.checkpoints.loading import load_model  # noqa: E402
from lightning_gen.data.hf_dataset import HFDatasetDataModule  # noqa: E402
from lightning_gen.errors import UserError  # noqa: E402

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def build(per_class: int, label_feature: str = "class_label") -> datasets.Dataset:
    names = list(COLOURS)
    rows = {"image": [], "label": [], "text": [], "bright": [], "round": []}
    for number in range(per_class):
        for label, name in enumerate(names):
            rows["image"].append(Image.new("RGB", (12, 10), COLOURS[name]))
            rows["label"].append(label if label_feature == "class_label" else name)
            rows["text"].append(f"a {name} patch")
            rows["bright"].append(number % 2)
            rows["round"].append(True)
    label = datasets.ClassLabel(names=names) if label_feature == "class_label" else datasets.Value("string")
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": label,
            "text": datasets.Value("string"),
            "bright": datasets.Value("int64"),
            "round": datasets.Value("bool"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


def make(path: Path | str, tmp_path: Path, **kwargs) -> HFDatasetDataModule:
    options = {"image_size": 8, "batch_size": 3, "cache_dir": str(tmp_path / "cache"), "hflip": False, **kwargs}
    return HFDatasetDataModule(path=str(path), **options)


def test_save_to_disk_with_splits_class_labels_captions_and_attributes(tmp_path):
    splits = datasets.DatasetDict({"train": build(3), "validation": build(1)})
    splits.save_to_disk(str(tmp_path / "saved"))
    datamodule = make(tmp_path / "saved", tmp_path, attribute_columns=["bright", "round"])
    facts = datamodule.facts
    assert facts.class_names == ("blue", "green", "red") and facts.attribute_names == ("bright", "round") and facts.has_captions
    datamodule.setup()
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 3
    batch = datamodule.train_set.__getitems__(list(range(4)))
    assert batch["label"].tolist() == [0, 1, 2, 0] and batch["caption"][1] == "a green patch"
    assert batch["attributes"].tolist() == [[0, 1], [0, 1], [0, 1], [1, 1]]
    for image, label in zip(batch["image"], batch["label"].tolist()):
        expected = torch.tensor(COLOURS[facts.class_names[label]], dtype=torch.float32) / 255
        assert torch.allclose(image.mean((1, 2)), expected, atol=0.02)


def test_parquet_file_with_string_labels_and_a_held_out_share(tmp_path):
    build(4, label_feature="string").to_parquet(str(tmp_path / "colours.parquet"))
    datamodule = make(tmp_path / "colours.parquet", tmp_path, val_fraction=0.25, caption_column=None)
    assert datamodule.facts.class_names == ("blue", "green", "red") and not datamodule.facts.has_captions
    datamodule.setup()
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 3
    assert "caption" not in next(iter(datamodule.val_dataloader()))


def test_decoded_once_into_the_cache(tmp_path):
    build(2).save_to_disk(str(tmp_path / "saved"))
    make(tmp_path / "saved", tmp_path).setup()
    arrays = list((tmp_path / "cache" / "hf_dataset").glob("*.npy"))
    assert len(arrays) == 1
    make(tmp_path / "saved", tmp_path).setup()  # a second run reads the same cache
    assert list((tmp_path / "cache" / "hf_dataset").glob("*.npy")) == arrays


def test_unknown_column_and_unknown_validation_label(tmp_path):
    build(1).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(UserError, match="data.image_column 'picture' is not a column .* \\(columns: image, label, text, bright, round\\)"):
        make(tmp_path / "saved", tmp_path, image_column="picture").facts
    train = build(1, label_feature="string")
    validation = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (4, 4))], "label": ["purple"]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")}),
    )
    datasets.DatasetDict({"train": train, "test": validation}).save_to_disk(str(tmp_path / "mixed"))
    with pytest.raises(UserError, match="row 0 of the test split .*label 'purple' is not in the training split's classes"):
        make(tmp_path / "mixed", tmp_path, caption_column=None).facts


def test_offline_hub_name_exits_2_with_one_sentence(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["data"] = {
        "class_path": "lightning_gen.data.HFDatasetDataModule",
        "init_args": {"path": "nobody/no-such-dataset", "image_size": 16},
    }
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_process("fit", "--config", path, "--trainer.default_root_dir", tmp_path / "runs")
    assert result.returncode == 2
    assert "data.path 'nobody/no-such-dataset' is no local dataset and could not be loaded from the Hugging Face hub" in result.stderr
    assert "Traceback" not in result.stderr


def test_fit_sample_by_class_name_and_evaluate(tmp_path, one_torch_thread):
    build(6).save_to_disk(str(tmp_path / "saved"))
    checkpoints = {}
    for name, model in (
        (
            "cvae",
            {
                "class_path": "lightning_gen.models.CVAE",
                "init_args": {
                    "channels": [8, 16],
                    "latent_dim": 4,
                    "injection": "film",
                    "class_loss_weight": 5.0,
                    "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
                },
            },
        ),
        (
            "judge",
            {
                "class_path": "lightning_gen.models.Judge",
                "init_args": {
                    "channels": [8, 16],
                    "hidden": 16,
                    "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
                },
            },
        ),
    ):
        config = copy.deepcopy(TINY_CONFIG)
        config["model"] = model
        config["data"] = {
            "class_path": "lightning_gen.data.HFDatasetDataModule",
            "init_args": {
                "path": str(tmp_path / "saved"),
                "image_size": 16,
                "batch_size": 5,
                "val_fraction": 0.2,
                "cache_dir": str(tmp_path / "cache"),
            },
        }
        config["trainer"].update({"default_root_dir": str(tmp_path / "runs"), "max_epochs": 12})
        config["tracking"] = {"logger": "csv", "name": name}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        run_cli("fit", "--config", path)
        checkpoints[name] = tmp_path / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"
    assert load_model(checkpoints["cvae"]).data_facts.class_names == ("blue", "green", "red")
    run_cli("sample", "--ckpt_path", checkpoints["cvae"], "--condition", "red", "--num", "2", "--out", tmp_path / "red.png")
    red = torch.tensor(list(Image.open(tmp_path / "red.png").convert("RGB").getdata()), dtype=torch.float32)
    assert red[:, 0].mean() > 2 * red[:, 1:].mean()  # the grid is mostly red (padding aside)
    run_cli("evaluate", "--ckpt_path", checkpoints["cvae"], "--judge", checkpoints["judge"], "--num", 60, "--out", tmp_path / "scores.json")
    import json

    # 3 classes: chance is 1/3; the class-loss CVAE is judged right on >= 85 % of 60 seeded samples
    assert json.loads((tmp_path / "scores.json").read_text())["overall"] >= 0.85
