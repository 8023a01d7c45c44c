"""Reads a synthetic ImageFolder (``DIR/<class>/<image>``, as ``export`` writes it) into memory for a classifier.

A minimal reader for ``downstream``, kept here until the own-data ImageFolderDataModule
(lightning_gen/data/image_folder.py) can serve it. Class names come from metadata.jsonl's
``class_name`` where present (a name with '/' has a different folder name), else from the folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch.nn import functional as F
from torchvision.io import ImageReadMode, decode_image

from lightning_gen.errors import UserError
from lightning_gen.synthetic.metadata import read_metadata

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def folder_images(root: Path) -> list[tuple[str, str]]:
    """(file name relative to root, class name) for every image, from metadata.jsonl or else the folders."""
    rows = [row for row in read_metadata(root) if "class_name" in row]
    if rows:
        return [(row["file_name"], row["class_name"]) for row in rows]
    found = []
    for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
        found += [(str(file.relative_to(root)), folder.name) for file in sorted(folder.iterdir()) if file.suffix.lower() in IMAGE_SUFFIXES]
    return found


def read_image_folder(
    root: str | Path, class_names: Sequence[str], image_size: int, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N×C×H×W images resized to ``image_size``, labels as indices into ``class_names``)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--synthetic {root} is not a folder; pass the --out folder of an export.")
    listed = folder_images(root)
    if not listed:
        raise UserError(f"--synthetic {root} has no class folders with images; export a conditional model with --per_class first.")
    unknown = sorted({name for _, name in listed} - set(class_names))
    if unknown:
        raise UserError(
            f"--synthetic {root} has classes {unknown[:5]} that the real data lacks (its classes: {list(class_names)[:5]}...); "
            f"export from a model trained on the same classes or pass the matching --config."
        )
    index = {name: position for position, name in enumerate(class_names)}
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    images, labels = [], []
    for file_name, class_name in listed:
        path = root / file_name
        try:
            image = decode_image(str(path), mode=mode)
        except (RuntimeError, FileNotFoundError) as error:
            raise UserError(f"cannot read synthetic image {path} ({error}); delete it and re-run export to fill it in.") from error
        if image.shape[-2:] != (image_size, image_size):
            image = F.interpolate(image[None].float(), size=(image_size, image_size), mode="bilinear", antialias=True)[0]
            image = image.round().clamp(0, 255).to(torch.uint8)
        images.append(image)
        labels.append(index[class_name])
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)
