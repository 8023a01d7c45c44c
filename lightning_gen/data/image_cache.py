"""Decode-once image cache: every source image is decoded, cropped and resized once into one uint8 ``.npy`` file.

Training then reads batches from a memory map instead of decoding JPEGs every epoch. The cache
is keyed by the preprocessing settings and the (path, size, mtime, crop box) of every file, so
a changed setting or file list builds a new cache; old caches stay until the user deletes them.
Files that cannot be decoded (corrupt, truncated, or over the pixel limit of ``preprocess.max_image_pixels()``)
are left out with one warning that names them, never silently; a file left out for its size is decoded
once the limit is raised above it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn

from lightning_gen.console.progress import Progress
from lightning_gen.data.preprocess import DECODE_ERRORS, CropBox, ImageTooLargeError, Preprocessing, decode_file, max_image_pixels
from lightning_gen.errors import UserError

CACHE_FORMAT_VERSION = 2  # 2: EXIF orientation applied, 16-bit images scaled instead of clipped
DECODE_CHUNK = 512  # bounds the number of decoded-but-unwritten images held at once
SKIPPED_NAMED_IN_WARNING = 10


class SkippedImagesWarning(UserWarning):
    """Some source images could not be decoded and are left out of the dataset."""


@dataclass(frozen=True)
class CachedImages:
    """A loaded cache. Row ``i`` of ``images`` is source file ``i``; rows of skipped files are black and not in ``kept``."""

    images: MappedImages
    kept: np.ndarray
    skipped: tuple[str, ...]
    location: Path


class MappedImages:
    """The cache's N×3×H×W uint8 array, memory-mapped on first use.

    It pickles as its path, so DataLoader worker processes re-open the map instead of copying the array.
    """

    def __init__(self, path: Path):
        self.path = path
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.array[index]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.array, dtype=dtype)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_array": None}


def default_cache_dir() -> Path:
    """``$LIGHTNING_GEN_CACHE`` if set, else ``~/.cache/lightning_gen`` (dataset folders are often read-only)."""
    return Path(os.environ.get("LIGHTNING_GEN_CACHE") or Path.home() / ".cache" / "lightning_gen")


class ImageSource:
    """An image that is not a file of its own (e.g. a row of a Hugging Face dataset): ``open()`` gives a binary
    file object PIL can read, ``key`` identifies its content in the cache key, ``str()`` names it in warnings."""

    key: str

    def open(self) -> Any:
        raise NotImplementedError


def _is_file(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def decode_image(path: Path | ImageSource, preprocessing: Preprocessing, crop_box: CropBox | None = None) -> np.ndarray:
    """Returns the preprocessed image as a 3×S×S uint8 array; raises one of DECODE_ERRORS on a bad file."""
    return decode_file(path if _is_file(path) else path.open(), preprocessing, crop_box, name=str(path))


def cache_key(files: Sequence[Path], root: Path, preprocessing: Preprocessing, crop_boxes: Sequence[CropBox | None]) -> str:
    digest = hashlib.sha1(json.dumps({"version": CACHE_FORMAT_VERSION, **asdict(preprocessing)}).encode())
    for path, crop_box in zip(files, crop_boxes):
        if not _is_file(path):
            digest.update(f"{path.key}\0{crop_box}\n".encode())
            continue
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # a missing file is skipped at decode time; its later arrival changes the key
        digest.update(f"{_relative(path, root)}\0{size}\0{mtime}\0{crop_box}\n".encode())
    return digest.hexdigest()


def _relative(path: Path, root: Path) -> str:
    if not _is_file(path):
        return str(path)
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def open_image_cache(
    files: Sequence[Path],
    root: str | Path,
    preprocessing: Preprocessing,
    dataset: str,
    cache_dir: str | Path | None = None,
    crop_boxes: Sequence[CropBox | None] | None = None,
    warn_skipped: bool = True,
) -> CachedImages:
    """Loads the cache for these files and settings, building it first when it does not exist yet."""
    root = Path(root)
    crop_boxes = list(crop_boxes) if crop_boxes is not None else [None] * len(files)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / dataset
    key = cache_key(files, root, preprocessing, crop_boxes)
    array_path = folder / f"{preprocessing.image_size}px-{key[:20]}.npy"
    sidecar_path = array_path.with_suffix(".json")
    cached = _load(array_path, sidecar_path, len(files), preprocessing.image_size)
    if cached is None:
        _make_folder(folder)
        _build(files, root, preprocessing, dataset, crop_boxes, array_path, sidecar_path)
        cached = _load(array_path, sidecar_path, len(files), preprocessing.image_size)
        if cached is None:
            raise RuntimeError(f"The image cache just written to {array_path} could not be read back.")
    if warn_skipped and cached.skipped:
        rank_zero_warn(_skipped_message(dataset, cached.skipped, len(files), sidecar_path), category=SkippedImagesWarning)
    return cached


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unwritable(folder, error) from error


def _unwritable(folder: Path, error: OSError) -> UserError:
    return UserError(
        f"Cannot write the image cache to '{folder}' ({error.strerror or error}); "
        "set data.cache_dir or the LIGHTNING_GEN_CACHE environment variable to a writable folder."
    )


def _load(array_path: Path, sidecar_path: Path, count: int, image_size: int) -> CachedImages | None:
    """The cache, or None when it is absent or unusable (then it is rebuilt)."""
    if not (array_path.exists() and sidecar_path.exists()):
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
        images = MappedImages(array_path)
        shape_ok = images.shape == (count, 3, image_size, image_size)
        skipped_indices = {entry["index"] for entry in sidecar["skipped"]}
        skipped = tuple(f"{entry['path']} ({entry['reason']})" for entry in sidecar["skipped"])
        # Files left out for their size are decoded once the pixel limit has been raised above them.
        now_allowed = any(entry.get("pixels") is not None and entry["pixels"] <= max_image_pixels() for entry in sidecar["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not shape_ok or sidecar.get("count") != count or now_allowed:
        return None
    kept = np.array([index for index in range(count) if index not in skipped_indices], dtype=np.int64)
    return CachedImages(images=images, kept=kept, skipped=skipped, location=array_path)


def _build(
    files: Sequence[Path],
    root: Path,
    preprocessing: Preprocessing,
    dataset: str,
    crop_boxes: Sequence[CropBox | None],
    array_path: Path,
    sidecar_path: Path,
) -> None:
    size = preprocessing.image_size
    # A unique temp name, renamed atomically once complete: a crash or a concurrent build never leaves a half cache.
    temp_path = array_path.with_name(f".{array_path.stem}-{uuid.uuid4().hex[:8]}.npy")
    try:
        images = np.lib.format.open_memmap(temp_path, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
    except OSError as error:
        raise _unwritable(array_path.parent, error) from error
    failures: dict[int, str] = {}
    too_large: dict[int, int] = {}  # pixels of the files left out for their size

    def decode_into_row(index: int) -> None:
        try:
            images[index] = decode_image(files[index], preprocessing, crop_boxes[index])  # noqa: F821 (the memmap is deleted only after every row is written)
        except ImageTooLargeError as error:
            failures[index], too_large[index] = error.reason, error.pixels
        except DECODE_ERRORS as error:
            # PIL often repeats the path in its message; the warning names the file already.
            reason = str(error).replace(f" '{files[index]}'", "").replace(str(files[index]), "").strip()
            failures[index] = reason or type(error).__name__

    try:
        progress = Progress(f"Decoding {dataset} once", total=len(files), unit="img")  # a line every 30 s in a pipe
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, progress:
            for start in range(0, len(files), DECODE_CHUNK):
                chunk = range(start, min(start + DECODE_CHUNK, len(files)))
                list(pool.map(decode_into_row, chunk))
                progress.update(len(chunk))
        if files and len(failures) == len(files):
            first = min(failures)
            raise UserError(
                f"None of the {len(files)} {dataset} images under '{root}' could be decoded "
                f"(first: {files[first]}: {failures[first]}); check that data.root points at the image files."
            )
        images.flush()
        del images
        os.replace(temp_path, array_path)
    finally:
        temp_path.unlink(missing_ok=True)
    sidecar = {
        "dataset": dataset,
        "root": str(root),
        "preprocessing": asdict(preprocessing),
        "count": len(files),
        "kept": [_relative(files[index], root) for index in range(len(files)) if index not in failures],
        "skipped": [
            {"index": index, "path": _relative(files[index], root), "reason": failures[index], "pixels": too_large.get(index)}
            for index in sorted(failures)
        ],
    }
    temp_sidecar = sidecar_path.with_name(f".{sidecar_path.name}-{uuid.uuid4().hex[:8]}")
    temp_sidecar.write_text(json.dumps(sidecar, indent=1))
    os.replace(temp_sidecar, sidecar_path)  # written last: its presence marks the cache complete


def _skipped_message(dataset: str, skipped: Sequence[str], total: int, sidecar_path: Path) -> str:
    named = ", ".join(skipped[:SKIPPED_NAMED_IN_WARNING])
    more = f" and {len(skipped) - SKIPPED_NAMED_IN_WARNING} more" if len(skipped) > SKIPPED_NAMED_IN_WARNING else ""
    return (
        f"{len(skipped)} of {total} {dataset} images could not be decoded and are left out: {named}{more} "
        f"(full list in {sidecar_path}); replace or delete those files to include or silence them."
    )
