"""How a source image becomes a model input: the one implementation shared by the datamodules' image
cache and the commands that take user images (``mix``, ``edit``, the app).

A checkpoint records its datamodule's preprocessing in its data facts (crop size, image size,
channels, resize filter), so a user's photo is cropped and resized exactly like the training images.

Every image is decoded by ``decode_file`` (files, streams) or ``preprocess_pil`` (an opened image):

- the EXIF orientation is applied, so a phone photo is upright as every viewer shows it (crop boxes
  are in those upright pixels);
- 16-bit and 32-bit images (PIL modes ``I;16``, ``I;16B``, ``I``: 0…65535; ``F``: 0…1) are scaled to
  8 bits, not clipped: 40 % grey stays 40 % grey (102);
- big images are never held whole more than once: JPEGs decode at 1/2, 1/4 or 1/8 scale (``draft``),
  other formats are box-reduced inside the crop (``reduce``) before the final resize;
- an image of more than ``max_image_pixels()`` pixels (50 megapixels unless the environment variable
  ``LIGHTNING_GEN_MAX_IMAGE_PIXELS`` says otherwise) is refused before any pixel is decoded, with an
  ``ImageTooLargeError`` naming the file and the limit; a dataset leaves such a file out like a corrupt one.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts

CropBox = tuple[int, int, int, int]  # x, y, width, height in source pixels
DRAFT_REDUCING_GAP = 2.0
RESIZE_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}
MAX_IMAGE_PIXELS_ENV = "LIGHTNING_GEN_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # a 50-megapixel photo is plenty; decoded it is 150 MB of RGB
ORIENTATION_TAG = 0x0112
# EXIF orientation → the transpose that shows the image upright (as PIL's ImageOps.exif_transpose applies it).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
TURNING = (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
# What PIL raises on corrupt, truncated, empty or unreadable files (UnidentifiedImageError is an OSError);
# ImageTooLargeError is a ValueError.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
# Opening an image (reading its header) runs PIL's own size check, whose warning names no file; ours does,
# so PIL's is silenced there. warnings.catch_warnings is process-wide state: the lock keeps threads apart,
# and a file's first HEADER_BYTES are read before taking it, so slow (network) disks do not queue on it.
_OPEN_LOCK = threading.Lock()
HEADER_BYTES = 256 * 1024


class ImageTooLargeError(ValueError):
    """An image with more pixels than ``max_image_pixels()``: refused before decoding, naming the file and the limit."""

    def __init__(self, name: str, pixels: int, limit: int, size: tuple[int, int] | None = None, at_least: bool = False):
        self.name, self.pixels, self.limit, self.size, self.at_least = name, pixels, limit, size, at_least
        super().__init__(f"{name} is {self.reason}.")

    @property
    def reason(self) -> str:
        """The message without the file's name (the dataset's warning names it already)."""
        what = f"{self.size[0]}×{self.size[1]} pixels" if self.size else f"{'at least ' if self.at_least else ''}{self.pixels:,} pixels"
        return (
            f"{what}, more than the limit of {self.limit:,}; set the environment variable "
            f"{MAX_IMAGE_PIXELS_ENV}={self.pixels} (or more) to decode it, or downscale the file"
        )


def max_image_pixels() -> int:
    """The largest image (width × height) decoded: ``$LIGHTNING_GEN_MAX_IMAGE_PIXELS``, else 50,000,000."""
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{MAX_IMAGE_PIXELS_ENV} is '{text}', not a positive number of pixels; set it to e.g. 100000000 or unset it.")
    return value


def open_image(source: BinaryIO, name: str) -> Image.Image:
    """The image in ``source`` (a binary stream), opened lazily (its header only); ImageTooLargeError, naming it
    ``name``, before any pixel is decoded when it has more than ``max_image_pixels()`` pixels."""
    limit = max_image_pixels()
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
            Image.MAX_IMAGE_PIXELS = limit  # the limit was raised: PIL's own check must not refuse first
        try:
            image = Image.open(source)
        except Image.DecompressionBombError as error:  # more than twice PIL's limit, so more than twice ours
            counted = re.search(r"\((\d+) pixels\)", str(error))  # PIL: "Image size (200000000 pixels) exceeds limit …"
            if counted:
                raise ImageTooLargeError(name, int(counted.group(1)), limit) from error
            raise ImageTooLargeError(name, 2 * (Image.MAX_IMAGE_PIXELS or limit) + 1, limit, at_least=True) from error
        except UnidentifiedImageError:
            raise UnidentifiedImageError(f"cannot identify image file {name!r}") from None  # not the stream's repr
    width, height = image.size
    if width * height > limit:
        raise ImageTooLargeError(name, width * height, limit, (width, height))
    return image


def read_upright(path: str | Path, mode: str = "RGB") -> Image.Image:
    """A whole image file, decoded as 8-bit ``mode`` and turned upright (EXIF), within the pixel limit: for
    callers that keep the stored resolution (evaluate's folder mode) instead of ``preprocess_pil``'s square."""
    with open(path, "rb") as stream, open_image(stream, str(path)) as image:
        return _eight_bit(ImageOps.exif_transpose(image), mode).convert(mode)


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
    def of(cls, facts: DataFacts) -> Preprocessing:
        """The preprocessing a checkpoint's training images went through, read from its data facts."""
        return cls(image_size=facts.image_size, crop_size=facts.crop_size)


def preprocess_pil(
    image: Image.Image, preprocessing: Preprocessing, crop_box: CropBox | None = None, channels: int = 3, resize_filter: str = "bicubic"
) -> np.ndarray:
    """A just-opened PIL image as a C×S×S uint8 array: upright, crop box, centre crop, resize; raises DECODE_ERRORS on a bad file."""
    size = preprocessing.image_size
    upright = _upright_transpose(image)
    width, height = image.size  # as stored; the crop is chosen in the upright picture
    shown_width, shown_height = (height, width) if upright in TURNING else (width, height)
    left, top, box_width, box_height = _clip_box(crop_box, shown_width, shown_height)
    side = min(box_width, box_height, preprocessing.crop_size or max(box_width, box_height))
    left += (box_width - side) / 2
    top += (box_height - side) / 2
    box = (left, top, left + side, top + side)
    if upright is not None:  # whole pixels of the upright picture, so that turning it back changes no rounding
        box = _stored_box(tuple(float(round(value)) for value in box), upright, shown_width, shown_height)
    # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; like PIL's thumbnail, keep at least twice
    # the final resolution so the bicubic resize, not the coarse DCT scaling, shapes the result.
    reduction = max(side / (size * DRAFT_REDUCING_GAP), 1.0)
    mode = "L" if channels == 1 else "RGB"
    image.draft(mode, (math.ceil(width / reduction), math.ceil(height / reduction)))
    scale_x, scale_y = image.size[0] / width, image.size[1] / height
    box = (box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y)
    square = _cut_square(_eight_bit(image, mode), box, size, mode)
    resized = square.resize((size, size), RESIZE_FILTERS[resize_filter])
    if upright is not None:
        resized = resized.transpose(upright)
    array = np.asarray(resized, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _upright_transpose(image: Image.Image) -> Image.Transpose | None:
    """The transpose its EXIF orientation asks for; None for upright images and unreadable EXIF."""
    try:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return None  # a broken EXIF block does not make the pixels unreadable
    return UPRIGHT.get(orientation) if isinstance(orientation, int) else None


def _stored_box(box: tuple[float, float, float, float], upright: Image.Transpose | None, width: float, height: float) -> tuple[float, ...]:
    """A box of the upright picture (``width`` × ``height``) in the stored pixels that ``upright`` turns into it."""
    if upright is None:
        return box
    back = {Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90}.get(
        upright, upright
    )
    corners = [_turn_point(back, x, y, width, height) for x, y in ((box[0], box[1]), (box[2], box[3]))]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return min(xs), min(ys), max(xs), max(ys)


def _turn_point(method: Image.Transpose, x: float, y: float, width: float, height: float) -> tuple[float, float]:
    """Where ``Image.transpose(method)`` takes the point (x, y) of a ``width`` × ``height`` image."""
    T = Image.Transpose
    return {
        T.FLIP_LEFT_RIGHT: (width - x, y),
        T.FLIP_TOP_BOTTOM: (x, height - y),
        T.ROTATE_180: (width - x, height - y),
        T.TRANSPOSE: (y, x),
        T.ROTATE_90: (y, width - x),
        T.ROTATE_270: (height - y, x),
        T.TRANSVERSE: (height - y, width - x),
    }[method]


def _eight_bit(image: Image.Image, mode: str) -> Image.Image:
    """The image as 8-bit ``L`` or ``RGB`` (or left as it is when it is one of those): 16- and 32-bit grey
    scaled to 0…255 (PIL's own conversion clips them, so a 40 % grey 16-bit PNG would become white)."""
    if image.mode.startswith("I;16") and image.mode != "I;16":
        image = image.convert("I")  # I;16B and friends: PIL converts them to I without loss, to L by clipping
    if image.mode in ("I;16", "I"):  # 0…65535 (what PNG, TIFF and PIL's 16-bit modes hold)
        return image.point(lambda value: value / 257 + 0.5).convert("L")
    if image.mode == "F":  # 0…1 (the float image convention)
        return image.point(lambda value: value * 255 + 0.5).convert("L")
    return image if image.mode in ("L", "RGB") else image.convert(mode)


def _cut_square(image: Image.Image, box: tuple[float, ...], size: int, mode: str) -> Image.Image:
    """The box, box-reduced by a whole factor to at most four times ``size`` a side, so a big image is never copied whole."""
    left, top, right, bottom = (round(value) for value in box)
    right, bottom = min(max(right, left + 1), image.width), min(max(bottom, top + 1), image.height)
    left, top = min(left, right - 1), min(top, bottom - 1)
    factor = max(int(min(right - left, bottom - top) // (size * DRAFT_REDUCING_GAP)), 1)
    if factor == 1:
        return image.crop((left, top, right, bottom)).convert(mode)
    trim_x, trim_y = (right - left) % factor, (bottom - top) % factor  # whole blocks only: no half-empty edge pixels
    left, top = left + trim_x // 2, top + trim_y // 2
    right, bottom = right - (trim_x - trim_x // 2), bottom - (trim_y - trim_y // 2)
    return image.reduce(factor, box=(left, top, right, bottom)).convert(mode)


def _clip_box(crop_box: CropBox | None, width: int, height: int) -> tuple[float, float, float, float]:
    if crop_box is None:
        return 0.0, 0.0, float(width), float(height)
    x, y, box_width, box_height = crop_box
    left, top = min(max(x, 0), width - 1), min(max(y, 0), height - 1)
    right, bottom = min(max(x + box_width, left + 1), width), min(max(y + box_height, top + 1), height)
    return float(left), float(top), float(right - left), float(bottom - top)


def decode_file(
    source: str | Path | BinaryIO, preprocessing: Preprocessing, crop_box: CropBox | None = None, name: str | None = None, **options: Any
) -> np.ndarray:
    """Every image file's way in: opened (ImageTooLargeError over the pixel limit), then ``preprocess_pil``.
    ``name`` names the image in messages (default: the path); ``options`` are ``channels`` and ``resize_filter``."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb", buffering=HEADER_BYTES) as stream:
            stream.peek(HEADER_BYTES)  # one read, outside open_image's lock
            return decode_file(stream, preprocessing, crop_box, name or str(source), **options)
    with open_image(source, name or "the image") as image:
        return preprocess_pil(image, preprocessing, crop_box, **options)


def load_user_image(source: str | Path | bytes | Image.Image, facts: DataFacts, name: str = "image") -> torch.Tensor:
    """A user's image file (any size up to the pixel limit, any format PIL reads) as a 1×C×S×S float tensor
    in [0, 1], preprocessed like the training images of the checkpoint whose ``facts`` are given."""
    preprocessing = Preprocessing.of(facts)
    options = {"channels": facts.channels, "resize_filter": facts.resize_filter}
    label = str(source) if isinstance(source, (str, Path)) else name
    try:
        if isinstance(source, Image.Image):
            array = preprocess_pil(source.copy(), preprocessing, **options)
        else:
            array = decode_file(io.BytesIO(source) if isinstance(source, bytes) else source, preprocessing, name=label, **options)
    except FileNotFoundError as error:
        raise UserError(f"{label} does not exist; pass the path of an image file.") from error
    except IsADirectoryError as error:
        raise UserError(f"{label} is a folder, not an image; pass the path of an image file.") from error
    except ImageTooLargeError as error:
        raise UserError(str(error)) from error
    except DECODE_ERRORS as error:
        raise UserError(
            f"{label} could not be read as an image ({type(error).__name__}); pass a JPEG, PNG or another format PIL reads."
        ) from error
    return torch.from_numpy(array.copy()).float().div(255.0)[None]
