"""Reads a synthetic ImageFolder (``DIR/<class>/<image>`` with ``metadata.jsonl``, as ``export`` writes it)
into memory for a classifier.

The images are listed by the own-data ``ImageFolderDataModule`` (class folders, or the metadata's
``class_name``, which wins over a folder name that had to differ), with the real data's class names
as the vocabulary, so a class the real data lacks is an error; they are then decoded at the real
data's size and channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F
from torchvision.io import ImageReadMode, decode_image

from lightning_gen.data.image_folder import ImageFolderDataModule
from lightning_gen.errors import UserError


def read_image_folder(
    root: str | Path, class_names: Sequence[str], image_size: int, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N×C×H×W images resized to ``image_size``, labels as indices into ``class_names``)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--synthetic {root} is not a folder; pass the --out folder of an export.")
    try:
        samples = ImageFolderDataModule(str(root), classes=list(class_names), image_size=image_size).list_samples()
    except UserError as error:
        problem = str(error).split(";")[0].rstrip(".")  # the image and its label, without the datamodule's own advice
        raise UserError(
            f"--synthetic {root} does not match the real data ({problem}); export from a model trained on the real data's classes "
            "or pass the --config of the data the model was trained on."
        ) from error
    if not samples or samples[0].label is None:
        raise UserError(f"--synthetic {root} has no class folders with images; export a conditional model with --per_class first.")
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    images = []
    for sample in samples:
        try:
            image = decode_image(str(sample.path), mode=mode)
        except (RuntimeError, FileNotFoundError) as error:
            raise UserError(f"cannot read synthetic image {sample.path} ({error}); delete it and re-run export to fill it in.") from error
        if image.shape[-2:] != (image_size, image_size):
            image = F.interpolate(image[None].float(), size=(image_size, image_size), mode="bilinear", antialias=True)[0]
            image = image.round().clamp(0, 255).to(torch.uint8)
        images.append(image)
    return torch.stack(images), torch.tensor([sample.label for sample in samples], dtype=torch.long)
