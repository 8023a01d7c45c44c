"""AwA2DataModule: Animals with Attributes 2 (50 classes, 85 class-level attributes), a subset of classes and attributes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.data.image_files import ImageFileDataModule, ImageSample, find_image_files
from lightning_gen.data.index_files import parse_binary_matrix, parse_numbered_names, read_index_text
from lightning_gen.errors import MissingDatasetError, UserError
from lightning_gen.facts import DataFacts

DOWNLOAD_URL = "https://cvml.ista.ac.at/AwA2/"
EXPECTED_LAYOUT = "JPEGImages/<class>/*.jpg, classes.txt, predicates.txt and predicate-matrix-binary.txt"
# Seed 000's stage 1.
DEFAULT_CLASSES = ("horse", "skunk", "sheep", "bat")
DEFAULT_ATTRIBUTES = ("black", "white", "small", "tail", "fast", "strong")


def pick(names: Sequence[str], chosen: Sequence[str], option: str, source: Path) -> list[int]:
    """Indices of ``chosen`` in ``names``; UserError naming the unknown ones and the valid names."""
    unknown = [name for name in chosen if name not in names]
    if unknown:
        raise UserError(f"data.{option} {', '.join(unknown)} not in {source}; use names from: {', '.join(names)}.")
    return [list(names).index(name) for name in chosen]


class AwA2DataModule(ImageFileDataModule):
    """AwA2 images of the chosen ``classes``; ``label`` = index among them, ``attributes`` = their class's row of
    the binary predicate matrix restricted to the chosen ``attributes``.

    Args:
        root: the ``Animals_with_Attributes2`` folder.
        classes: class names as in classes.txt (``+`` for spaces, e.g. ``killer+whale``).
        attributes: attribute names as in predicates.txt.
        Other arguments: see ImageFileDataModule (seed 000: rotation ≤ 15° and horizontal flips).
    """

    dataset_name = "awa2"

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = DEFAULT_CLASSES,
        attributes: Sequence[str] = DEFAULT_ATTRIBUTES,
        **kwargs: Any,
    ):
        super().__init__(root, **kwargs)
        if not classes or not attributes:
            raise UserError("data.classes and data.attributes must each name at least one entry.")
        self.classes, self.attributes = tuple(classes), tuple(attributes)

    @property
    def facts(self) -> DataFacts:
        return DataFacts(image_size=self.image_size, channels=3, class_names=self.classes, attribute_names=self.attributes)

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise MissingDatasetError("AwA2", self.root, EXPECTED_LAYOUT, DOWNLOAD_URL)
        for name in ("classes.txt", "predicates.txt", "predicate-matrix-binary.txt"):
            if not (self.root / name).is_file():
                raise MissingDatasetError("AwA2 " + name, self.root / name, EXPECTED_LAYOUT, DOWNLOAD_URL)

    def list_samples(self) -> list[ImageSample]:
        class_names = parse_numbered_names(read_index_text(self.root / "classes.txt"), self.root / "classes.txt")
        attribute_names = parse_numbered_names(read_index_text(self.root / "predicates.txt"), self.root / "predicates.txt")
        matrix_path = self.root / "predicate-matrix-binary.txt"
        matrix = parse_binary_matrix(read_index_text(matrix_path), matrix_path, len(class_names), len(attribute_names))
        class_rows = pick(class_names, self.classes, "classes", self.root / "classes.txt")
        columns = pick(attribute_names, self.attributes, "attributes", self.root / "predicates.txt")
        samples = []
        for label, row in enumerate(class_rows):
            folder = self.root / "JPEGImages" / class_names[row]
            if not folder.is_dir():
                raise MissingDatasetError(f"AwA2 class '{class_names[row]}'", folder, "its JPEGs", DOWNLOAD_URL)
            attributes = tuple(float(value) for value in matrix[row, columns])
            samples += [ImageSample(path=path, label=label, attributes=attributes) for path in find_image_files(folder)]
        return samples
