"""Caption-embedding cache vs encoding every batch, measured in the same run (issue 21: ≥ 2× asked, 1.36× before).

Two tables:

1. Training steps/s of the text-conditioned DDPM (UNet 32/64/64, 32×32 shapes, batch 32) whose captions are
   encoded by a T5 of t5-v1_1-base's size (768-d, 12 layers, random weights: the cost per batch of the real one,
   which cannot be downloaded here) at every batch, vs read from the cache that ``DDPM.on_fit_start`` filled
   before the first step (the fill's own time is reported beside it, and is not part of either rate).
2. Filling the cache for per-image captions (every image its own caption, a tiny encoder so that the file I/O
   shows): the earlier per-batch path (each training batch's new captions encoded and the whole file rewritten,
   ``lookup``) vs one ``fill`` before training: wall time, files written and bytes written.

    python benchmarks/caption_cache.py [--steps 30] [--warmup 5] [--captions 4096]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen.data import ShapesDataModule
from lightning_gen.models import DDPM
from lightning_gen.text import cache as cache_module
from lightning_gen.text.cache import CaptionEmbeddingCache
from lightning_gen.text.t5 import FrozenT5
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

MAX_LENGTH = 8
BATCH = 32


class EncodeEveryBatch:
    """The baseline: the frozen encoder runs on every batch's captions (its weights stay on the device)."""

    def __init__(self, encoder_dir: str):
        self.encoder = FrozenT5(encoder_dir)

    def fill(self, *args, **kwargs) -> int:
        return 0

    def lookup(self, captions: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        embeddings, mask = self.encoder.to(device).encode(list(captions), MAX_LENGTH)
        return embeddings.to(device), mask.to(device)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup = warmup

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.perf_counter()

    def on_train_start(self, trainer, pl_module):
        self.fill_seconds = time.perf_counter() - self.fit_start  # DDPM.on_fit_start ran in between

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.steps_per_second = (trainer.global_step - self.warmup) / (time.perf_counter() - self.start)


def training_rate(encoder_dir: Path, cache_dir: Path, use_cache: bool, steps: int, warmup: int) -> tuple[float, float]:
    pl.seed_everything(0, verbose=False)
    data = ShapesDataModule(num_images=2000, image_size=32, batch_size=BATCH)
    model = DDPM(
        data.facts,
        conditioning="text",
        text_encoder=str(encoder_dir),
        max_text_length=MAX_LENGTH,
        text_cache_dir=str(cache_dir),
        unet={"block_out_channels": [32, 64, 64], "layers_per_block": 1},
    )
    if not use_cache:
        model.text_cache = EncodeEveryBatch(str(encoder_dir))
    timer = StepTimer(warmup)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[timer])  # fmt: skip
    trainer.fit(model, data)
    return timer.steps_per_second, timer.fill_seconds


class CountedWrites:
    """Counts the cache file's writes and their bytes (lightning_gen.text.cache writes through replace_file)."""

    def __init__(self):
        self.files, self.bytes = 0, 0
        self.real = cache_module.replace_file

    def __call__(self, target, data) -> None:
        self.files, self.bytes = self.files + 1, self.bytes + len(data)
        self.real(target, data)


def per_image_fill(encoder_dir: Path, scratch: Path, count: int) -> dict[str, tuple[float, int, int]]:
    captions = [f"{caption} number {index}" for index, caption in zip(range(count), shapes_captions() * (count // 48 + 1))]
    results = {}
    for name in ("per batch (lookup of each batch's new captions)", "once before training (fill)"):
        cache = CaptionEmbeddingCache(str(encoder_dir), MAX_LENGTH, scratch / name.split()[0])
        writes = CountedWrites()
        cache_module.replace_file = writes
        try:
            start = time.perf_counter()
            if name.startswith("per batch"):
                for first in range(0, count, BATCH):
                    cache.lookup(captions[first : first + BATCH])
            else:
                cache.fill(captions)
            results[name] = (time.perf_counter() - start, writes.files, writes.bytes)
        finally:
            cache_module.replace_file = writes.real
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--captions", type=int, default=4096, help="per-image captions for the fill table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        encoder_dir = build_tiny_t5(scratch / "t5_base_sized", shapes_captions(), d_model=768, num_layers=12, num_heads=12)
        every, _ = training_rate(encoder_dir, scratch / "cache_unused", False, args.steps, args.warmup)
        cached, fill_seconds = training_rate(encoder_dir, scratch / "cache", True, args.steps, args.warmup)
        tiny_dir = build_tiny_t5(scratch / "t5_tiny", shapes_captions() + ["number"] + [str(i) for i in range(10)], d_model=64)
        fills = per_image_fill(tiny_dir, scratch / "fills", args.captions)
    print(
        f"\nText DDPM (UNet 32/64/64, 32×32 shapes, batch {BATCH}), T5 base-sized encoder, {args.steps} steps "
        f"({args.warmup} warm-up left out), torch threads {torch.get_num_threads()}\n"
    )
    print("| captions | training steps/s |")
    print("|---|---|")
    print(f"| encoded every batch | {every:.2f} |")
    print(f"| cached (filled before the first step in {fill_seconds:.2f} s) | {cached:.2f} |")
    print(f"\nspeed-up: {cached / every:.2f}×\n")
    print(f"Filling the cache for {args.captions} per-image captions (tiny T5, d_model 64, batches of {BATCH}):\n")
    print("| path | seconds | files written | MB written |")
    print("|---|---|---|---|")
    for name, (seconds, files, written) in fills.items():
        print(f"| {name} | {seconds:.2f} | {files} | {written / 1e6:.1f} |")


if __name__ == "__main__":
    main()
