"""Runs side by side (seed 003's figures): reconstruction columns, interpolation rows, sample rows, a table and plots.

Each grid carries its labels on a white margin (top: one label per column, turned to read upwards; left: one
per row), drawn with PIL's default bitmap font; the image part of a labelled grid is the unlabelled grid, pixel
for pixel, at offset ``margins(...)``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

from lightning_gen.latent.interpolate import interpolate
from lightning_gen.metrics.runs import RunRecord, short_key
from lightning_gen.protocol import batch_condition, has_latents, has_vocabulary

PADDING = 1
REAL = "real"  # the label of a column of real images
LABEL_GAP = 3  # pixels between a label and the grid


def _slice_condition(condition: Any, rows: slice) -> Any:
    if condition is None:
        return None
    return condition[rows]


@torch.no_grad()
def reconstruction_grid(models: Sequence[Any], batch: dict[str, Any]) -> torch.Tensor:
    """Rows = the same images; column 0 the originals, then one column per run (runs without an encoder: blank)."""
    images = batch["image"].float()
    columns = [images]
    for model in models:
        if has_latents(model):
            moved = {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
            columns.append(model.reconstruct(moved["image"].float(), batch_condition(model, moved)).float().cpu().clamp(0, 1))
        else:
            columns.append(torch.ones_like(images))
    cells = torch.stack(columns, dim=1)  # rows × (1 + runs) × C × H × W
    return make_grid(cells.flatten(0, 1), nrow=len(columns), padding=PADDING)


@torch.no_grad()
def interpolation_grid(models: Sequence[Any], start: dict[str, Any], end: dict[str, Any], steps: int) -> torch.Tensor:
    """One row per run: the real start image, ``steps`` decodes along the latent line, the real end image."""
    rows = []
    weights = torch.linspace(0, 1, steps)
    for model in models:
        a, b = start["image"].float(), end["image"].float()
        row = [a]
        if has_latents(model):
            moved = [
                {key: value.to(model.device) if isinstance(value, torch.Tensor) else value for key, value in item.items()}
                for item in (start, end)
            ]
            condition = batch_condition(model, moved[0])
            z_start = model.encode(moved[0]["image"].float(), condition)
            z_end = model.encode(moved[1]["image"].float(), batch_condition(model, moved[1]))
            # The same path as ``mix`` and the W&B grids (latent.interpolate: slerp for Gaussian latents).
            path = interpolate(z_start, z_end, weights.to(z_start.device))
            row += list(model.decode(path, condition).float().cpu().clamp(0, 1).split(1))
        else:
            row += [torch.ones_like(a)] * steps
        rows.append(torch.cat([*row, b]))
    return make_grid(torch.cat(rows), nrow=steps + 2, padding=PADDING)


@torch.no_grad()
def sample_grid(models: Sequence[Any], num: int, seed: int) -> torch.Tensor:
    """One row per run from the same noise (the generator is re-seeded for every run)."""
    rows = []
    for model in models:
        generator = torch.Generator(device=model.device).manual_seed(seed)
        condition = model.spread_conditions(num) if has_vocabulary(model) else None
        rows.append(model.sample(num, condition=condition, generator=generator).float().cpu().clamp(0, 1))
    return make_grid(torch.cat(rows), nrow=num, padding=PADDING)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "" if value is None else str(value)


def write_markdown(rows: list[dict[str, Any]], path: Path) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(column)) for column in columns) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: format_value(value) if isinstance(value, tuple) else value for key, value in row.items()} for row in rows)


def metrics_figure(rows: list[dict[str, Any]], key: str, metrics: list[str], group: str) -> Any:
    """Each metric against the varying key (log x when the key spans more than a factor of 20, as β sweeps do),
    one panel per metric with both axes labelled, under a title naming the group; None without two numeric runs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    points = [(row[key], row) for row in rows if isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)]
    metrics = [name for name in metrics if all(isinstance(row.get(name), (int, float)) for _, row in points)]
    if len(points) < 2 or not metrics:
        return None
    points.sort(key=lambda point: point[0])
    xs = [x for x, _ in points]
    columns = min(3, len(metrics))
    figure, axes = pyplot.subplots(
        math.ceil(len(metrics) / columns), columns, figsize=(3.6 * columns, 2.8 * math.ceil(len(metrics) / columns)), dpi=110, squeeze=False
    )
    for axis, name in zip(axes.flat, metrics):
        axis.plot(xs, [row[name] for _, row in points], marker="o")
        axis.set_xlabel(key)
        axis.set_ylabel(name)
        axis.set_title(f"{name} vs {key}", fontsize=9)
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            axis.set_xscale("log")
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_visible(False)
    figure.suptitle(f"{group}: {len(points)} runs, metrics against {key}", fontsize=10)
    figure.tight_layout()
    return figure


