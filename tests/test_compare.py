"""compare on three tiny runs of one group: grid sizes, the table's varying-key column, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli
from PIL import Image
from torchvision.io import read_image

from lightning_gen.data import ShapesDataModule
from lightning_gen.metrics import comparison
from lightning_gen.models import VAE

IMAGE = 16
DATA = {"class_path": "lightning_gen.data.ShapesDataModule", "init_args": {"num_images": 60, "image_size": IMAGE, "val_fraction": 0.25}}
KL_WEIGHTS = (1.0, 0.5, 0.05)


def make_run(root: Path, experiment: str, kl_weight: float, group: str, image_size: int = IMAGE, seed: int = 0) -> Path:
    run = root / experiment / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    torch.manual_seed(seed)
    model = VAE(ShapesDataModule(image_size=image_size).facts, channels=(8, 16), latent_dim=4, kl_weight=kl_weight)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "global_step": 100 + seed}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    data = json.loads(json.dumps(DATA))
    data["init_args"]["image_size"] = image_size
    config = {
        "model": {"class_path": "lightning_gen.models.VAE", "init_args": {"channels": [8, 16], "latent_dim": 4, "kl_weight": kl_weight}},
        "data": data,
        "tracking": {"group": group, "name": experiment, "logger": "csv"},
        "trainer": {"default_root_dir": str(root)},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture(scope="module")
def sweep_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for index, kl_weight in enumerate(KL_WEIGHTS):
        make_run(root, f"beta_{kl_weight}", kl_weight, "beta_sweep", seed=index)
    make_run(root, "other", 1.0, "another_group")
    return root


LABELS = ["beta_0.05 · kl_weight=0.05", "beta_0.5 · kl_weight=0.5", "beta_1.0 · kl_weight=1"]  # the group's runs, sorted


def grid_cells(path: Path, margins: tuple[int, int], image: int = IMAGE, padding: int = 1) -> tuple[int, int]:
    """(rows, columns) of a torchvision grid of image×image cells with ``padding`` pixels around each, below/right of its label margins."""
    width, height = Image.open(path).size
    top, left = margins
    assert (height - top - padding) % (image + padding) == 0 and (width - left - padding) % (image + padding) == 0
    return (height - top - padding) // (image + padding), (width - left - padding) // (image + padding)


def test_compare_a_group_writes_grids_table_and_plots(sweep_root, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "compare"
    run_cli("compare", "--group", "beta_sweep", "--root", sweep_root, "--out", out, "--num_images", 5, "--interpolation_steps", 4)
    ends = ["real", "", "", "", "", "real"]
    recon_margins, interp_margins, sample_margins = (
        comparison.margins(column_labels=["real", *LABELS]),
        comparison.margins(LABELS, ends),
        comparison.margins(LABELS),
    )
    assert grid_cells(out / "reconstructions.png", recon_margins) == (5, 1 + 3)  # rows = images; originals + one column per run
    assert grid_cells(out / "interpolations.png", interp_margins) == (3, 4 + 2)  # one row per run; real images at both ends
    assert grid_cells(out / "samples.png", sample_margins) == (3, 5)  # one row per run
    assert f"Rows of interpolations.png and samples.png (labelled): {', '.join(LABELS)}" in capsys.readouterr().out
    with open(out / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["run"] for row in rows] == ["beta_0.05/version_0", "beta_0.5/version_0", "beta_1.0/version_0"]  # the other group left out
    assert [float(row["kl_weight"]) for row in rows] == [0.05, 0.5, 1.0]
    assert {"params", "steps", "val/loss", "val/recon", "val/kl", "val/psnr", "val/ssim"} <= set(rows[0])
    assert "name" not in rows[0] and "group" not in rows[0]  # per-run names are not settings
    assert [int(row["steps"]) for row in rows] == [102, 101, 100]
    # The validation loss is recon + β·KL of each run's own β.
    for row in rows:
        assert float(row["val/loss"]) == pytest.approx(float(row["val/recon"]) + float(row["kl_weight"]) * float(row["val/kl"]), rel=1e-4)
    assert (out / "metrics_vs_kl_weight.png").is_file() and "| kl_weight |" in (out / "runs.md").read_text()
    # Column 0 of the reconstructions holds the validation images; every interpolation row starts and ends with the same real pair.
    datamodule = ShapesDataModule(**DATA["init_args"])
    datamodule.setup()
    validation = next(iter(datamodule.val_dataloader()))["image"]
    reconstructions, interpolations = read_image(str(out / "reconstructions.png")), read_image(str(out / "interpolations.png"))
    samples = read_image(str(out / "samples.png"))
    for row in range(5):
        assert torch.equal(cell(reconstructions, row, 0, recon_margins), (validation[row] * 255).round().to(torch.uint8))
    for row in range(3):
        assert torch.equal(cell(interpolations, row, 0, interp_margins), cell(reconstructions, 0, 0, recon_margins))
        assert torch.equal(cell(interpolations, row, 5, interp_margins), cell(reconstructions, 1, 0, recon_margins))
    assert not torch.equal(cell(reconstructions, 0, 1, recon_margins), cell(reconstructions, 0, 2, recon_margins))  # different runs
    # Ink on the margin beside every run's row and above every labelled column; white above the interpolation steps.
    for row in range(3):
        assert margin_beside(interpolations, row, interp_margins).min() < 128 and margin_beside(samples, row, sample_margins).min() < 128
    for column in range(4):
        assert margin_above(reconstructions, column, recon_margins).min() < 128
    assert [bool(margin_above(interpolations, column, interp_margins).min() < 128) for column in range(6)] == [
        bool(label) for label in ends
    ]


def cell(
    grid: torch.Tensor, row: int, column: int, margins: tuple[int, int] = (0, 0), image: int = IMAGE, padding: int = 1
) -> torch.Tensor:
    top, left = margins[0] + padding + row * (image + padding), margins[1] + padding + column * (image + padding)
    return grid[:3, top : top + image, left : left + image]


def margin_beside(grid: torch.Tensor, row: int, margins: tuple[int, int], image: int = IMAGE, padding: int = 1) -> torch.Tensor:
    top = margins[0] + padding + row * (image + padding)
    return grid[:3, top : top + image, : margins[1]]


def margin_above(grid: torch.Tensor, column: int, margins: tuple[int, int], image: int = IMAGE, padding: int = 1) -> torch.Tensor:
    left = margins[1] + padding + column * (image + padding)
    return grid[:3, : margins[0], left : left + image]


def test_compare_refuses_runs_of_different_image_sizes(sweep_root, tmp_path, capsys):
    small = make_run(tmp_path, "small", 1.0, "mixed", image_size=8)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("compare", sweep_root / "beta_1.0" / "version_0", small / "checkpoints" / "last.ckpt", "--out", tmp_path / "out")
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "different sizes" in error and "8px" in error and error.count("\n") == 1
