"""Validation grids of a diffusion model: one row per fixed condition, and one denoising progression.

Called through ``DDPM.validation_grids`` by the ImageGrids callback every validation epoch. The
noise comes from the callback's re-seeded generator, so each column starts from the same noise in
every epoch and across rows: differences along a column are the condition's doing, differences
between epochs are training's.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.utils import make_grid

from lightning_gen.models.condition_grid import columns_for, shown_conditions

MAX_ROWS = 8  # prompts shown (text models), and the most columns
MAX_FRAMES = 8


def fixed_conditions(model: Any, batch: dict[str, Any]) -> Any:
    """Conditions that do not depend on the batch order: every class (a fixed subset beyond 40, see condition_grid),
    or the batch's first 8 distinct captions."""
    if model.conditioning == "class":
        return shown_conditions(model.num_classes)
    if model.conditioning == "text":
        captions = batch.get("caption") or []
        return list(dict.fromkeys(captions))[:MAX_ROWS] or None
    return None


def condition_rows_grid(model: Any, conditions: Any, columns: int, generator: torch.Generator, steps: int) -> torch.Tensor:
    """Rows = conditions, columns = fixed noise shared by all rows."""
    rows = len(conditions)
    noise = model._random("randn", (columns, *model.image_shape), generator)
    noise = noise.repeat(rows, 1, 1, 1)
    if isinstance(conditions, torch.Tensor):
        per_image = conditions.to(model.device).repeat_interleave(columns)
    else:
        per_image = [caption for caption in conditions for _ in range(columns)]
    images = model.sample(rows * columns, condition=per_image, generator=generator, steps=steps, initial_noise=noise)
    return make_grid(images.float(), nrow=columns, padding=1)


def progression_grid(model: Any, conditions: Any, generator: torch.Generator, steps: int) -> torch.Tensor:
    """One row: the predicted clean image at evenly spaced steps of one sampling run (first fixed condition)."""
    first = None if conditions is None else conditions[:1]
    frames = model.denoising_progression(first, generator, num_frames=min(MAX_FRAMES, steps), steps=steps)
    return make_grid(frames[0].float(), nrow=frames.shape[1], padding=1)


def diffusion_validation_grids(model: Any, batch: dict[str, Any], generator: torch.Generator, steps: int) -> dict[str, torch.Tensor]:
    grids = {}
    conditions = fixed_conditions(model, batch)
    if conditions is not None:
        name = "class_rows" if model.conditioning == "class" else "prompt_rows"
        columns = max(1, min(columns_for(len(conditions)), len(batch["image"])))
        grids[name] = condition_rows_grid(model, conditions, columns, generator, steps)
    grids["denoising"] = progression_grid(model, conditions, generator, steps)
    return grids
