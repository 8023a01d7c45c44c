"""ImageFolderDataModule on folders the tests build: class folders, flat, metadata.jsonl / .csv, split folders, bad tables."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli
from fixtures_image_folder import COLOURS, class_folders, write_image
from PIL import Image

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import ImageFolderDataModule
from lightning_gen.data.image_cache import SkippedImagesWarning
from lightning_gen.errors import UserError


def make(root: Path, tmp_path: Path, **kwargs) -> ImageFolderDataModule:
    options = {"image_size": 8, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), "hflip": False, **kwargs}
    return ImageFolderDataModule(root=str(root), **options)


def labels_of(dataset) -> list[int]:
    return dataset.labels[dataset.rows].tolist()


def test_class_folders_give_sorted_labels_and_real_pixels(tmp_path):
    datamodule = make(class_folders(tmp_path / "images"), tmp_path, val_fraction=0.25)
    assert datamodule.facts.class_names == ("blue", "green", "red") and not datamodule.facts.has_captions
    datamodule.setup()
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 3
    batch = datamodule.val_set.__getitems__(list(range(3)))
    for image, label in zip(batch["image"], batch["label"].tolist()):
        expected = torch.tensor(COLOURS[("blue", "green", "red")[label]], dtype=torch.float32) / 255
        assert torch.allclose(image.mean((1, 2)), expected, atol=0.02)  # the decoded colour is the folder's


def test_flat_folder_is_unlabelled(tmp_path):
    for number in range(5):
        write_image(tmp_path / "flat" / f"{number}.png", (number * 50, 0, 0))
    datamodule = make(tmp_path / "flat", tmp_path, val_fraction=0.2)
    assert datamodule.facts.class_names == () and datamodule.facts.attribute_names == ()
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"image", "index"} and batch["image"].shape == (4, 3, 8, 8)


def test_images_both_loose_and_in_class_folders_is_an_error(tmp_path):
    class_folders(tmp_path / "mixed", per_class=1)
    write_image(tmp_path / "mixed" / "stray.png", (1, 2, 3))
    with pytest.raises(UserError, match="both directly \\(stray.png\\) and in class folders"):
        make(tmp_path / "mixed", tmp_path).facts


def write_jsonl(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def captioned(root: Path) -> Path:
    rows = []
    for name, colour in COLOURS.items():
        for copy_number in range(2):
            file_name = f"pics/{name}{copy_number}.png"
            write_image(root / file_name, colour)
            rows.append({"file_name": file_name, "text": f"a {name} square", "bright": copy_number, "square": True, "source": "test"})
    return write_jsonl(root, rows)


def test_metadata_jsonl_gives_captions_and_01_attributes(tmp_path):
    datamodule = make(captioned(tmp_path / "captioned"), tmp_path, val_fraction=0.0)
    facts = datamodule.facts
    assert facts.has_captions and facts.class_names == ()
    assert facts.attribute_names == ("bright", "square")  # "source" is not 0/1: not an attribute
    datamodule.setup()
    batch = datamodule.train_set.__getitems__(list(range(6)))
    assert batch["caption"][:2] == ["a blue square", "a blue square"] and batch["caption"][-1] == "a red square"
    assert batch["attributes"].tolist() == [[0, 1], [1, 1]] * 3


def test_metadata_csv_with_labels_and_a_split_column(tmp_path):
    root = tmp_path / "csv"
    lines = ["file_name,label,split,caption"]
    for name, colour in COLOURS.items():
        for split in ("train", "train", "validation"):
            file_name = f"{name}_{split}_{len(lines)}.jpg"
            write_image(root / file_name, colour)
            lines.append(f'{file_name},{name},{split},"a {name} thing, plain"')
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    datamodule = make(root, tmp_path)
    assert datamodule.facts.class_names == ("blue", "green", "red") and datamodule.facts.has_captions
    datamodule.setup()
    assert labels_of(datamodule.train_set) == [0, 0, 1, 1, 2, 2] and labels_of(datamodule.val_set) == [0, 1, 2]
    assert datamodule.val_set.__getitems__([0])["caption"] == ["a blue thing, plain"]


def test_split_folders_with_class_folders(tmp_path):
    root = tmp_path / "splits"
    class_folders(root / "train", per_class=3)
    class_folders(root / "test", per_class=1)
    class_folders(root / "val", per_class=2)
    datamodule = make(root, tmp_path)
    datamodule.setup()
    assert labels_of(datamodule.train_set) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert labels_of(datamodule.val_set) == [0, 0, 1, 1, 2, 2] and labels_of(datamodule.test_set) == [0, 1, 2]


def test_a_validation_class_missing_from_training_is_an_unknown_label(tmp_path):
    root = tmp_path / "splits"
    class_folders(root / "train", per_class=1)
    write_image(root / "val" / "purple" / "0.png", (128, 0, 128))
    with pytest.raises(UserError, match="purple.*label 'purple' is not in the training images \\(blue, green, red\\)"):
        make(root, tmp_path).facts


def test_caption_template_captions_class_folders(tmp_path):
    datamodule = make(class_folders(tmp_path / "images", per_class=1), tmp_path, caption_template="a photo of a {name}")
    assert datamodule.facts.has_captions
    assert [sample.caption for sample in datamodule.samples] == ["a photo of a blue", "a photo of a green", "a photo of a red"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [{"file_name": "a.png"}, {"file_name": "missing.png"}],
            "metadata.jsonl line 2: file_name 'missing.png' is not an image file inside",
        ),
        ([{"file_name": "../outside.png"}], "metadata.jsonl line 1: file_name '../outside.png' is not an image file inside"),
        (
            [{"file_name": "a.png"}, {"file_name": "b.png"}, {"file_name": "a.png"}],
            "metadata.jsonl line 3 lists 'a.png' again \\(first on line 1\\)",
        ),
        (
            [{"file_name": "a.png", "label": "cat"}, {"file_name": "b.png"}],
            "metadata.jsonl line 2 has no label while other images have one",
        ),
        ([{"file_name": "a.png", "split": "holdout"}], "metadata.jsonl line 1: split 'holdout' is not one of"),
        ([{"name": "a.png"}], 'metadata.jsonl line 1 has no "file_name"'),
    ],
)
def test_bad_metadata_names_file_and_line(tmp_path, rows, message):
    root = tmp_path / "bad"
    for name in ("a.png", "b.png"):
        write_image(root / name, (9, 9, 9))
    write_image(tmp_path / "outside.png", (9, 9, 9))
    write_jsonl(root, rows)
    with pytest.raises(UserError, match=message):
        make(root, tmp_path).facts


def test_unknown_label_against_the_configured_classes(tmp_path):
    root = tmp_path / "labelled"
    for name in ("a.png", "b.png"):
        write_image(root / name, (9, 9, 9))
    write_jsonl(root, [{"file_name": "a.png", "label": "cat"}, {"file_name": "b.png", "label": "cta"}])
    with pytest.raises(UserError, match="metadata.jsonl line 2: label 'cta' is not in data.classes \\(cat, dog\\)"):
        make(root, tmp_path, classes=["cat", "dog"]).facts
    datamodule = make(root, tmp_path, classes=["dog", "cat", "cta"])  # classes fix the label order
    assert [sample.label for sample in datamodule.samples] == [1, 2]


def test_unlisted_images_are_left_out_with_a_warning(tmp_path):
    root = tmp_path / "partial"
    for name in ("a.png", "b.png", "c.png"):
        write_image(root / name, (9, 9, 9))
    write_jsonl(root, [{"file_name": "a.png"}, {"file_name": "b.png"}])
    with pytest.warns(UserWarning, match="1 images under .* are not in metadata.jsonl and are left out: c.png"):
        samples = make(root, tmp_path).samples
    assert [sample.path.name for sample in samples] == ["a.png", "b.png"]


def test_corrupt_image_is_left_out_with_a_warning(tmp_path):
    root = class_folders(tmp_path / "images", per_class=2, suffixes=(".png",))
    (root / "red" / "broken.png").write_bytes(b"not a png")
    datamodule = make(root, tmp_path, val_fraction=0.0)
    with pytest.warns(SkippedImagesWarning, match="red/broken.png"):
        datamodule.setup()
    assert len(datamodule.train_set) + len(datamodule.val_set) == 6


@pytest.fixture(scope="module")
def folder_runs(tmp_path_factory, one_torch_thread) -> tuple[Path, Path]:
    """A tiny CVAE and a tiny judge fitted through the CLI on a class folder."""
    base = tmp_path_factory.mktemp("folder_fit")
    root = class_folders(base / "images", per_class=8)
    checkpoints = []
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
                    "prior": "gmm",
                    "gmm_components": 2,
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
            "class_path": "lightning_gen.data.ImageFolderDataModule",
            "init_args": {"root": str(root), "image_size": 16, "batch_size": 6, "val_fraction": 0.25, "cache_dir": str(base / "cache")},
        }
        config["trainer"].update({"default_root_dir": str(base / "runs"), "max_epochs": 12})
        config["tracking"] = {"logger": "csv", "name": name}
        path = base / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        run_cli("fit", "--config", path)
        checkpoints.append(base / "runs" / name / "version_0" / "checkpoints" / "last.ckpt")
    return checkpoints[0], checkpoints[1]


def test_fit_sample_by_class_name_and_evaluate_on_a_folder(folder_runs, tmp_path, capsys):
    generator, judge = folder_runs
    model = load_model(generator)
    assert model.data_facts.class_names == ("blue", "green", "red")
    run_cli("sample", "--ckpt_path", generator, "--condition", "green", "--num", "4", "--out", tmp_path / "green.png")
    assert Image.open(tmp_path / "green.png").size == (2 * 17 + 1, 2 * 17 + 1)
    run_cli("evaluate", "--ckpt_path", generator, "--judge", judge, "--num", 30, "--out", tmp_path / "scores.json")
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert set(scores) == {"overall", "class/blue", "class/green", "class/red"}
    # Three flat colours: 36 steps make the requested colour (the judge itself is exact on them).
    assert scores["overall"] > 0.9


def test_linked_folders_are_followed_and_broken_links_counted_in_one_warning(tmp_path):
    root = class_folders(tmp_path / "images", per_class=2, suffixes=(".png",))
    elsewhere = tmp_path / "elsewhere" / "purple"
    write_image(elsewhere / "0.png", (128, 0, 128))
    (root / "purple").symlink_to(elsewhere, target_is_directory=True)  # a linked class folder: followed
    (root / "red" / "gone.png").symlink_to(root / "red" / "deleted.png")  # dangling
    (root / "red" / "self.png").symlink_to("self.png")  # a loop of one link
    (root / "blue" / "again").symlink_to(root, target_is_directory=True)  # back into a folder above it
    with pytest.warns(UserWarning) as record:
        datamodule = make(root, tmp_path)
        class_names = datamodule.facts.class_names
    messages = [str(warning.message) for warning in record if "symbolic link" in str(warning.message)]
    assert messages == [f"3 symbolic links under {root} are dangling or loop and are left out, e.g. blue/again; fix or delete them."]
    assert class_names == ("blue", "green", "purple", "red")
    assert len(datamodule.samples) == 7


def test_dataset_file_lists_report_a_dangling_link(tmp_path):
    from lightning_gen.data.image_files import BrokenLinksWarning, find_image_files

    write_image(tmp_path / "cats" / "a.jpg", (1, 2, 3))
    (tmp_path / "cats" / "b.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.warns(
        BrokenLinksWarning,
        match=rf"^1 symbolic link under {tmp_path} is dangling or loops and is left out: cats/b\.jpg; fix or delete it\.$",
    ):
        assert find_image_files(tmp_path) == [tmp_path / "cats" / "a.jpg"]


def test_a_class_model_on_a_one_class_folder_is_refused(tmp_path):
    from lightning_gen.models import CVAE, DDPM, VAE

    for number in range(3):
        write_image(tmp_path / "images" / "cats" / f"{number}.png", (200, 100, 50))
    facts = make(tmp_path / "images", tmp_path).facts
    assert facts.class_names == ("cats",)
    with pytest.raises(
        UserError, match=r"^model.conditioning is 'class' but the data has one class \('cats'\), so the condition tells the model nothing; "
    ):
        CVAE(facts, channels=(8, 16))
    with pytest.raises(
        UserError, match=r"^model.conditioning is 'class' but the data has one class \('cats'\), so the condition tells the model nothing; "
    ):
        DDPM(facts, conditioning="class", unet={"block_out_channels": [16, 32], "layers_per_block": 1})
    VAE(facts, channels=(8, 16))  # the labels are not used: one folder of cats is fine
