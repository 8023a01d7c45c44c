"""CatFacesDataModule: Kaggle's "Cat faces 64×64 (for generative models)", 15,747 unlabelled JPEGs."""

from __future__ import annotations

from typing import Any

from lightning_gen.data.image_files import IMAGE_SUFFIXES, ImageFileDataModule, ImageSample, find_image_files
from lightning_gen.errors import MissingDatasetError, UserError

DOWNLOAD_URL = "https://www.kaggle.com/datasets/spandan2/cats-faces-64x64-for-generative-models"


class CatFacesDataModule(ImageFileDataModule):
    """Cat faces, no labels. ``root`` is searched recursively (the download nests them as ``cats/cats/*.jpg``).

    Args:
        root: the unpacked download (any folder above the images works).
        Other arguments: see ImageFileDataModule. Faces are flipped horizontally by default.
    """

    dataset_name = "cat_faces"

    def __init__(
        self,
        root: str,
        **kwargs: Any,
    ):
        super().__init__(root, **kwargs)

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise MissingDatasetError("Cat faces 64×64", self.root, "a folder of cat face JPEGs such as cats/cats/*.jpg", DOWNLOAD_URL)

    def list_samples(self) -> list[ImageSample]:
        files = find_image_files(self.root)
        if not files:
            raise UserError(
                f"No images ({', '.join(IMAGE_SUFFIXES)}) found under '{self.root}'; "
                f"point data.root at the unpacked Cat faces download from {DOWNLOAD_URL}."
            )
        return [ImageSample(path=path) for path in files]
