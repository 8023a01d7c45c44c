"""Sample order that depends only on (seed, epoch): a resumed run sees the same batches as an uninterrupted one.

torch's RandomSampler draws its order from the global RNG, whose state Lightning does not
checkpoint. Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler`` every epoch,
so this sampler goes inside a BatchSampler.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from lightning_gen.data.resumable_loader import SkippingBatchSampler


class SeededSampler(Sampler[int]):
    def __init__(self, size: int, seed: int = 0, shuffle: bool = True):
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_and_world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        rank, world = self._rank_and_world()
        return iter(order[rank::world])

    def __len__(self) -> int:
        rank, world = self._rank_and_world()
        return len(range(rank, self.size, world))


def seeded_batches(size: int, batch_size: int, seed: int, shuffle: bool, drop_last: bool) -> SkippingBatchSampler:
    # Never drop the only (partial) batch of a tiny dataset: an epoch with no step is a confusing no-op.
    return SkippingBatchSampler(SeededSampler(size, seed, shuffle), batch_size, drop_last=drop_last and size >= batch_size)
