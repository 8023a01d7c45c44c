"""JudgeScore: every validation epoch, how often a frozen judge agrees with the conditions samples were drawn for.

Listed in a config under ``trainer.callbacks``::

    - class_path: lightning_gen.callbacks.judge_score.JudgeScore
      init_args: {judge_ckpt: runs/shapes_judge/version_0/checkpoints/last.ckpt, num_samples: 256}
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from lightning_gen.checkpoints import load_model
from lightning_gen.errors import UserError
from lightning_gen.models.judge import judge_accuracy


class JudgeScore(pl.Callback):
    """Logs ``val/judge_overall`` and ``val/judge_<class|attribute|group>/<name>`` for prior samples.

    Args:
        judge_ckpt: a Judge checkpoint trained on the same dataset.
        num_samples: samples per epoch, conditions spread evenly over the vocabulary.
        seed: noise seed, the same every epoch so epochs compare.
    """

    def __init__(self, judge_ckpt: str, num_samples: int = 256, seed: int = 0):
        self.judge_ckpt, self.num_samples, self.seed = judge_ckpt, num_samples, seed
        self.judge: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if getattr(pl_module, "spread_conditions", None) is None:
            raise UserError(f"JudgeScore in trainer.callbacks needs a conditional model, got {type(pl_module).__name__}; remove the callback.")
        self.judge = load_model(self.judge_ckpt)
        for parameter in self.judge.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        judge = self.judge.to(pl_module.device)
        conditions = pl_module.spread_conditions(self.num_samples)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        images = pl_module.sample(self.num_samples, condition=conditions, generator=generator)
        facts = pl_module.data_facts
        scores = judge_accuracy(judge, images, conditions, pl_module.condition_kind, facts.class_names, facts.attribute_names)
        pl_module.log_dict({f"val/judge_{key}": value for key, value in scores.items()}, batch_size=self.num_samples)
