"""AnimalFacesDataModule: AFHQ (Kaggle andrewmvd/animal-faces), 512×512 cat, dog and wild faces with an official split."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_gen.data.image_files import ImageFileDataModule, ImageSample, find_image_files
from lightning_gen.errors import MissingDatasetError, UserError
from lightning_gen.facts import DataFacts

DOWNLOAD_URL = "https://www.kaggle.com/datasets/andrewmvd/animal-faces"
EXPECTED_LAYOUT = "train/{cat,dog,wild}/*.jpg and val/{cat,dog,wild}/*.jpg"
ALL_CLASSES = ("cat", "dog", "wild")
SPLITS = ("train", "val")


class AnimalFacesDataModule(ImageFileDataModule):
    """Animal faces with ``label`` = index of the image's folder among ``classes``; the official train/val split.

    Args:
        root: the ``afhq`` folder holding ``train/`` and ``val/``.
        classes: any of cat, dog, wild (seed 000's stage 2 used all three).
        Other arguments: see ImageFileDataModule.
    """

    dataset_name = "animal_faces"

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = ALL_CLASSES,
        **kwargs: Any,
    ):
        super().__init__(root, **kwargs)
        unknown = [name for name in classes if name not in ALL_CLASSES]
        if unknown or not classes:
            raise UserError(f"data.classes {', '.join(unknown) or '(empty)'} is not an AFHQ class; use some of: {', '.join(ALL_CLASSES)}.")
        self.classes = tuple(classes)

    @property
    def facts(self) -> DataFacts:
        return DataFacts(image_size=self.image_size, channels=3, class_names=self.classes)

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise MissingDatasetError("Animal Faces (AFHQ)", self.root, EXPECTED_LAYOUT, DOWNLOAD_URL)
        for split in SPLITS:
            for name in self.classes:
                if not (self.root / split / name).is_dir():
                    raise MissingDatasetError(f"AFHQ {split}/{name}", self.root / split / name, EXPECTED_LAYOUT, DOWNLOAD_URL)

    def list_samples(self) -> list[ImageSample]:
        return [
            ImageSample(path=path, label=label, split=split)
            for split in SPLITS
            for label, name in enumerate(self.classes)
            for path in find_image_files(self.root / split / name)
        ]
