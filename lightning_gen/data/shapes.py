"""ShapesDataModule: the built-in dataset. No download; identical images from the same seed on any machine."""

from __future__ import annotations

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt

from lightning_gen.console.option_errors import whole_number
from lightning_gen.data.base import GenerativeDataModule
from lightning_gen.data.batched_dataset import BatchedImageDataset
from lightning_gen.data.shapes_lazy import LazyShapeImages
from lightning_gen.data.shapes_render import COLOURS, SHAPES, SIZES, draw_shapes
from lightning_gen.facts import DataFacts


class ShapesDataModule(GenerativeDataModule):
    """One shape (circle, square, triangle, cross) in one of 6 colours and 2 sizes, at a random position.

    Each image has a class label (colour × shape, e.g. ``red circle``: 24 classes), a multi-hot
    attribute vector over ``red … cyan, circle … cross, small, large`` and a caption
    (``a large red circle``).

    Args:
        num_images: images generated in total (train + validation).
        Other arguments: see GenerativeDataModule. Shapes are not flipped or rotated by default
        (a flipped triangle would change class meaning for future orientation attributes).
    """

    def __init__(
        self,
        num_images: PositiveInt = 8000,
        image_size: PositiveInt = 32,
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        hflip: bool = False,
        max_rotation_degrees: float = 0.0,
    ):
        num_images = whole_number(num_images, "data.num_images")
        super().__init__(image_size, batch_size, num_workers, val_fraction, seed, hflip, max_rotation_degrees)
        self.num_images = num_images

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return (*COLOURS, *SHAPES, *SIZES)

    @property
    def facts(self) -> DataFacts:
        return DataFacts(
            image_size=self.image_size,
            channels=3,
            class_names=self.class_names,
            attribute_names=self.attribute_names,
            has_captions=True,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        rendered = draw_shapes(self.num_images, self.seed)  # the pixels are rendered as batches ask for them
        n_colours, n_shapes = len(COLOURS), len(SHAPES)
        labels = (rendered.colour * n_shapes + rendered.shape).numpy()
        attributes = torch.zeros(self.num_images, len(self.attribute_names))
        rows = torch.arange(self.num_images)
        attributes[rows, rendered.colour] = 1
        attributes[rows, n_colours + rendered.shape] = 1
        attributes[rows, n_colours + n_shapes + rendered.size] = 1
        size_names, colour_names = list(SIZES), list(COLOURS)
        captions = [
            f"a {size_names[s]} {colour_names[c]} {SHAPES[k]}"
            for s, c, k in zip(rendered.size.tolist(), rendered.colour.tolist(), rendered.shape.tolist())
        ]
        images = LazyShapeImages(rendered, self.image_size)
        num_val = max(1, int(round(self.num_images * self.val_fraction)))
        # The images are i.i.d. draws, so the last rows are as random a split as any.
        splits = {"train": np.arange(self.num_images - num_val), "val": np.arange(self.num_images - num_val, self.num_images)}
        made = {name: BatchedImageDataset(images, split_rows, labels, attributes.numpy(), captions) for name, split_rows in splits.items()}
        self.train_set, self.val_set = made["train"], made["val"]
