"""The base of every datamodule: batch dicts, resume-exact batch order, augmentation on tensors, data facts."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.data import DataLoader

from lightning_gen.compat import batches_processed_in_epoch
from lightning_gen.console.option_errors import whole_number
from lightning_gen.data.augment import augment_batch, step_generator
from lightning_gen.data.batched_dataset import BatchedImageDataset, keep_batch
from lightning_gen.data.resumable_loader import ResumableDataLoader
from lightning_gen.data.sampler import seeded_sampler
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts


class GenerativeDataModule(pl.LightningDataModule):
    """Subclasses fill ``self.train_set``, ``self.val_set`` (and optionally ``self.test_set``) in ``setup``.

    Args:
        image_size: side of the square images served, in pixels.
        batch_size: images per training batch.
        num_workers: DataLoader worker processes (0 loads in the main process; the cache makes that fast).
        val_fraction: share of images held out for validation when the dataset has no official split.
        seed: fixes the split, the batch order of every epoch and the augmentations.
        hflip: random horizontal flips in training.
        max_rotation_degrees: random rotations in ±this many degrees in training (0 = off).
    """

    def __init__(
        self,
        image_size: PositiveInt = 64,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_fraction: float = 0.05,
        seed: int = 0,
        hflip: bool = True,
        max_rotation_degrees: float = 0.0,
    ):
        image_size, batch_size = whole_number(image_size, "data.image_size"), whole_number(batch_size, "data.batch_size")
        num_workers = whole_number(num_workers, "data.num_workers", minimum=0)
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise UserError(f"data.val_fraction must be in [0, 1), got {val_fraction}; set e.g. --data.val_fraction 0.05.")
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.hflip = hflip
        self.max_rotation_degrees = max_rotation_degrees
        self.train_set: BatchedImageDataset | None = None
        self.val_set: BatchedImageDataset | None = None
        self.test_set: BatchedImageDataset | None = None

    # What the model is told (linked by the CLI). Subclasses with labels/attributes/captions extend it.
    @property
    def facts(self) -> DataFacts:
        return DataFacts(image_size=self.image_size, channels=3)

    def captions(self) -> list[str]:
        """Every caption the splits set up so far can serve, once each (first-seen order); [] without captions."""
        splits = (self.train_set, self.val_set, self.test_set)
        return list(dict.fromkeys(c for split in splits if split is not None and split.captions is not None for c in split.captions))

    def _loader(self, dataset: BatchedImageDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() did not create this split.")
        # Training under DDP: this rank's share of data.seed's order (lightning_gen.data.sampler). Evaluation and predict
        # splits are left to Lightning, which shards them itself (predict without the padding repeats).
        trainer = self.trainer
        distributed = trainer.distributed_sampler_kwargs if trainer is not None and train else None
        sampler = seeded_sampler(len(dataset), self.seed, shuffle=train, distributed=distributed)
        options: dict[str, Any] = {
            "sampler": sampler,
            "batch_size": self.batch_size,
            # Never drop the only (partial) batch of a tiny dataset: an epoch with no step is a confusing no-op.
            "drop_last": train and len(sampler) >= self.batch_size,
            "collate_fn": keep_batch,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),  # page-locked batches: the non_blocking copies below overlap compute
            # Worker seeds from a private generator: creating an iterator never touches the global RNG.
            "generator": torch.Generator().manual_seed(self.seed),
        }
        if train:
            return ResumableDataLoader(dataset, batches_processed=self._train_batches_processed, **options)
        return DataLoader(dataset, **options)

    def _train_batches_processed(self) -> int:
        trainer = self.trainer
        return batches_processed_in_epoch(trainer) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set if self.test_set is not None else self.val_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Batches are flat dicts: move the tensors and leave the rest (captions) alone, instead of
        # Lightning's generic walk that visits every caption string of every batch.
        if isinstance(batch, dict):
            return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        augmenting = self.hflip or self.max_rotation_degrees > 0
        if trainer is not None and trainer.training and augmenting and isinstance(batch, dict):
            generator = step_generator(self.seed, trainer.global_step, batch["image"].device)
            batch["image"] = augment_batch(batch["image"], generator, self.hflip, self.max_rotation_degrees)
        return batch
