"""compare's figures carry their labels: one per run (name, then the varying keys), "real" over real columns, on a margin."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid

from lightning_gen.metrics import comparison
from lightning_gen.metrics.runs import RunRecord, flatten, varying_keys

CELL = 16  # wider than the font is tall (11 px), as every real image size is


def record(experiment: str, version: int = 0, **init_args) -> RunRecord:
    config = {
        "model": {"class_path": "lightning_gen.models.BetaVAE", "init_args": {"latent_dim": 4, **init_args}},
        "tracking": {"name": experiment},
    }
    directory = Path("runs") / experiment / f"version_{version}"
    return RunRecord(directory, directory / "checkpoints" / "last.ckpt", config, flatten(config))


def test_run_labels_are_the_run_name_then_each_varying_key_in_the_records_order():
    records = [
        record("cats_beta05", kl_weight=0.5, lr=0.001),
        record("cats_beta1", kl_weight=1, lr=0.001),
        record("cats_beta2", kl_weight=2, lr=0.01),
    ]
    keys = varying_keys(records)
    assert keys == ["model.init_args.kl_weight", "model.init_args.lr"]
    assert comparison.run_labels(records, keys) == [
        "cats_beta05 · kl_weight=0.5 · lr=0.001",
        "cats_beta1 · kl_weight=1 · lr=0.001",
        "cats_beta2 · kl_weight=2 · lr=0.01",
    ]
    # Order follows the records (the grid's rows), not the values.
    assert comparison.run_labels(records[::-1], ["model.init_args.kl_weight"]) == [
        "cats_beta2 · kl_weight=2",
        "cats_beta1 · kl_weight=1",
        "cats_beta05 · kl_weight=0.5",
    ]


def test_run_labels_keep_the_version_when_two_runs_share_an_experiment():
    records = [record("beta", 0, kl_weight=0.5), record("beta", 1, kl_weight=1.0)]
    assert comparison.run_labels(records, varying_keys(records)) == ["beta/version_0 · kl_weight=0.5", "beta/version_1 · kl_weight=1"]


def grid_of(rows: int, columns: int) -> torch.Tensor:
    torch.manual_seed(0)
    return make_grid(torch.rand(rows * columns, 1, CELL, CELL) * 0.5 + 0.5, nrow=columns, padding=comparison.PADDING)


def band(rows_or_columns: int, index: int, offset: int) -> slice:
    start = offset + comparison.PADDING + index * (CELL + comparison.PADDING)
    return slice(start, start + CELL)


def test_labeled_grid_keeps_the_image_part_and_inks_the_margin_beside_each_label():
    grid = grid_of(3, 4)
    rows, columns = ["run_a · kl_weight=1", "run_b · kl_weight=0.5", "c"], ["real", "", "run_a", ""]
    labeled = comparison.labeled_grid(grid, CELL, rows, columns)
    top, left = comparison.margins(rows, columns)
    assert top > 0 and left > 0 and labeled.shape == (3, top + grid.shape[1], left + grid.shape[2])
    assert torch.equal(labeled[:, top:, left:], grid)  # labels never cover the images
    for row in range(3):
        assert labeled[:, band(3, row, top), :left].min() < 0.5  # ink beside every row
    for column, label in enumerate(columns):
        strip = labeled[:, :top, band(4, column, left)]
        assert (strip.min() < 0.5) == bool(label)  # ink above a labelled column, white above an unlabelled one
    assert labeled[:, :top, :left].min() == 1.0  # the corner stays white


def test_labeled_grid_without_labels_is_the_grid():
    grid = grid_of(2, 2)
    assert comparison.margins() == (0, 0) and torch.equal(comparison.labeled_grid(grid, CELL), grid)


def test_metric_plot_labels_both_axes_and_names_the_group():
    rows = [
        {"run": "a", "kl_weight": 1.0, "val/psnr": 20.0, "val/kl": 3.0},
        {"run": "b", "kl_weight": 0.005, "val/psnr": 28.0, "val/kl": 30.0},
    ]
    figure = comparison.metrics_figure(rows, "kl_weight", ["val/psnr", "val/kl"], "shapes_beta")
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [(axis.get_xlabel(), axis.get_ylabel()) for axis in visible] == [("kl_weight", "val/psnr"), ("kl_weight", "val/kl")]
    assert "shapes_beta" in figure.get_suptitle() and visible[0].get_xscale() == "log"  # 1 / 0.005 > 20
    assert [list(line.get_xdata()) for line in visible[0].get_lines()] == [[0.005, 1.0]]
    assert comparison.metrics_figure(rows[:1], "kl_weight", ["val/psnr"], "g") is None
