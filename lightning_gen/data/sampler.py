"""Batch order that depends only on (seed, epoch): a resumed run sees the same batches as an uninterrupted one.

torch's RandomSampler draws its order from the global RNG, whose state Lightning does not
checkpoint; Lightning calls ``set_epoch`` on the DataLoader's batch sampler each epoch.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class SeededBatchSampler(Sampler[list[int]]):
    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = True):
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        # Never drop the only (partial) batch of a tiny dataset: an epoch with no step is a confusing no-op.
        self.drop_last = drop_last and size >= batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if dist.is_available() and dist.is_initialized():
            order = order[dist.get_rank() :: dist.get_world_size()]
        return order

    def __iter__(self) -> Iterator[list[int]]:
        order = self._indices()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        size = self.size
        if dist.is_available() and dist.is_initialized():
            size = len(range(dist.get_rank(), self.size, dist.get_world_size()))
        return size // self.batch_size if self.drop_last else -(-size // self.batch_size)
