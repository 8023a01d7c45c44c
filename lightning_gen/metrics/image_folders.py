"""Folder mode (like pytorch-fid's and clean-fid's CLIs): every image file under a folder, as N×3×S×S floats in [0, 1]."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor, resize

from lightning_gen.data.preprocess import ImageTooLargeError, read_upright
from lightning_gen.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; pass a folder of image files.")
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} files; pass a folder of images.")
    return files


def first_image_size(folder: str | Path) -> int:
    with Image.open(image_files(folder)[0]) as image:
        return min(image.size)


def load_folder(folder: str | Path, image_size: int) -> torch.Tensor:
    """Every image, converted to RGB and resized (shorter side, then centre crop) to ``image_size``."""
    images = []
    for path in image_files(folder):
        try:
            tensor = pil_to_tensor(read_upright(path))  # 16-bit scaled, EXIF applied, within the pixel limit
        except (OSError, ImageTooLargeError) as error:
            raise UserError(f"could not read image {path} ({error}); remove or replace it.") from error
        if tensor.shape[1:] != (image_size, image_size):
            tensor = resize(tensor, image_size, antialias=True)
            top, left = (tensor.shape[1] - image_size) // 2, (tensor.shape[2] - image_size) // 2
            tensor = tensor[:, top : top + image_size, left : left + image_size]
        images.append(tensor)
    return torch.stack(images).float() / 255


def describe_folder(folder: str | Path, image_size: int) -> dict[str, object]:
    """Cache identity of a reference folder: its files' names, sizes and modification times."""
    digest = hashlib.sha256()
    for path in image_files(folder):
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return {
        "class": "folder",
        "settings": {"path": str(Path(folder).resolve()), "files": digest.hexdigest()[:16], "image_size": image_size},
    }
