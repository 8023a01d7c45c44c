"""How a source image becomes a model input: the one implementation shared by the datamodules' image
cache and the commands that take user images (``mix``, ``edit``, the app).

A checkpoint records its datamodule's preprocessing in its data facts (crop size, image size,
channels, resize filter), so a user's photo is cropped and resized exactly like the training images.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts

CropBox = tuple[int, int, int, int]  # x, y, width, height in source pixels
DRAFT_REDUCING_GAP = 2.0
RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}
# What PIL raises on corrupt, truncated, empty or unreadable files (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
# User uploads above this many pixels are refused before decoding (a 100-megapixel photo is plenty).
MAX_USER_PIXELS = 100_000_000


@dataclass(frozen=True)
class Preprocessing:
    """How a source image becomes a square image of ``image_size`` pixels.

    Args:
        image_size: side of the square result, in pixels.
        crop_size: side of the centre crop taken before resizing (e.g. 148 for CelebA faces);
            None takes the largest centred square. Crops happen inside the crop box when one is given.
    """

    image_size: int
    crop_size: int | None = None

    @classmethod
    def of(cls, facts: DataFacts) -> "Preprocessing":
        """The preprocessing a checkpoint's training images went through, read from its data facts."""
        return cls(image_size=facts.image_size, crop_size=facts.crop_size)


def preprocess_pil(
    image: Image.Image, preprocessing: Preprocessing, crop_box: CropBox | None = None, channels: int = 3, resize_filter: str = "bicubic"
) -> np.ndarray:
    """A just-opened PIL image as a C×S×S uint8 array: crop box, centre crop, resize; raises DECODE_ERRORS on a bad file."""
    size = preprocessing.image_size
    width, height = image.size
    left, top, box_width, box_height = _clip_box(crop_box, width, height)
    side = min(box_width, box_height, preprocessing.crop_size or max(box_width, box_height))
    left += (box_width - side) / 2
    top += (box_height - side) / 2
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; like PIL's thumbnail, keep at least twice
    # the final resolution so the bicubic resize, not the coarse DCT scaling, shapes the result.
    reduction = max(side / (size * DRAFT_REDUCING_GAP), 1.0)
    mode = "L" if channels == 1 else "RGB"
    image.draft(mode, (math.ceil(width / reduction), math.ceil(height / reduction)))
    scale_x, scale_y = image.size[0] / width, image.size[1] / height
    box = (left * scale_x, top * scale_y, (left + side) * scale_x, (top + side) * scale_y)
    # Crop before resizing: resize(box=...) would blend in pixels from outside the box at its edges.
    cropped = image.crop(tuple(round(value) for value in box)).convert(mode)
    resized = cropped.resize((size, size), RESIZE_FILTERS[resize_filter])
    array = np.asarray(resized, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _clip_box(crop_box: CropBox | None, width: int, height: int) -> tuple[float, float, float, float]:
    if crop_box is None:
        return 0.0, 0.0, float(width), float(height)
    x, y, box_width, box_height = crop_box
    left, top = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    right, bottom = min(max(x + box_width, left + 1), width), min(max(y + box_height, top + 1), height)
    return float(left), float(top), float(right - left), float(bottom - top)


def decode_file(path: str | Path | BinaryIO, preprocessing: Preprocessing, crop_box: CropBox | None = None, **options: Any) -> np.ndarray:
    with Image.open(path) as image:
        return preprocess_pil(image, preprocessing, crop_box, **options)


def load_user_image(source: str | Path | bytes | Image.Image, facts: DataFacts, name: str = "image") -> torch.Tensor:
    """A user's image file (any size, any format PIL reads) as a 1×C×S×S float tensor in [0, 1],
    preprocessed like the training images of the checkpoint whose ``facts`` are given."""
    preprocessing = Preprocessing.of(facts)
    options = {"channels": facts.channels, "resize_filter": facts.resize_filter}
    label = str(source) if isinstance(source, (str, Path)) else name
    try:
        if isinstance(source, Image.Image):
            array = preprocess_pil(source.copy(), preprocessing, **options)
        else:
            stream = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(stream) as image:
                if image.width * image.height > MAX_USER_PIXELS:
                    raise UserError(
                        f"{label} is {image.width}×{image.height} pixels, more than {MAX_USER_PIXELS:,}; pass a smaller image."
                    )
                array = preprocess_pil(image, preprocessing, **options)
    except FileNotFoundError as error:
        raise UserError(f"{label} does not exist; pass the path of an image file.") from error
    except IsADirectoryError as error:
        raise UserError(f"{label} is a folder, not an image; pass the path of an image file.") from error
    except DECODE_ERRORS as error:
        raise UserError(f"{label} could not be read as an image ({type(error).__name__}); pass a JPEG, PNG or another format PIL reads.") from error
    return torch.from_numpy(array.copy()).float().div(255.0)[None]
