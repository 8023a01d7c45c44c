"""Runs side by side (seed 003's figures): reconstruction columns, interpolation rows, sample rows, a table and plots."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

from lightning_gen.latent.interpolate import interpolate
from lightning_gen.protocol import batch_condition, has_latents, has_vocabulary

PADDING = 1


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


def plot_metrics(rows: list[dict[str, Any]], key: str, metrics: list[str], path: Path) -> Path | None:
    """Each metric against the varying key (log x when the key spans more than a factor of 20, as β sweeps do)."""
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
        axis.set_title(name, fontsize=9)
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            axis.set_xscale("log")
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return path