def plot_metrics(rows: list[dict[str, Any]], key: str, metrics: list[str], path: Path, group: str) -> Path | None:
    """``metrics_figure`` saved to ``path``; None (nothing written) when there is nothing to plot."""
    from matplotlib import pyplot

    figure = metrics_figure(rows, key, metrics, group)
    if figure is None:
        return None
    figure.savefig(path)
    pyplot.close(figure)
    return path


def run_labels(records: Sequence[RunRecord], keys: Sequence[str]) -> list[str]:
    """One label per run, in the records' order: its name, then each varying key's value (``cats_beta05 · kl_weight=0.5``).

    The name is the experiment folder when those are distinct across the runs (``version_0`` of every
    sweep run adds nothing), else the full ``experiment/version_N`` that ``runs.md`` shows.
    """
    experiments = [record.directory.parent.name for record in records]
    names = experiments if len(set(experiments)) == len(experiments) else [record.name for record in records]
    return [
        " · ".join([name, *(f"{short_key(key)}={format_value(record.settings.get(key))}" for key in keys)])
        for name, record in zip(names, records)
    ]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default_imagefont()


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = _font().getbbox(text)
    return right, bottom


def margins(row_labels: Sequence[str] = (), column_labels: Sequence[str] = ()) -> tuple[int, int]:
    """(top, left) margin in pixels that ``labeled_grid`` adds for these labels (0 where there are none)."""
    top = max((_text_size(label)[0] for label in column_labels if label), default=0)
    left = max((_text_size(label)[0] for label in row_labels if label), default=0)
    return (top + 2 * LABEL_GAP if top else 0), (left + 2 * LABEL_GAP if left else 0)


def labeled_grid(
    grid: torch.Tensor, cell: int, row_labels: Sequence[str] = (), column_labels: Sequence[str] = (), padding: int = PADDING
) -> torch.Tensor:
    """``grid`` (a make_grid of ``cell``-pixel square images) on a white margin with a label per row (left) and column (top).

    Empty labels leave their row or column unlabelled; the grid itself is copied in unchanged.
    """
    top, left = margins(row_labels, column_labels)
    channels, height, width = grid.shape
    canvas = Image.new("RGB", (left + width, top + height), "white")
    draw = ImageDraw.Draw(canvas)
    for row, label in enumerate(row_labels):
        text_width, text_height = _text_size(label)
        middle = top + padding + row * (cell + padding) + cell // 2
        draw.text((left - LABEL_GAP - text_width, middle - text_height // 2), label, font=_font(), fill="black")
    for column, label in enumerate(column_labels):
        if not label:
            continue
        text_width, text_height = _text_size(label)
        strip = Image.new("RGB", (text_width, text_height), "white")
        ImageDraw.Draw(strip).text((0, 0), label, font=_font(), fill="black")
        strip = strip.rotate(90, expand=True)  # reads upwards, ends just above its column
        middle = left + padding + column * (cell + padding) + cell // 2
        canvas.paste(strip, (middle - text_height // 2, top - LABEL_GAP - text_width))
    labeled = pil_to_tensor(canvas).float().div(255)
    labeled[:, top:, left:] = grid.expand(3, -1, -1) if channels == 1 else grid[:3]
    return labeled
