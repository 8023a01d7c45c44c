"""An AFHQ folder in the real layout (<split>/<cat|dog|wild>/flickr_*.jpg), for tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lightning_gen.data import AnimalFacesDataModule

COUNTS = {"train": 3, "val": 2}


def write_afhq(root: Path) -> None:
    for split, count in COUNTS.items():
        for index, name in enumerate(("cat", "dog", "wild")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for number in range(count):
                Image.new("RGB", (32, 32), (index * 100, number * 50, 0)).save(folder / f"flickr_{name}_{number:06d}.jpg")


def make(root: Path, tmp_path: Path, **kwargs) -> AnimalFacesDataModule:
    return AnimalFacesDataModule(root=str(root), image_size=8, batch_size=4, cache_dir=str(tmp_path / "cache"), **kwargs)
