"""SampleQuality: ``val/fid`` and ``val/kid`` of prior samples every N validation epochs, from the EMA weights.

Listed in a config under ``trainer.callbacks`` (before the CLI's own callbacks, so it runs while the EMA
weights are swapped in)::

    - class_path: lightning_gen.callbacks.sample_quality.SampleQuality
      init_args: {every_n_epochs: 5, num_samples: 2048, feature_extractor: inception}

Scored at the validations of every ``every_n_epochs``-th epoch, or (``every_n_steps``, for step-limited runs) at the
first validation after every N optimizer steps, and at the run's final validation (lightning_gen.callbacks.cadence);
not at the ``images.every_n_minutes`` ones. Under ``fast_dev_run`` it scores SMOKE_SAMPLES samples (a check that it runs).

The real split's features are computed once per run (and cached on disk, shared with ``evaluate``).
Under DDP every rank samples its own share with its own seed, the features are gathered, rank 0
scores them and broadcasts the numbers, so every rank logs the same value and none waits forever.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch

from lightning_gen.callbacks.cadence import Cadence
from lightning_gen.errors import UserError
from lightning_gen.metrics import formulas
from lightning_gen.metrics.evaluation import real_features, sample_batched
from lightning_gen.metrics.extractors import FeatureExtractor, build_extractor
from lightning_gen.metrics.feature_cache import FeatureCache
from lightning_gen.metrics.quality import condition_source
from lightning_gen.protocol import is_generator

RANK_SEED_STRIDE = 1_000_003  # distinct noise per rank
SMOKE_SAMPLES = 4  # per scoring under fast_dev_run


class SampleQuality(pl.Callback):
    """Args:
    every_n_epochs: score at the validations of every this many epochs (default: every epoch).
    every_n_steps: instead, score at the first validation at or after every this many optimizer steps
        (for step-limited runs, ``max_epochs: -1``); either way also at the run's final validation.
    num_samples: generated images per scoring, over all ranks.
    feature_extractor: ``inception``, a TorchScript/.pt2 file, a Judge .ckpt or a class path (see ``evaluate``).
    inception_weights: the FID Inception weights file, when not in the torch hub cache.
    seed: noise seed, the same at every scoring so epochs compare.
    batch_size: samples generated and featurised at once.
    cache_dir: real-feature cache folder (default beside the image cache).
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        num_samples: int = 1024,
        feature_extractor: str = "inception",
        inception_weights: str | None = None,
        seed: int = 0,
        batch_size: int = 256,
        cache_dir: str | None = None,
    ):
        if num_samples < 2:
            raise UserError(f"SampleQuality needs num_samples ≥ 2, got {num_samples}; raise it.")
        self.cadence = Cadence("SampleQuality", every_n_epochs, every_n_steps)
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.extractor_spec, self.inception_weights, self.cache_dir = feature_extractor, inception_weights, cache_dir
        self.extractor: FeatureExtractor | None = None
        self.real: torch.Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if is_generator(pl_module) and pl_module.conditioning == "text":
            raise UserError(
                "SampleQuality in trainer.callbacks scores unconditional or class/attribute samples; a text "
                "model needs prompts, so score it with evaluate --prompt_template."
            )
        if trainer.fast_dev_run:
            self.num_samples, self.batch_size = min(self.num_samples, SMOKE_SAMPLES), min(self.batch_size, SMOKE_SAMPLES)
        # Built on every rank at setup, so a missing weights file stops the run before training, not after an epoch.
        self.extractor = build_extractor(self.extractor_spec, self.inception_weights, pl_module.device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.cadence.start(trainer)

    def _shard(self, trainer: pl.Trainer) -> tuple[int, int]:
        per_rank = math.ceil(self.num_samples / trainer.world_size)
        start = trainer.global_rank * per_rank
        return start, max(0, min(per_rank, self.num_samples - start))

    @torch.no_grad()
    def _my_features(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> torch.Tensor:
        start, count = self._shard(trainer)
        per_rank = math.ceil(self.num_samples / trainer.world_size)
        features = torch.zeros(per_rank, 0, dtype=torch.float64)
        if count:
            conditions = condition_source(pl_module, self.num_samples, None)
            condition_for = (lambda offset, size: conditions(start + offset, size)) if conditions is not None else None
            seed = self.seed + RANK_SEED_STRIDE * trainer.global_rank
            batches = sample_batched(pl_module, count, seed, self.batch_size, condition_for)
            features = torch.cat([self.extractor(images, self.batch_size) for images in batches])
        # all_gather needs the same shape on every rank: pad the last rank's share, drop the padding after.
        dim = self.extractor(torch.zeros(1, *pl_module.image_shape, device=pl_module.device)).shape[1] if not count else features.shape[1]
        padded = torch.zeros(per_rank, dim, dtype=torch.float64)
        padded[:count] = features[:count]
        return padded

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.cadence.due(trainer):
            return
        mine = self._my_features(trainer, pl_module).to(pl_module.device)
        gathered = pl_module.all_gather(mine)  # world × per_rank × D (per_rank × D on one device)
        fake = gathered.reshape(-1, mine.shape[1])[: self.num_samples].double().cpu()
        scores = torch.zeros(3, dtype=torch.float64)
        if trainer.is_global_zero:
            if self.real is None:
                self.real, _ = real_features(trainer.datamodule, "val", self.extractor, FeatureCache(self.cache_dir), self.batch_size)
            kid_mean, kid_std, _ = formulas.kid(self.real, fake, seed=self.seed)
            scores = torch.tensor([formulas.fid(self.real, fake), kid_mean, kid_std], dtype=torch.float64)
        scores = trainer.strategy.broadcast(scores, src=0)
        values = {"val/fid": float(scores[0]), "val/kid": float(scores[1]), "val/kid_std": float(scores[2])}
        pl_module.log_dict(values, batch_size=self.num_samples)  # the same numbers on every rank: nothing to reduce
