"""CelebADataModule: 202,599 aligned celebrity faces (178×218) with 40 binary attributes and an official split."""

from __future__ import annotations

from typing import Any

from pathlib import Path

from lightning_gen.data.image_cache import Preprocessing
from lightning_gen.data.image_files import ImageFileDataModule, ImageSample
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
PARTITIONS = {"0": "train", "1": "val", "2": "test"}
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
        crop_size: int | None = 148,
        max_images: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(root, **kwargs)
        if max_images is not None and max_images < 1:
            raise UserError(f"data.max_images must be a positive number of images or null, got {max_images}.")
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
            raise MissingDatasetError(
                "CelebA attribute file", self.root / "list_attr_celeba.txt", "the 40-attribute table", DOWNLOAD_URL
            )

    def list_samples(self) -> list[ImageSample]:
        attribute_path = self._find("list_attr_celeba.txt", "list_attr_celeba.csv")
        partition_path = self._find("list_eval_partition.txt", "list_eval_partition.csv")
        image_folder = self._image_folder()
        assert attribute_path is not None and image_folder is not None  # check_root ran first
        table = read_attribute_table(attribute_path)
        if self.max_images is not None:
            table = table[: self.max_images]
        partition = read_partition(partition_path) if partition_path is not None else {}
        samples = []
        for name, values in table:
            if partition and name not in partition:
                raise UserError(
                    f"{partition_path} has no split for {name}; re-download it, or delete it to split by data.val_fraction."
                )
            samples.append(ImageSample(path=image_folder / name, attributes=values, split=partition.get(name)))
        return samples


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of each non-empty line: space-separated (.txt) or comma-separated (Kaggle's .csv)."""
    separator = "," if path.suffix == ".csv" else None
    lines = path.read_text().splitlines()
    return [(number, line.split(separator)) for number, line in enumerate(lines, 1) if line.strip()]


def read_attribute_table(path: Path) -> list[tuple[str, tuple[float, ...]]]:
    """(file name, 40 attributes as 0.0/1.0) per image, in file order."""
    rows = _rows(path)
    declared_count = None
    if path.suffix != ".csv":  # the official .txt starts with a line holding the image count
        if not rows or not rows[0][1][0].isdigit():
            raise UserError(f"{path} line 1 should hold the image count; re-download the file.")
        declared_count = int(rows[0][1][0])
        rows = rows[1:]
    if not rows:
        raise UserError(f"{path} has no attribute names; re-download the file.")
    number, header = rows[0]
    names = tuple(field.strip() for field in header if field.strip() and field.strip() != "image_id")
    if names != ATTRIBUTE_NAMES:
        raise UserError(f"{path} line {number} does not list the 40 CelebA attribute names; re-download the file.")
    table = []
    for number, fields in rows[1:]:
        fields = [field.strip() for field in fields]
        values = fields[1:]
        if len(values) != len(ATTRIBUTE_NAMES) or not set(values) <= {"1", "-1", "0"}:
            raise UserError(
                f"{path} line {number} should be a file name and {len(ATTRIBUTE_NAMES)} values of 1 or -1, "
                f"got {len(values)} values; re-download the file."
            )
        table.append((fields[0], tuple(1.0 if value == "1" else 0.0 for value in values)))
    if declared_count is not None and declared_count != len(table):
        raise UserError(f"{path} declares {declared_count} images on line 1 but lists {len(table)}; re-download the file.")
    return table


def read_partition(path: Path) -> dict[str, str]:
    """File name → "train" / "val" / "test" from ``<file> <0|1|2>`` lines."""
    partition = {}
    for number, fields in _rows(path):
        fields = [field.strip() for field in fields]
        if fields == ["image_id", "partition"]:
            continue
        if len(fields) != 2 or fields[1] not in PARTITIONS:
            raise UserError(f"{path} line {number} should be '<file> <0, 1 or 2>'; re-download the file.")
        partition[fields[0]] = PARTITIONS[fields[1]]
    return partition
