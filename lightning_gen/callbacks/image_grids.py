"""Image grids every validation epoch, for any model of the protocol (lightning_gen.protocol).

- ``reconstructions``: a fixed set of validation images (top row) above their reconstructions;
- ``samples``: from the same noise every epoch (a generator re-seeded each time), so progress compares;
- ``interpolations``: rows = fixed pairs of validation images, columns = steps between their latents;
- ``edit_<attribute>`` for each of ``images.edit_attributes``: rows = the fixed images, columns = strengths
  along the attribute's direction (mean latent with − without it over validation images);
- whatever the model adds through ``validation_grids(batch, generator) -> {name: grid}``
  (condition rows, denoising progressions).
Runs before the EMA callback swaps the raw weights back, so grids show the EMA weights.

Drawn every ``images.every_n_epochs`` validation epochs, at the run's final validation, and at every validation
lightning_gen.callbacks.end_validation requests (the run's end, ``images.every_n_minutes``). Under ``fast_dev_run``
every grid is tiny (SMOKE_IMAGES images, SMOKE_STEPS denoising steps): a smoke run checks the code, not the pictures.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torchvision.utils import make_grid

from lightning_gen.callbacks.end_validation import requested_validation
from lightning_gen.config.settings import ImageSettings
from lightning_gen.errors import UserError
from lightning_gen.latent.codec import Codec
from lightning_gen.latent.directions import compute_directions
from lightning_gen.latent.editing import edit_images, edit_offset
from lightning_gen.protocol import Samples, batch_condition, has_latents
from lightning_gen.tracking.images import log_grid

SMOKE_IMAGES, SMOKE_STEPS, SMOKE_REFERENCES = 2, 2, 16  # the grids of a fast_dev_run


def _take(condition: Any, rows: torch.Tensor | slice) -> Any:
    if condition is None:
        return None
    if isinstance(condition, (list, tuple)):
        indices = range(len(condition))[rows] if isinstance(rows, slice) else rows.tolist()
        return [condition[i] for i in indices]
    return condition[rows]


def _first_validation_batch(trainer: pl.Trainer, count: int) -> dict[str, Any] | None:
    loaders = trainer.val_dataloaders
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    if loader is None:
        return None
    batch = next(iter(loader))
    return {key: value[:count] for key, value in batch.items()}


def interpolation_grid(model: Any, images: torch.Tensor, condition: Any, pairs: int, steps: int) -> torch.Tensor:
    starts, ends = images[0 : 2 * pairs : 2], images[1 : 2 * pairs : 2]
    start_condition = _take(condition, slice(0, 2 * pairs, 2))
    z_start, z_end = model.encode(starts, start_condition), model.encode(ends, _take(condition, slice(1, 2 * pairs, 2)))
    # one weight per (pair, step), broadcast over a flat or a spatial (C × h × w) latent
    weights = torch.linspace(0, 1, steps, device=images.device).view(1, steps, *([1] * (z_start.dim() - 1)))
    z = (z_start[:, None] * (1 - weights) + z_end[:, None] * weights).flatten(0, 1)
    row_condition = None
    if start_condition is not None:
        repeat = torch.arange(len(starts)).repeat_interleave(steps)
        row_condition = _take(start_condition, repeat.to(images.device) if isinstance(start_condition, torch.Tensor) else repeat)
    decoded = model.decode(z, row_condition)
    # Real endpoints framing each row make the interpolation readable.
    rows = torch.cat([starts[:, None].float(), decoded.view(len(starts), steps, *decoded.shape[1:]), ends[:, None].float()], 1)
    return make_grid(rows.flatten(0, 1), nrow=steps + 2, padding=1)


def is_final_validation(trainer: pl.Trainer) -> bool:
    """Whether the run ends after this validation: its last epoch, or its last step in a step-limited run.

    A limit Lightning leaves unset is -1 (max_epochs is -1 when only max_steps is given), never reached.
    """
    max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
    if max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps:
        return True
    return max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs


def smoke_settings(settings: ImageSettings) -> ImageSettings:
    """The grids of a ``fast_dev_run``: as few images, pairs, steps and references as still draw each grid."""
    return replace(
        settings,
        num_images=min(settings.num_images, SMOKE_IMAGES),
        interpolation_pairs=min(settings.interpolation_pairs, 1),
        interpolation_steps=min(settings.interpolation_steps, 3),
        edit_references=min(settings.edit_references, SMOKE_REFERENCES),
        edit_neighbours=min(settings.edit_neighbours, SMOKE_REFERENCES),
    )


class ImageGrids(pl.Callback):
    def __init__(self, directory: Path, settings: ImageSettings | None = None):
        self.directory = Path(directory)
        self.settings = settings or ImageSettings()
        self.sampling_steps: int | None = None  # denoising steps of the samples grid (None: the model's own)
        self._batch: dict[str, Any] | None = None

    def _fixed_batch(self, trainer: pl.Trainer, device: torch.device) -> dict[str, Any] | None:
        if self._batch is None:
            needed = max(self.settings.num_images, 2 * self.settings.interpolation_pairs)
            self._batch = _first_validation_batch(trainer, needed)
        if self._batch is None:
            return None
        return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in self._batch.items()}

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not isinstance(pl_module, Samples):
            return  # e.g. the Judge: a classifier trained through the same CLI has nothing to draw
        scheduled = (trainer.current_epoch + 1) % self.settings.every_n_epochs == 0
        if not scheduled and not is_final_validation(trainer) and requested_validation(trainer) is None:
            return
        batch = self._fixed_batch(trainer, pl_module.device)
        if batch is None:
            return
        for key, grid in self.grids(pl_module, batch).items():
            log_grid(trainer, f"images/{key}", grid, self.directory)
        for key, grid in self.edit_grids(trainer, pl_module, batch).items():
            log_grid(trainer, f"images/{key}", grid, self.directory)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.fast_dev_run:
            self.settings, self.sampling_steps = smoke_settings(self.settings), SMOKE_STEPS
        names = getattr(getattr(pl_module, "data_facts", None), "attribute_names", ())
        for attribute in self.settings.edit_attributes:
            if attribute not in names:
                raise UserError(
                    f"images.edit_attributes names '{attribute}', which the data does not have; use some of: "
                    f"{', '.join(names) or '(none: this data has no attributes)'}."
                )

    def edit_grids(self, trainer: pl.Trainer, model: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        settings = self.settings
        if not settings.edit_attributes or not has_latents(model):
            return {}
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        names = tuple(model.data_facts.attribute_names)
        directions = compute_directions(model, iter(loader), names, settings.edit_references)
        images = batch["image"][: settings.num_images]
        codec = Codec(model, encode_condition=_take(batch_condition(model, batch), slice(0, len(images))))
        grids = {}
        for attribute in settings.edit_attributes:
            if directions.with_counts[names.index(attribute)] == 0 or directions.without_counts[names.index(attribute)] == 0:
                continue  # every (or no) validation image has it: there is no direction to show
            edits = edit_images(
                codec, images, edit_offset(directions, attribute, neighbours=settings.edit_neighbours), settings.edit_strengths
            )
            grids[f"edit_{attribute}"] = make_grid(edits.flatten(0, 1), nrow=len(settings.edit_strengths), padding=1)
        return grids

    def grids(self, model: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        settings = self.settings
        images = batch["image"]
        n = min(settings.num_images, len(images))
        condition = batch_condition(model, batch)
        generator = torch.Generator(device=model.device).manual_seed(settings.seed)
        grids: dict[str, torch.Tensor] = {}
        if has_latents(model):
            recon = model.reconstruct(images[:n], _take(condition, slice(0, n)))
            grids["reconstructions"] = make_grid(torch.cat([images[:n].float(), recon.float()]), nrow=n, padding=1)
            pairs = min(settings.interpolation_pairs, len(images) // 2)
            if pairs > 0:
                grids["interpolations"] = interpolation_grid(model, images, condition, pairs, settings.interpolation_steps)
        steps = {"steps": self.sampling_steps} if self.sampling_steps and "steps" in inspect.signature(model.sample).parameters else {}
        samples = model.sample(n, condition=_take(condition, slice(0, n)), generator=generator, **steps)
        grids["samples"] = make_grid(samples.float(), nrow=n, padding=1)
        extra = getattr(model, "validation_grids", None)
        if extra is not None:
            grids.update(extra(batch, torch.Generator(device=model.device).manual_seed(settings.seed)))
        return grids
