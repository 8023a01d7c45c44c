"""Validation grids of a diffusion model: one row per fixed condition, and one denoising progression.

Called through ``DDPM.validation_grids`` by the ImageGrids callback every validation epoch. The
noise comes from the callback's re-seeded generator, so each column starts from the same noise in
every epoch and across rows: differences along a column are the condition's doing, differences
between epochs are training's. Under ``fast_dev_run`` they are tiny (SMOKE_ROWS rows and columns, SMOKE_STEPS
denoising steps and frames): a smoke run checks that they are drawn, in seconds.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.utils import make_grid

from lightning_gen.models.condition_grid import columns_for
from lightning_gen.seeding import randn

MAX_ROWS = 8  # prompts shown (text models), and the most columns
MAX_FRAMES = 8
SMOKE_ROWS, SMOKE_STEPS = 2, 2  # the grids of a fast_dev_run


def smoke_run(model: Any) -> bool:
    """Whether the model is being trained or validated by a ``fast_dev_run`` trainer."""
    try:
        trainer = model.trainer
    except RuntimeError:  # LightningModule.trainer raises outside a trainer (sample, evaluate, the app)
        return False
    return bool(trainer.fast_dev_run)


def fixed_conditions(model: Any, batch: dict[str, Any]) -> Any:
    """Conditions that do not depend on the batch order: every class (a fixed subset beyond 40, see condition_grid),
    or the batch's first 8 distinct captions; None for an unconditional model."""
    return model.conditioner.grid_conditions(batch, "cpu")


def condition_rows_grid(model: Any, conditions: Any, columns: int, generator: torch.Generator, steps: int) -> torch.Tensor:
    """Rows = conditions, columns = fixed noise shared by all rows."""
    rows = len(conditions)
    noise = randn((columns, *model.sampling_options().noise_shape), generator, model.device)
    noise = noise.repeat(rows, 1, 1, 1)
    if isinstance(conditions, torch.Tensor):
        per_image = conditions.to(model.device).repeat_interleave(columns)
    else:
        per_image = [caption for caption in conditions for _ in range(columns)]
    images = model.sample(rows * columns, condition=per_image, generator=generator, steps=steps, initial_noise=noise)
    return make_grid(images.float(), nrow=columns, padding=1)


def progression_grid(model: Any, conditions: Any, generator: torch.Generator, steps: int, max_frames: int = MAX_FRAMES) -> torch.Tensor:
    """One row: the predicted clean image at evenly spaced steps of one sampling run (first fixed condition)."""
    first = None if conditions is None else conditions[:1]
    frames = model.denoising_progression(first, generator, num_frames=min(max_frames, steps), steps=steps)
    return make_grid(frames[0].float(), nrow=frames.shape[1], padding=1)


def diffusion_validation_grids(model: Any, batch: dict[str, Any], generator: torch.Generator, steps: int) -> dict[str, torch.Tensor]:
    grids = {}
    conditions = fixed_conditions(model, batch)
    smoke = smoke_run(model)
    if smoke:
        steps = min(steps, SMOKE_STEPS)
        conditions = None if conditions is None else conditions[:SMOKE_ROWS]
    if conditions is not None:
        name = "class_rows" if model.conditioning == "class" else "prompt_rows"
        columns = max(1, min(columns_for(len(conditions)), len(batch["image"]), SMOKE_ROWS if smoke else MAX_ROWS))
        grids[name] = condition_rows_grid(model, conditions, columns, generator, steps)
    grids["denoising"] = progression_grid(model, conditions, generator, steps, SMOKE_STEPS if smoke else MAX_FRAMES)
    return grids
