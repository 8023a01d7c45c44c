"""NABirdsDataModule: NABirds (555 visual categories of North American birds), a subset of classes chosen by name."""

from __future__ import annotations

import difflib
from collections.abc import Container, Iterable, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from lightning_gen.data.image_files import ImageFileDataModule, ImageSample
from lightning_gen.data.index_files import (
    Entry,
    IndexFileWarning,
    parse_boxes,
    parse_class_names,
    parse_hierarchy,
    parse_image_labels,
    parse_image_paths,
    parse_split,
    read_index_text,
)
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

    def list_samples(self) -> list[ImageSample]:
        index = {name: self.root / name for name in REQUIRED_FILES + ("hierarchy.txt", "bounding_boxes.txt")}
        names_by_id = parse_class_names(read_index_text(index["classes.txt"]), index["classes.txt"])
        chosen_ids = select_classes(names_by_id, self.classes, index["classes.txt"])
        hierarchy = index["hierarchy.txt"]
        parents = parse_hierarchy(read_index_text(hierarchy), hierarchy) if hierarchy.is_file() else {}
        images = parse_image_paths(read_index_text(index["images.txt"]), index["images.txt"])
        labels = index["image_class_labels.txt"]
        chosen, unlabelled = labelled_images(
            images,
            parse_image_labels(read_index_text(labels), labels),
            names_by_id,
            labels_of_classes(names_by_id, parents, chosen_ids),
            labels,
        )
        if unlabelled:
            rank_zero_warn(
                f"{len(unlabelled)} of {len(images)} images in {index['images.txt']} have no line in {labels} and are left out "
                f"(first: {', '.join(unlabelled[:3])}).",
                category=IndexFileWarning,
            )
        split_of_image = parse_split(read_index_text(index["train_test_split.txt"]), index["train_test_split.txt"])
        boxes = parse_boxes(read_index_text(index["bounding_boxes.txt"]), index["bounding_boxes.txt"]) if self.crop_to_bbox else {}
        samples = []
        for image_id, relative_path, label in chosen:
            if image_id not in split_of_image:
                raise UserError(
                    f"{index['train_test_split.txt']} has no 1 (train) / 0 (test) line for image {image_id}; re-download the dataset."
                )
            if self.crop_to_bbox and image_id not in boxes:
                raise UserError(
                    f"{index['bounding_boxes.txt']} has no box for image {image_id}; re-download it or set data.crop_to_bbox false."
                )
            samples.append(
                ImageSample(
                    path=self.root / "images" / relative_path,
                    label=label,
                    caption=self.caption(self.classes[label]),
                    split=split_of_image[image_id],
                    crop_box=boxes.get(image_id),
                )
            )
        return samples


def labels_of_classes(class_ids: Iterable[str], parents: dict[str, str], chosen_ids: Sequence[str]) -> dict[str, int]:
    """Class id → label for every class whose images belong to a chosen class: itself or its nearest chosen ancestor."""
    label_of_chosen = {class_id: label for label, class_id in enumerate(chosen_ids)}
    labels = {}
    for class_id in class_ids:
        node: str | None = class_id
        while node is not None and node not in label_of_chosen:  # ends: parse_hierarchy refuses loops
            node = parents.get(node)
        if node is not None:
            labels[class_id] = label_of_chosen[node]
    return labels


def labelled_images(
    images: dict[str, Entry],
    class_of_image: dict[str, Entry],
    class_ids: Container[str],
    label_of_class: dict[str, int],
    labels_source: Path | str,
) -> tuple[list[tuple[str, str, int]], list[str]]:
    """(image id, path under images/, label) of each image of a chosen class, and the ids of the images without a label."""
    chosen, unlabelled = [], []
    for image_id, entry in images.items():
        labelled = class_of_image.get(image_id)
        if labelled is None:
            unlabelled.append(image_id)
            continue
        class_id = labelled.values[0]
        if class_id not in class_ids:
            raise UserError(
                f"{labels_source} line {labelled.line} gives image {image_id} the class {class_id}, which "
                f"classes.txt does not list; re-download the dataset."
            )
        label = label_of_class.get(class_id)
        if label is not None:
            chosen.append((image_id, entry.values[0], label))
    return chosen, unlabelled
