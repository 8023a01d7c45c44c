"""Sample order that depends only on (data.seed, epoch): a resumed run sees the same batches as an uninterrupted one.

torch's RandomSampler draws its order from the global RNG, whose state Lightning does not checkpoint.
Under DDP each training process takes its share of that one order through Lightning's ``DistributedSamplerWrapper``
(every ``world``-th index from its ``rank``, padded as torch's DistributedSampler pads), built here with the
trainer's ``distributed_sampler_kwargs``: Lightning does not replace a DataLoader's sampler that is already a
DistributedSampler (the documented rule of ``Trainer(use_distributed_sampler=...)``), so ``data.seed``
governs the order of every rank. Evaluation and predict samplers stay plain: Lightning shards those itself
(predict without DistributedSampler's padding repeats). Lightning calls ``set_epoch`` on ``dataloader.sampler``.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import Sampler


class SeededSampler(Sampler[int]):
    """The whole dataset in an order that is a function of (seed, epoch), or in index order without ``shuffle``."""

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return self.size


class Skipping:
    """A sampler mixin that, once, starts its next epoch ``samples`` indices in (a mid-epoch resume)."""

    _skip = 0

    def skip_once(self, samples: int) -> None:
        self._skip = max(0, samples)

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        return islice(super().__iter__(), skip, None)


class ResumableSampler(Skipping, SeededSampler):
    """One process's sampler: the seeded order, resumable mid-epoch."""


class ResumableRankSampler(Skipping, DistributedSamplerWrapper):
    """This DDP rank's share of the seeded order (the wrapper's own shuffle is off), resumable mid-epoch."""

    def __init__(self, order: SeededSampler, num_replicas: int, rank: int):
        super().__init__(order, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)


def seeded_sampler(size: int, seed: int, shuffle: bool, distributed: dict[str, Any] | None = None) -> Skipping:
    """The sampler of one split: ``distributed`` is the trainer's ``distributed_sampler_kwargs`` (None: one process)."""
    if distributed is None:
        return ResumableSampler(size, seed, shuffle)
    return ResumableRankSampler(SeededSampler(size, seed, shuffle), distributed["num_replicas"], distributed["rank"])
