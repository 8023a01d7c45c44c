"""JudgeScore: how often a frozen judge agrees with the conditions samples were drawn for, at validation (every epoch,
or every_n_epochs / every_n_steps, and at the run's final validation).

Listed in a config under ``trainer.callbacks``::

    - class_path: lightning_gen.callbacks.judge_score.JudgeScore
      init_args: {judge_ckpt: runs/shapes_judge/version_0/checkpoints/last.ckpt, num_samples: 256}

A text-conditioned DDPM also needs ``prompt_template`` (e.g. ``"a large {name}"``), as ``evaluate`` does.
Under DDP each rank draws its share of the samples; the images are gathered so that every rank
scores the same set and logs the same values (no rank waits on another in a collective it skipped).
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.checkpoints.loading import load_model
from lightning_gen.metrics.judged import check_conditional, check_same_vocabulary, judged_kind, requested_conditions
from lightning_gen.models.judge import judge_accuracy


class JudgeScore(pl.Callback):
    """Logs ``val/judge_overall`` and ``val/judge_<class|attribute|group>/<name>`` for prior samples.

    Args:
        judge_ckpt: a Judge checkpoint trained on the same dataset.
        num_samples: samples per scoring, conditions spread evenly over the vocabulary.
        seed: noise seed, the same every epoch so epochs compare (each DDP rank adds its rank).
        prompt_template: text models only: the prompt per class name, with ``{name}``, e.g. ``"a large {name}"``.
        every_n_epochs: score at the validations of every this many epochs (default: every epoch).
        every_n_steps: instead, score at the first validation at or after every this many optimizer steps (for
            step-limited runs); either way also at the run's final validation (lightning_gen.callbacks.cadence).
    """

    def __init__(
        self,
        judge_ckpt: str,
        num_samples: int = 256,
        seed: int = 0,
        prompt_template: str | None = None,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
    ):
        self.cadence = Cadence("JudgeScore", every_n_epochs, every_n_steps)
        self.judge_ckpt, self.num_samples, self.seed, self.prompt_template = judge_ckpt, num_samples, seed, prompt_template
        self.judge: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Every check that sampling would fail is made here, before the first training epoch.
        check_conditional(pl_module)
        requested_conditions(pl_module, 1, self.prompt_template)
        self.judge = load_model(self.judge_ckpt)
        check_same_vocabulary(pl_module, self.judge)
        for parameter in self.judge.parameters():
            parameter.requires_grad_(False)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.cadence.start(trainer)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.cadence.due(trainer):
            return
        world, rank = trainer.world_size, trainer.global_rank
        per_rank = math.ceil(self.num_samples / world)
        # Every rank samples the same number of images (equal shapes for the gather); the surplus is dropped.
        expected, given = requested_conditions(pl_module, per_rank * world, self.prompt_template)
        start, stop = rank * per_rank, (rank + 1) * per_rank
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed + rank)
        images = pl_module.sample(per_rank, condition=given[start:stop], generator=generator)
        if world > 1:
            images = trainer.strategy.all_gather(images.contiguous()).flatten(0, 1)
        images, expected = images[: self.num_samples], expected[: self.num_samples]
        judge = self.judge.to(pl_module.device)
        facts = pl_module.data_facts
        scores = judge_accuracy(judge, images, expected, judged_kind(pl_module), facts.class_names, facts.attribute_names)
        pl_module.log_dict({f"val/judge_{key}": value for key, value in scores.items()}, batch_size=self.num_samples)
