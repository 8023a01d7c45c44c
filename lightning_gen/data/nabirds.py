"""NABirdsDataModule: NABirds (555 visual categories of North American birds), a subset of classes chosen by name."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Sequence

from lightning_gen.data.image_cache import CropBox
from lightning_gen.data.image_files import ImageFileDataModule, ImageSample
from lightning_gen.errors import MissingDatasetError, UserError
from lightning_gen.facts import DataFacts

DOWNLOAD_URL = "https://dl.allaboutbirds.org/nabirds"
EXPECTED_LAYOUT = (
    "images/<class id>/<uuid>.jpg, images.txt, image_class_labels.txt, classes.txt, hierarchy.txt, "
    "train_test_split.txt and bounding_boxes.txt"
)
# Seed 002's subset, spelled exactly as in classes.txt.
DEFAULT_CLASSES = ("Allen's Hummingbird (Adult Male)", "Allen's Hummingbird (Female, immature)")
REQUIRED_FILES = ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt")
SPLIT_CODES = {"1": "train", "0": "test"}


def read_pairs(path: Path, value_fields: int = 1) -> dict[str, list[str]]:
    """``<key> <value …>`` lines as key → values; the last value keeps its spaces when ``value_fields`` is 1."""
    table = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(None, value_fields) if value_fields == 1 else line.split()
        if len(fields) != value_fields + 1:
            raise UserError(f"{path} line {number} should hold a key and {value_fields} value(s); re-download the dataset.")
        table[fields[0]] = [field.strip() for field in fields[1:]]
    return table


def select_classes(names_by_id: dict[str, str], chosen: Sequence[str], source: Path) -> list[str]:
    """Class ids of the ``chosen`` names; UserError naming an unknown one with its closest matches."""
    ids_by_name = {name: class_id for class_id, name in names_by_id.items()}
    ids = []
    for name in chosen:
        if name not in ids_by_name:
            close = difflib.get_close_matches(name, list(ids_by_name), n=5, cutoff=0.5)
            hint = f"close matches: {'; '.join(close)}" if close else "copy a name from that file exactly"
            raise UserError(f"data.classes '{name}' is not a class name in {source}; {hint}.")
        ids.append(ids_by_name[name])
    return ids


class NABirdsDataModule(ImageFileDataModule):
    """NABirds images of the chosen ``classes``; ``label`` = index among them, ``caption`` from the class name.

    A chosen class may be a hierarchy node (e.g. a species whose images are labelled with its
    plumage classes): its images are those of its descendants in ``hierarchy.txt``.

    Args:
        root: the NABirds folder holding ``images/`` and the ``*.txt`` index files.
        classes: class names exactly as in ``classes.txt`` (default: seed 002's two Allen's Hummingbird classes).
        crop_to_bbox: cut each image to its ``bounding_boxes.txt`` box before the square crop and resize.
        caption_template: the caption of an image, ``{name}`` = its class name lower-cased.
        val_fraction: share of the official training images held out for validation (seed 002: 0.025);
            the official test images form the test split.
        Other arguments: see ImageFileDataModule.
    """

    dataset_name = "nabirds"

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = DEFAULT_CLASSES,
        crop_to_bbox: bool = False,
        caption_template: str = "a photo of a {name}",
        val_fraction: float = 0.025,  # the seed held out 2.5 %
        **kwargs: Any,
    ):
        super().__init__(root, val_fraction=val_fraction, **kwargs)
        if not classes or len(set(classes)) != len(classes):
            raise UserError(f"data.classes must list distinct NABirds class names, got {list(classes)}.")
        if "{name}" not in caption_template:
            raise UserError(f"data.caption_template '{caption_template}' has no {{name}} placeholder; add one.")
        self.classes = tuple(classes)
        self.crop_to_bbox = crop_to_bbox
        self.caption_template = caption_template

    @property
    def facts(self) -> DataFacts:
        return DataFacts(image_size=self.image_size, channels=3, class_names=self.classes, has_captions=True)

    def caption(self, name: str) -> str:
        return self.caption_template.format(name=name.lower())

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise MissingDatasetError("NABirds", self.root, EXPECTED_LAYOUT, DOWNLOAD_URL)
        needed = REQUIRED_FILES + (("bounding_boxes.txt",) if self.crop_to_bbox else ())
        for name in needed:
            if not (self.root / name).is_file():
                raise MissingDatasetError(f"NABirds index file {name}", self.root / name, EXPECTED_LAYOUT, DOWNLOAD_URL)
        if not (self.root / "images").is_dir():
            raise MissingDatasetError("NABirds images", self.root / "images", EXPECTED_LAYOUT, DOWNLOAD_URL)

    def _label_of_class(self) -> dict[str, int]:
        """Class id → label for every class id whose images belong to a chosen class (itself or a descendant)."""
        classes_path = self.root / "classes.txt"
        names_by_id = {class_id: values[0] for class_id, values in read_pairs(classes_path).items()}
        chosen_ids = select_classes(names_by_id, self.classes, classes_path)
        hierarchy_path = self.root / "hierarchy.txt"
        parents = {child: values[0] for child, values in read_pairs(hierarchy_path).items()} if hierarchy_path.is_file() else {}
        labels = {}
        for class_id in names_by_id:
            node = class_id
            while node is not None and node not in chosen_ids:  # the nearest chosen ancestor (or the class itself)
                node = parents.get(node)
            if node is not None:
                labels[class_id] = chosen_ids.index(node)
        return labels

    def _crop_boxes(self) -> dict[str, CropBox]:
        path = self.root / "bounding_boxes.txt"
        boxes = {}
        for uuid, values in read_pairs(path, value_fields=4).items():
            try:
                boxes[uuid] = tuple(int(float(value)) for value in values)
            except ValueError:
                raise UserError(f"{path} has a non-numeric box for {uuid}; re-download the dataset.") from None
        return boxes

    def list_samples(self) -> list[ImageSample]:
        label_of_class = self._label_of_class()
        class_of_image = {uuid: values[0] for uuid, values in read_pairs(self.root / "image_class_labels.txt").items()}
        split_path = self.root / "train_test_split.txt"
        split_of_image = read_pairs(split_path)
        boxes = self._crop_boxes() if self.crop_to_bbox else {}
        samples = []
        for uuid, values in read_pairs(self.root / "images.txt").items():
            label = label_of_class.get(class_of_image.get(uuid, ""))
            if label is None:
                continue
            split = SPLIT_CODES.get(split_of_image.get(uuid, ["?"])[0])
            if split is None:
                raise UserError(f"{split_path} has no 1 (train) / 0 (test) entry for image {uuid}; re-download the dataset.")
            if self.crop_to_bbox and uuid not in boxes:
                raise UserError(f"{self.root / 'bounding_boxes.txt'} has no box for image {uuid}; re-download it or set data.crop_to_bbox false.")
            samples.append(
                ImageSample(
                    path=self.root / "images" / values[0],
                    label=label,
                    caption=self.caption(self.classes[label]),
                    split=split,
                    crop_box=boxes.get(uuid),
                )
            )
        return samples
