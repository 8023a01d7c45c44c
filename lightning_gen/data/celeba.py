"""CelebADataModule: 202,599 aligned celebrity faces (178×218) with 40 binary attributes and an official split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonargparse.typing import PositiveInt

from lightning_gen.console.option_errors import whole_number
from lightning_gen.data.image_cache import Preprocessing
from lightning_gen.data.image_files import ImageFileDataModule, ImageSample
from lightning_gen.data.index_files import parse_attribute_table, parse_partition, read_index_text
from lightning_gen.errors import MissingDatasetError, UserError
from lightning_gen.facts import DataFacts

DOWNLOAD_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or Kaggle: jessicali9530/celeba-dataset)"
EXPECTED_LAYOUT = "img_align_celeba/*.jpg and list_attr_celeba.txt (list_eval_partition.txt optional)"
# Fixed by the dataset, so the facts (read before setup) need no file.
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
# The official release nests files in Anno/, Eval/ and Img/; Kaggle's mirror uses .csv tables and a doubled image folder.
SEARCHED_FOLDERS = ("", "Anno", "Eval", "Img")


class CelebADataModule(ImageFileDataModule):
    """CelebA faces with the 40 attributes as a 0/1 vector (batch key ``attributes``).

    Args:
        root: folder holding ``img_align_celeba/`` and ``list_attr_celeba.txt`` (and ``list_eval_partition.txt``,
            whose official train/val/test split is used when present).
        crop_size: side of the centre crop taken before resizing to ``image_size`` (148 is the common face crop).
        max_images: use only the first N images in file order (seed 001 used 50,000); those are all official
            training images, so validation images are then a seeded ``val_fraction`` of them.
        Other arguments: see ImageFileDataModule.
    """

    dataset_name = "celeba"

    def __init__(
        self,
        root: str,
        crop_size: PositiveInt | None = 148,
        max_images: PositiveInt | None = None,
        **kwargs: Any,
    ):
        crop_size = None if crop_size is None else whole_number(crop_size, "data.crop_size")
        if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
            raise UserError(f"data.max_images must be a positive number of images or null, got {max_images}.")
        max_images = None if max_images is None else int(max_images)
        super().__init__(root, **kwargs)
        self.crop_size = crop_size
        self.max_images = max_images

    @property
    def facts(self) -> DataFacts:
        return DataFacts(image_size=self.image_size, channels=3, attribute_names=ATTRIBUTE_NAMES, crop_size=self.crop_size)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(image_size=self.image_size, crop_size=self.crop_size)

    def _find(self, *names: str) -> Path | None:
        for folder in SEARCHED_FOLDERS:
            for name in names:
                if (self.root / folder / name).exists():
                    return self.root / folder / name
        return None

    def _image_folder(self) -> Path | None:
        folder = self._find("img_align_celeba")
        if folder is not None and (folder / "img_align_celeba").is_dir():
            return folder / "img_align_celeba"
        return folder

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise MissingDatasetError("CelebA", self.root, EXPECTED_LAYOUT, DOWNLOAD_URL)
        if self._image_folder() is None:
            images = self.root / "img_align_celeba"
            raise MissingDatasetError("CelebA images", images, "the aligned JPEGs 000001.jpg …", DOWNLOAD_URL)
        if self._find("list_attr_celeba.txt", "list_attr_celeba.csv") is None:
            raise MissingDatasetError("CelebA attribute file", self.root / "list_attr_celeba.txt", "the 40-attribute table", DOWNLOAD_URL)

    def list_samples(self) -> list[ImageSample]:
        attribute_path = self._find("list_attr_celeba.txt", "list_attr_celeba.csv")
        partition_path = self._find("list_eval_partition.txt", "list_eval_partition.csv")
        image_folder = self._image_folder()
        assert attribute_path is not None and image_folder is not None  # check_root ran first
        table = parse_attribute_table(read_index_text(attribute_path), attribute_path, ATTRIBUTE_NAMES, csv=attribute_path.suffix == ".csv")
        if self.max_images is not None:
            table = table[: self.max_images]
        partition = {}
        if partition_path is not None:
            partition = parse_partition(read_index_text(partition_path), partition_path, csv=partition_path.suffix == ".csv")
        samples = []
        for name, values in table:
            if partition and name not in partition:
                raise UserError(f"{partition_path} has no split for {name}; re-download it, or delete it to split by data.val_fraction.")
            samples.append(ImageSample(path=image_folder / name, attributes=values, split=partition.get(name)))
        return samples
