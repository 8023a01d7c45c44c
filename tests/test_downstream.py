"""`downstream`: the three kinds of training data tested on real images, the summary arithmetic, the folder reader."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli
from PIL import Image
from torchvision.io import write_png

from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.synthetic.downstream_runs import MIXED, REAL, SYNTHETIC, real_rows
from lightning_gen.synthetic.folder import read_image_folder
from lightning_gen.synthetic.report import markdown_table, summarise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"num_images": 240, "image_size": 16, "batch_size": 16}}


def write_folder(root: Path, class_names, per_class: int, size: int = 16, seed: int = 3) -> Path:
    """Shapes rendered with another seed, in the export layout: a stand-in for a perfect generator."""
    data = ShapesDataModule(num_images=400, image_size=size, seed=seed, val_fraction=0.01)
    data.setup()
    counts = dict.fromkeys(class_names, 0)
    for item in (data.train_set[i] for i in range(len(data.train_set))):
        name = data.class_names[int(item["label"])]
        if name in counts and counts[name] < per_class:
            (root / name).mkdir(parents=True, exist_ok=True)
            write_png((item["image"] * 255).round().to(torch.uint8), str(root / name / f"{counts[name]:06d}.png"))
            counts[name] += 1
    return root


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "real.yaml"
    trainer = {"accelerator": "cpu", "max_steps": 3, "max_epochs": -1}
    path.write_text(yaml.safe_dump({"trainer": trainer, "data": DATA, "tracking": {"logger": "csv"}}))
    return path


def test_one_seed_gives_the_three_rows_tested_on_real_validation_images(config, tmp_path, capsys):
    synthetic = write_folder(tmp_path / "synthetic", ShapesDataModule().class_names, per_class=2)
    out = tmp_path / "out"
    run_cli("downstream", "--config", config, "--synthetic", synthetic, "--real_fraction", "0.5", "--seeds", "1", "--out", out)
    with open(out / "runs.csv") as handle:
        runs = list(csv.DictReader(handle))
    # 240 images, 10 % validation: 216 training, half of them drawn; 24 real validation images test every classifier.
    assert [(row["training_data"], row["real_images"], row["synthetic_images"], row["test_images"]) for row in runs] == [
        (SYNTHETIC, "0", "48", "24"),
        (REAL, "108", "0", "24"),
        (MIXED, "108", "48", "24"),
    ]
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 for row in runs)
    table = (out / "summary.md").read_text()
    assert "| real |" in table and "| real + synthetic (48 synthetic) |" in table and "| synthetic only (48 synthetic) |" in table
    assert "one seed" in table and table in capsys.readouterr().out
    assert Image.open(out / "downstream.png").size[0] > 100


def test_synthetic_classes_the_real_data_lacks_exit_2(config, tmp_path, capsys):
    (tmp_path / "synthetic" / "purple hexagon").mkdir(parents=True)
    write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), str(tmp_path / "synthetic" / "purple hexagon" / "000000.png"))
    with pytest.raises(SystemExit) as exit_info:
        run_cli("downstream", "--config", config, "--synthetic", tmp_path / "synthetic", "--seeds", "1", "--out", tmp_path / "out")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "purple hexagon" in error and error.count("\n") == 1


def test_folder_reader_labels_by_the_real_class_order_and_resizes(tmp_path):
    names = ("zebra", "ant")  # not sorted: labels must follow the real data's order, not the folders'
    for name, value in zip(names, (10, 200)):
        (tmp_path / name).mkdir()
        write_png(torch.full((3, 32, 32), value, dtype=torch.uint8), str(tmp_path / name / "000000.png"))
    images, labels = read_image_folder(tmp_path, names, image_size=16)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    by_label = {int(label): int(image.float().mean()) for image, label in zip(images, labels)}
    assert by_label == {0: 10, 1: 200}


def test_real_subsets_are_seeded_and_sized():
    assert real_rows(100, 0.1, seed=0) == real_rows(100, 0.1, seed=0) != real_rows(100, 0.1, seed=1)
    assert len(real_rows(100, 0.25, seed=0)) == 25 and len(set(real_rows(100, 1.0, seed=0))) == 100
    with pytest.raises(UserError):
        real_rows(100, 1.5, seed=0)


def test_summary_means_spreads_and_paired_gain_by_hand():
    rows = [
        {"training_data": SYNTHETIC, "real_fraction": None, "seed": s, "real_images": 0, "synthetic_images": 50, "accuracy": a}
        for s, a in enumerate((0.5, 0.7))
    ]
    for seed, (real, mixed) in enumerate(((0.60, 0.70), (0.64, 0.76))):
        rows.append({"training_data": REAL, "real_fraction": 0.1, "seed": seed, "real_images": 10, "synthetic_images": 0, "accuracy": real})
        rows.append(
            {"training_data": MIXED, "real_fraction": 0.1, "seed": seed, "real_images": 10, "synthetic_images": 50, "accuracy": mixed}
        )
    summary = {row["training_data"]: row for row in summarise(rows, [0.1])}
    # real: mean 0.62, sample std sqrt(2 * 0.02²) = 0.02828; mixed: 0.73, 0.04243; gains 0.10, 0.12 → 0.11 ± 0.01414.
    assert summary[REAL]["mean"] == pytest.approx(0.62) and summary[REAL]["std"] == pytest.approx(0.028284, abs=1e-6)
    assert summary[MIXED]["mean"] == pytest.approx(0.73) and summary[MIXED]["std"] == pytest.approx(0.042426, abs=1e-6)
    assert summary[SYNTHETIC]["mean"] == pytest.approx(0.6) and summary[SYNTHETIC]["std"] == pytest.approx(0.141421, abs=1e-6)
    gain = summary["gain (paired)"]
    assert gain["mean"] == pytest.approx(0.11) and gain["std"] == pytest.approx(0.014142, abs=1e-6)
    assert gain["verdict"].startswith("synthetic helps")  # 11 points > the larger spread, 4.2 points
    table = markdown_table(summarise(rows, [0.1]), [0.1], "t")
    assert "| real | 62.0 ± 2.8 % |" in table and "+11.0 ± 1.4" in table


def test_no_clear_effect_when_the_gain_is_within_the_spread():
    rows = []
    for seed, (real, mixed) in enumerate(((0.60, 0.58), (0.70, 0.74))):
        rows.append({"training_data": REAL, "real_fraction": 0.1, "seed": seed, "real_images": 10, "synthetic_images": 0, "accuracy": real})
        rows.append(
            {"training_data": MIXED, "real_fraction": 0.1, "seed": seed, "real_images": 10, "synthetic_images": 5, "accuracy": mixed}
        )
    gain = {row["training_data"]: row for row in summarise(rows, [0.1])}["gain (paired)"]
    assert gain["mean"] == pytest.approx(0.01) and gain["verdict"].startswith("no clear effect")


def test_resnet18_classifier_learns_which_channel_is_lit():
    """The ResNet-18 path end to end: a red image is class "red", a blue one "blue" (labels in the real
    order, not sorted); a few steps of training must tell them apart on held-out images, and a 16 px input
    keeps its resolution through the small-image stem (no max-pool)."""
    from lightning_gen.synthetic.classifiers import small_image_resnet18
    from lightning_gen.synthetic.downstream_runs import ClassifierSetup, TensorImages, train_and_test

    def images(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 2, (count,), generator=generator)
        pictures = (torch.rand(count, 3, 16, 16, generator=generator) * 60).to(torch.uint8)
        pictures[labels == 0, 0] += 150  # "red": class 0
        pictures[labels == 1, 2] += 150  # "blue": class 1
        return pictures, labels

    network = small_image_resnet18(num_classes=2)
    assert network.conv1.stride == (1, 1) and isinstance(network.maxpool, torch.nn.Identity)
    assert network(torch.zeros(2, 3, 16, 16)).shape == (2, 2)
    setup = ClassifierSetup(
        "resnet18", ("red", "blue"), image_size=16, batch_size=16, trainer_options={"accelerator": "cpu", "max_steps": 15, "max_epochs": -1}
    )
    accuracy = train_and_test(TensorImages(*images(64, 0)), TensorImages(*images(32, 1)), setup, seed=0)
    assert accuracy == 1.0
