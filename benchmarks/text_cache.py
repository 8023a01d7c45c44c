"""Training steps/s of the text-conditioned DDPM with the caption-embedding cache vs encoding every batch.

Same model, same data, one run. The encoder is a T5 of t5-v1_1-base's size (768-d, 12 layers,
12 heads) with random weights and a tokenizer built from the shapes captions: its cost per
batch is that of the real one, which cannot be downloaded here. Training runs through
Lightning's Trainer; the first steps (which fill the cache) are left out of the rate.

    python benchmarks/text_cache.py [--steps 30] [--warmup 5]
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
from lightning_gen.text.t5 import FrozenT5
from lightning_gen.text.tiny_t5 import build_tiny_t5, shapes_captions

MAX_LENGTH = 8


class EncodeEveryBatch:
    """The baseline: run the frozen encoder on every batch's captions."""

    def __init__(self, encoder_dir: str):
        self.encoder = FrozenT5(encoder_dir)

    def lookup(self, captions: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        embeddings, mask = self.encoder.to(device).encode(list(captions), MAX_LENGTH)
        return embeddings.to(device), mask.to(device)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.times = warmup, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.steps_per_second = (trainer.global_step - self.warmup) / (time.perf_counter() - self.start)


def measure(encoder_dir: Path, cache_dir: Path, use_cache: bool, steps: int, warmup: int) -> float:
    pl.seed_everything(0, verbose=False)
    data = ShapesDataModule(num_images=2000, image_size=32, batch_size=32)
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
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(model, data)
    return timer.steps_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        encoder_dir = build_tiny_t5(Path(scratch) / "t5_base_sized", shapes_captions(), d_model=768, num_layers=12, num_heads=12)
        every = measure(encoder_dir, Path(scratch) / "cache_unused", False, args.steps, args.warmup)
        cached = measure(encoder_dir, Path(scratch) / "cache", True, args.steps, args.warmup)
    print(
        f"\nText DDPM (UNet 32/64/64, 32×32 shapes, batch 32), T5 base-sized encoder, {args.steps} steps "
        f"({args.warmup} warm-up left out), torch threads {torch.get_num_threads()}\n"
    )
    print("| captions | training steps/s |")
    print("|---|---|")
    print(f"| encoded every batch | {every:.2f} |")
    print(f"| cached once (CaptionEmbeddingCache) | {cached:.2f} |")
    print(f"\nspeed-up: {cached / every:.2f}×")


if __name__ == "__main__":
    main()
