"""Images/s of decoding JPEGs every epoch (torchvision ImageFolder) versus the decode-once cache (CatFacesDataModule).

    python benchmarks/data_pipeline.py                       # writes 3000 64×64 JPEGs to a temp folder
    python benchmarks/data_pipeline.py --root /data/cats --workers 0 2

Both pipelines serve the training set for ``--epochs`` epochs with random horizontal flips, as a
training run would see it; the cached pipeline's first epoch includes building the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from lightning_gen.data import CatFacesDataModule  # noqa: E402
from lightning_gen.data.augment import augment_batch, step_generator  # noqa: E402


def write_jpegs(root: Path, count: int, size: int = 64, classes: int = 4) -> None:
    """Smooth random colour fields plus noise: compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, size)
    for index in range(count):
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        phase = rng.uniform(0, 6.28, size=(3, 2))
        waves = [np.sin(6 * grid[:, None] + phase[c, 0]) * np.cos(4 * grid[None, :] + phase[c, 1]) for c in range(3)]
        pixels = np.stack(waves, -1) * 100 + 128 + rng.normal(0, 12, (size, size, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{index:05d}.jpg", quality=90)


def time_image_folder(root: Path, epochs: int, batch_size: int, workers: int, size: int) -> list[float]:
    transform = transforms.Compose([transforms.Resize(size), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    loader = DataLoader(
        datasets.ImageFolder(str(root), transform=transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    rates = []
    for _ in range(epochs):
        start, served = time.perf_counter(), 0
        for images, _labels in loader:
            served += images.shape[0]
        rates.append(served / (time.perf_counter() - start))
    return rates


def time_cached(root: Path, cache_dir: Path, epochs: int, batch_size: int, size: int) -> tuple[list[float], float]:
    datamodule = CatFacesDataModule(
        root=str(root), image_size=size, batch_size=batch_size, val_fraction=0.0, hflip=True, cache_dir=str(cache_dir)
    )
    rates, step = [], 0
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup("fit")
    build_seconds = time.perf_counter() - start
    loader = datamodule.train_dataloader()
    for epoch in range(epochs):
        if epoch > 0:
            start = time.perf_counter()
        loader.sampler.set_epoch(epoch)
        served = 0
        for batch in loader:
            # What GenerativeDataModule.on_after_batch_transfer does in training.
            generator = step_generator(datamodule.seed, step, batch["image"].device)
            batch["image"] = augment_batch(batch["image"], generator, datamodule.hflip, datamodule.max_rotation_degrees)
            served += batch["image"].shape[0]
            step += 1
        rates.append(served / (time.perf_counter() - start))
    return rates, build_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="a folder of JPEGs in class subfolders; default: write --num-images")
    parser.add_argument("--num-images", type=int, default=3000)
    parser.add_argument("--image-size", type=int, default=64, help="side of the images served")
    parser.add_argument("--source-size", type=int, help="side of the JPEGs written (default: --image-size); AFHQ: 512")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="DataLoader workers for ImageFolder, e.g. 0 2")
    parser.add_argument(
        "--torch-threads", type=int, help="torch intra-op threads (default: torch's); 1 avoids contention on a busy machine"
    )
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory(prefix="lightning_gen_bench_") as scratch:
        root = args.root
        if root is None:
            root = Path(scratch) / "images"
            write_jpegs(root, args.num_images, args.source_size or args.image_size)
        count = sum(1 for path in root.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
        baselines = {w: time_image_folder(root, args.epochs, args.batch_size, w, args.image_size) for w in args.workers}
        cached, build_seconds = time_cached(root, Path(scratch) / "cache", args.epochs, args.batch_size, args.image_size)

    source = f"{args.source_size}px JPEGs resized to " if args.source_size else "JPEGs, "
    print(
        f"\n{count} {source}{args.image_size}×{args.image_size}, batch {args.batch_size}, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}; images/s per epoch:\n"
    )
    columns = [f"ImageFolder+PIL, {w} workers" for w in args.workers] + ["decode-once cache, 0 workers"]
    columns += [f"speed-up vs {w} workers" for w in args.workers]
    print("| epoch | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for epoch in range(args.epochs):
        cells = [f"{baselines[w][epoch]:,.0f}" for w in args.workers] + [f"{cached[epoch]:,.0f}"]
        cells += [f"{cached[epoch] / baselines[w][epoch]:.1f}×" for w in args.workers]
        note = " (incl. cache build)" if epoch == 0 else ""
        print(f"| {epoch + 1}{note} | " + " | ".join(cells) + " |")
    print(f"\nCache build (decode {count} files once, {os.cpu_count()} threads): {build_seconds:.2f} s")


if __name__ == "__main__":
    main()
