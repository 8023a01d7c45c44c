"""Issue 18 defect 4: every caption of the dataset is encoded once, before the first step, rank-sharded; training
only reads (one file write and one encoder call for a fit whose batches bring new captions)."""

from __future__ import annotations

import threading

import lightning.pytorch as pl
import pytest
import torch
from fixtures_text import CountingEncoder, counting_cache

from lightning_gen.data import ShapesDataModule
from lightning_gen.models import DDPM
from lightning_gen.text import cache as cache_module
from lightning_gen.text.t5 import FrozenT5
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory) -> str:
    return str(build_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny_t5", shapes_captions(), d_model=16))


def test_a_text_ddpm_fit_writes_the_cache_once_and_calls_the_encoder_once(tmp_path, tiny_t5, monkeypatch):
    saves, encodes, moves = [], [], []
    real_save, real_encode, real_to = cache_module.CaptionEmbeddingCache._save, FrozenT5.encode, FrozenT5.to
    monkeypatch.setattr(cache_module.CaptionEmbeddingCache, "_save", lambda self: (saves.append(len(self)), real_save(self))[1])
    monkeypatch.setattr(FrozenT5, "encode", lambda self, captions, n: (encodes.append(len(captions)), real_encode(self, captions, n))[1])
    monkeypatch.setattr(FrozenT5, "to", lambda self, device: (moves.append(str(device)), real_to(self, device))[1])
    data = ShapesDataModule(num_images=96, image_size=16, batch_size=8)  # 43 distinct captions, 10 training batches
    model = DDPM(
        data.facts,
        conditioning="text",
        text_encoder=tiny_t5,
        max_text_length=8,
        text_cache_dir=str(tmp_path / "cache"),
        unet={"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8},
        sampling_steps=2,
    )
    trainer = pl.Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=2)  # fmt: skip
    trainer.fit(model, data)
    served = len(set(data.train_set.captions))  # the rows of every split
    assert served == 43  # of the 48 possible shapes captions, 96 seeded images draw 43
    assert saves == [served]  # one write, holding every caption, not one per batch with a new caption
    assert encodes == [served]  # one encoder call (48 ≤ one chunk of 64), before the first step
    assert moves == ["cpu", "cpu"]  # to the device (here the CPU) once for the fill and back, not twice per batch


def test_the_filled_embeddings_equal_encoding_each_caption_alone(tmp_path, tiny_t5):
    captions = shapes_captions()[:10]
    cache = cache_module.CaptionEmbeddingCache(tiny_t5, 8, tmp_path)
    assert cache.fill(captions) == 10
    encoder = FrozenT5(tiny_t5)
    embeddings, masks = cache.lookup(captions)
    for index, caption in enumerate(captions):
        alone, mask = encoder.encode([caption], 8)
        assert torch.equal(masks[index], mask[0].bool())
        torch.testing.assert_close(embeddings[index][mask[0].bool()], alone[0][mask[0].bool()].float(), rtol=1e-5, atol=1e-6)
    reread = cache_module.CaptionEmbeddingCache(tiny_t5, 8, tmp_path)  # the file holds them all
    assert torch.equal(reread.lookup(captions)[0], embeddings)


class Collective:
    """A two-rank all_gather_object between threads."""

    def __init__(self, world: int):
        self.barrier, self.slots, self.calls = threading.Barrier(world), [None] * world, [0] * world

    def for_rank(self, rank: int):
        def gather(obj):
            self.calls[rank] += 1
            self.barrier.wait()
            self.slots[rank] = obj
            self.barrier.wait()
            gathered = list(self.slots)
            self.barrier.wait()
            return gathered

        return gather


def test_two_ranks_each_encode_their_share_and_both_end_with_all(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "ENCODE_CHUNK", 4)
    captions = [f"caption {number}" for number in range(13)]
    encoders = [CountingEncoder(), CountingEncoder()]
    # Each rank has its own cache folder (node-local disks); rank 1's already holds two of the captions.
    dirs = [tmp_path / "rank0", tmp_path / "rank1"]
    counting_cache(dirs[1], CountingEncoder()).lookup(["caption 0", "caption 12"])
    caches = [counting_cache(directory, encoder) for directory, encoder in zip(dirs, encoders)]
    writes_before = (dirs[1] / caches[1].path.name).stat().st_mtime_ns
    collective, counts = Collective(2), [None, None]

    def run(rank: int) -> None:
        counts[rank] = caches[rank].fill(captions, "cpu", rank, 2, collective.for_rank(rank))

    threads = [threading.Thread(target=run, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == [13, 13]  # rank 0 lacks all 13: the union of the misses is encoded
    # Chunks of 4 in rounds of two: rank 0 takes chunks 0 and 2 (+ the last, 12), rank 1 chunks 1 and 3.
    assert encoders[0].calls == [captions[0:4], captions[8:12]] and encoders[1].calls == [captions[4:8], captions[12:13]]
    assert sum(map(len, encoders[0].calls + encoders[1].calls)) == 13  # each caption encoded once over both ranks
    for cache in caches:
        embeddings, _ = cache.lookup(captions)
        assert embeddings[:, 0, 0].tolist() == [float(len(caption)) for caption in captions]
    assert sorted(path.name for path in dirs[0].iterdir()) == [caches[0].path.name]  # rank 0 wrote its file
    assert (dirs[1] / caches[1].path.name).stat().st_mtime_ns == writes_before  # rank 1 never writes
    assert len(cache_module.CaptionEmbeddingCache("fake/encoder", 4, dirs[0])) == 13
