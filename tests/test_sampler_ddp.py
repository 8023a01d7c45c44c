"""Under DDP the batch order is data.seed's too: each rank takes its share of the one seeded order (defect 6:
Lightning used to replace the sampler with its own DistributedSampler, seeded by seed_everything)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler

from lightning_gen.data import ShapesDataModule


def datamodule(seed: int, num_images: int = 40, rank: int | None = None, world: int = 2) -> ShapesDataModule:
    module = ShapesDataModule(num_images=num_images, image_size=8, batch_size=4, val_fraction=0.1, seed=seed)
    module.setup()
    if rank is not None:  # what a DDP trainer tells the datamodule (Trainer.distributed_sampler_kwargs)
        module.trainer = SimpleNamespace(distributed_sampler_kwargs={"num_replicas": world, "rank": rank})
    return module


def stream(module: ShapesDataModule, epoch: int) -> list[int]:
    loader = module.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning calls every epoch
    return [index for batch in loader for index in batch["index"].tolist()]


def seeded_order(size: int, seed: int, epoch: int) -> list[int]:
    """The order SeededSampler has always drawn (hand-written here): a permutation from seed * 1_000_003 + epoch."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def dataset_indices(module: ShapesDataModule, positions: list[int]) -> list[int]:
    return module.train_set.__getitems__(positions)["index"].tolist()


def test_a_ddp_train_loader_keeps_its_own_distributed_sampler():
    loader = datamodule(seed=1, rank=0).train_dataloader()
    # Lightning replaces a sampler only when it is not a DistributedSampler (Trainer(use_distributed_sampler) docs).
    assert isinstance(loader.sampler, DistributedSampler)
    assert not isinstance(datamodule(seed=1).train_dataloader().sampler, DistributedSampler)  # one process: never sharded


@pytest.mark.parametrize("epoch", [0, 3])
def test_two_ranks_are_disjoint_cover_the_epoch_and_follow_data_seed(epoch):
    seed = 5
    ranks = [stream(datamodule(seed, rank=rank), epoch) for rank in (0, 1)]
    single = datamodule(seed)
    order = seeded_order(len(single.train_set), seed, epoch)
    assert len(order) == 36  # 40 images, 4 for validation: 18 per rank, 4 full batches of 4 each (drop_last)
    assert ranks[0] == dataset_indices(single, order[0::2][:16])
    assert ranks[1] == dataset_indices(single, order[1::2][:16])
    assert not set(ranks[0]) & set(ranks[1])


def test_evaluation_splits_are_left_to_lightnings_sharding():
    # Lightning shards a validation/test loader with DistributedSampler(shuffle=False), a predict one without the
    # padding repeats (UnrepeatedDistributedSamplerWrapper): it does so only for a sampler that is not distributed.
    loader = datamodule(seed=1, rank=1).val_dataloader()
    assert not isinstance(loader.sampler, DistributedSampler)
    assert list(loader.sampler) == list(range(len(loader.dataset)))


def test_one_process_order_is_unchanged():
    single = datamodule(seed=5)
    order = seeded_order(len(single.train_set), 5, 2)
    assert stream(single, 2) == dataset_indices(single, order[:36])


def test_ranks_follow_data_seed_not_the_global_seed():
    torch.manual_seed(0)
    first = stream(datamodule(seed=2, rank=1), 0)
    torch.manual_seed(123)  # seed_everything's seed: Lightning's own sampler would follow this one
    assert stream(datamodule(seed=2, rank=1), 0) == first
    assert stream(datamodule(seed=3, rank=1), 0) != first


def test_an_uneven_split_is_padded_as_distributed_sampler_pads():
    ranks = [datamodule(seed=4, num_images=41, rank=rank).train_dataloader().sampler for rank in (0, 1)]
    positions = [list(sampler) for sampler in ranks]
    assert [len(share) for share in positions] == [19, 19]  # 37 training images: one repeated to even the ranks
    assert set(positions[0]) | set(positions[1]) == set(range(37))


@pytest.mark.parametrize("rank", [0, 1])
def test_a_mid_epoch_resume_continues_each_ranks_stream(rank):
    uninterrupted = stream(datamodule(seed=6, rank=rank), epoch=1)
    resumed = datamodule(seed=6, rank=rank)
    loader = resumed.train_dataloader()
    loader.load_state_dict({"batches_processed": 2})  # the checkpoint was saved after 2 of this epoch's 4 batches
    loader.sampler.set_epoch(1)
    rest = [index for batch in loader for index in batch["index"].tolist()]
    assert rest == uninterrupted[2 * 4 :]
    loader.sampler.set_epoch(2)  # the skip applies once: the next epoch is whole
    assert [index for batch in loader for index in batch["index"].tolist()] == stream(datamodule(seed=6, rank=rank), epoch=2)
