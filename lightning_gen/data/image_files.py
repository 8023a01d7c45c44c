"""The base of datamodules over datasets of image files: list samples, decode once into a cache, split, serve batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn

from lightning_gen.data.base import GenerativeDataModule
from lightning_gen.data.batched_dataset import BatchedImageDataset
from lightning_gen.data.image_cache import CachedImages, CropBox, Preprocessing, open_image_cache
from lightning_gen.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageSample:
    """One image file and what the dataset says about it.

    ``split`` is the dataset's official split ("train", "val" or "test"), None when it has none;
    ``crop_box`` (x, y, width, height in pixels) is cut out before the centre crop and resize.
    """

    path: Path
    label: int | None = None
    attributes: Sequence[float] | None = None
    caption: str | None = None
    split: str | None = None
    crop_box: CropBox | None = None


class BrokenLinksWarning(UserWarning):
    """Symbolic links in a dataset folder that lead nowhere (dangling) or back into a folder above them (a loop)."""


def find_image_files(root: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files anywhere under ``root`` (suffix case ignored), sorted so the order is the same on every machine.

    Linked folders are followed; links that lead nowhere or loop back into a folder above them are left
    out with one warning that counts them and names one.
    """
    files, broken = scan_folder(root, suffixes)
    if broken:
        rank_zero_warn(broken_links_message(root, broken), category=BrokenLinksWarning)
    return files


def scan_folder(root: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> tuple[list[Path], list[Path]]:
    """(sorted image files under ``root``, sorted symbolic links there that are dangling or loop)."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    files: list[Path] = []
    broken: list[Path] = []

    def visit(folder: Path, above: frozenset[tuple[int, int]]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            return  # an unreadable folder: like rglob, nothing under it
        for entry in entries:
            path = folder / entry.name
            try:
                if entry.is_dir():  # follows links
                    info = entry.stat()
                    identity = (info.st_dev, info.st_ino)
                    if identity in above:
                        broken.append(path)  # a link back into a folder above it
                    else:
                        visit(path, above | {identity})
                elif entry.is_file():
                    if path.suffix.lower() in suffixes:
                        files.append(path)
                elif entry.is_symlink():
                    broken.append(path)  # dangling, or a loop of links
            except OSError:  # ELOOP and friends while following a link
                broken.append(path)

    info = os.stat(root)
    visit(Path(root), frozenset({(info.st_dev, info.st_ino)}))
    return sorted(files), sorted(broken)


def broken_links_message(root: Path, broken: Sequence[Path]) -> str:
    example = broken[0].relative_to(root) if broken[0].is_relative_to(root) else broken[0]
    if len(broken) == 1:
        return f"1 symbolic link under {root} is dangling or loops and is left out: {example}; fix or delete it."
    return f"{len(broken)} symbolic links under {root} are dangling or loop and are left out, e.g. {example}; fix or delete them."


class ImageFileDataModule(GenerativeDataModule):
    """Subclasses implement ``check_root()`` and ``list_samples()``; they may override ``preprocessing``.

    ``prepare_data()`` (run by Lightning on one process per node) decodes every image once into the
    cache; ``setup()`` memory-maps it and splits it: the dataset's official splits when it has them
    (a seeded ``val_fraction`` of the training images when it has no validation split), else a
    seeded random ``val_fraction`` split.

    Args:
        root: the dataset folder, as distributed.
        cache_dir: where decoded images are cached; None uses ``$LIGHTNING_GEN_CACHE`` or ``~/.cache/lightning_gen``.
        Other arguments: see GenerativeDataModule.
    """

    dataset_name = "images"  # names the cache folder and the dataset in messages

    def __init__(
        self,
        root: str,
        cache_dir: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.cache_dir = cache_dir
        self.cache: CachedImages | None = None
        self._samples: list[ImageSample] | None = None

    def check_root(self) -> None:
        """Raises MissingDatasetError (naming path, expected layout and download URL) when ``root`` is not there."""
        raise NotImplementedError

    def list_samples(self) -> list[ImageSample]:
        """Every image of the dataset, in a fixed order; raises UserError on malformed metadata files."""
        raise NotImplementedError

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(image_size=self.image_size)

    @property
    def samples(self) -> list[ImageSample]:
        if self._samples is None:
            self.check_root()
            samples = self.list_samples()
            if not samples:
                raise UserError(f"No {self.dataset_name} images found under '{self.root}'; point data.root at the dataset folder.")
            self._samples = samples
        return self._samples

    def _open_cache(self, warn_skipped: bool) -> CachedImages:
        samples = self.samples
        return open_image_cache(
            [sample.path for sample in samples],
            self.root,
            self.preprocessing,
            self.dataset_name,
            self.cache_dir,
            crop_boxes=[sample.crop_box for sample in samples],
            warn_skipped=warn_skipped,
        )

    def prepare_data(self) -> None:
        self._open_cache(warn_skipped=False)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.cache = self._open_cache(warn_skipped=True)
        samples = self.samples
        labels = attributes = captions = None
        if all(sample.label is not None for sample in samples):
            labels = np.array([sample.label for sample in samples], dtype=np.int64)
        if all(sample.attributes is not None for sample in samples):
            attributes = np.array([sample.attributes for sample in samples], dtype=np.float32)
        if all(sample.caption is not None for sample in samples):
            captions = [str(sample.caption) for sample in samples]
        rows = split_rows([sample.split for sample in samples], self.cache.kept, self.val_fraction, self.seed)
        made = {name: BatchedImageDataset(self.cache.images, rows[name], labels, attributes, captions) for name in SPLITS}
        self.train_set, self.val_set = made["train"], made["val"]
        self.test_set = made["test"] if len(rows["test"]) else None


def split_rows(splits: Sequence[str | None], kept: np.ndarray, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Rows (source indices) of each split among the decoded images; images without an official split count as train."""
    kept = np.asarray(kept, dtype=np.int64)
    names = np.array([splits[row] or "train" for row in kept.tolist()], dtype=object)
    unknown = set(names.tolist()) - set(SPLITS)
    if unknown:
        raise ValueError(f"Unknown split names {sorted(unknown)}; use one of {SPLITS}.")
    rows = {name: kept[names == name] for name in SPLITS}
    if len(rows["val"]) == 0:
        rows["train"], rows["val"] = _hold_out(rows["train"], val_fraction, seed)
    return rows


def _hold_out(pool: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random share of ``pool``, never all of it; both parts sorted so memory-map reads stay sequential."""
    count = max(min(int(round(len(pool) * fraction)), len(pool) - 1), 0)
    if fraction > 0 and len(pool) > 1:
        count = max(count, 1)
    order = np.random.default_rng(seed).permutation(len(pool))
    return np.sort(pool[order[count:]]), np.sort(pool[order[:count]])
