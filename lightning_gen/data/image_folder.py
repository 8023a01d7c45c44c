"""ImageFolderDataModule: your own images, laid out as class folders, a flat folder and/or a metadata table.

Layouts (the Hugging Face ``imagefolder`` convention, as diffusers' ``--train_data_dir`` reads it):

- ``root/<class>/*.png`` — labels from the folder names, sorted;
- ``root/*.png`` — unlabelled;
- ``root/train/…`` + ``root/val/…`` (or ``test/``, ``validation/``) — the official split, each laid out as above;
- ``metadata.jsonl`` or ``metadata.csv`` at the root (or in each split folder): a ``file_name`` column (the image's
  path relative to the table's folder) plus any of ``label`` (or ``class_name``, which wins), ``caption`` or
  ``text``, ``split`` and 0/1 attribute columns (the bookkeeping columns ``export`` writes are never taken for
  attributes). Listed images only are used; a label column overrides folder names.

Without a split, a seeded ``val_fraction`` of the images is held out.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

from lightning_gen.data.image_files import BrokenLinksWarning, ImageFileDataModule, ImageSample, broken_links_message, scan_folder
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
SPLIT_VALUES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
CAPTION_COLUMNS = ("caption", "text")
# The bookkeeping columns `export` writes beside each generated image: never guessed to be attributes.
EXPORT_COLUMNS = (
    "index",
    "noise_seed",
    "seed",
    "guidance_scale",
    "steps",
    "sampler",
    "model_class",
    "condition",
    "checkpoint_sha256",
    "global_step",
    "prompt",
    "attributes",
)
RESERVED_COLUMNS = ("file_name", "label", "class_name", "split", *CAPTION_COLUMNS, *EXPORT_COLUMNS)
TRUE_VALUES, FALSE_VALUES = ("1", "true", "1.0"), ("0", "false", "0.0")
UNLISTED_NAMED_IN_WARNING = 5


@dataclass
class RawSample:
    """One image before labels become indices: where it came from, for messages that name file and line."""

    path: Path
    source: str  # "path/to/metadata.jsonl line 7" or the image path
    label: str | None = None
    caption: str | None = None
    split: str | None = None
    attributes: dict[str, float] = field(default_factory=dict)


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a metadata.jsonl or metadata.csv; UserError naming the line of a malformed row."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or "file_name" not in reader.fieldnames:
            raise UserError(f"{path} line 1 has no file_name column; make the header start with file_name.")
        rows = []
        for row in reader:
            if None in row or None in row.values():
                raise UserError(
                    f"{path} line {reader.line_num} has {len(row) - (None in row)} fields but the header has "
                    f"{len(reader.fieldnames)}; fix that line."
                )
            rows.append((reader.line_num, row))
        return rows
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number} is not valid JSON ({error.msg}); write one JSON object per line.") from None
        if not isinstance(row, dict) or "file_name" not in row:
            raise UserError(f'{path} line {number} has no "file_name"; give every line the image\'s path relative to {path.parent}.')
        rows.append((number, row))
    return rows


def _flag(value: Any) -> float | None:
    """1.0 / 0.0 for a 0/1 or true/false value, None for anything else."""
    text = str(value).strip().lower()
    return 1.0 if text in TRUE_VALUES else 0.0 if text in FALSE_VALUES else None


def read_metadata(path: Path, split: str | None, attribute_columns: Sequence[str] | None) -> list[RawSample]:
    """The images a metadata table lists, each file checked to exist inside the table's folder and listed once."""
    rows = _rows(path)
    folder = path.parent.resolve()
    columns = list(dict.fromkeys(key for _, row in rows for key in row))
    if attribute_columns is None:  # every other column whose values are all 0/1 is an attribute
        extra = [c for c in columns if c not in RESERVED_COLUMNS]
        attribute_columns = [c for c in extra if all(_flag(row.get(c)) is not None for _, row in rows)]
    caption_column = next((c for c in CAPTION_COLUMNS if c in columns), None)
    samples, first_line = [], {}
    for number, row in rows:
        where = f"{path} line {number}"
        name = str(row["file_name"]).strip()
        image = (folder / name).resolve()
        if not name or not image.is_relative_to(folder) or Path(name).suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
            raise UserError(
                f"{where}: file_name '{name}' is not an image file inside {folder} ({', '.join(IMAGE_SUFFIXES)}); "
                "fix the name or delete the line."
            )
        if image in first_line:
            raise UserError(f"{where} lists '{name}' again (first on line {first_line[image]}); delete one of the two lines.")
        first_line[image] = number
        attributes = {}
        for column in attribute_columns:
            value = _flag(row.get(column))
            if value is None:
                raise UserError(f"{where}: attribute '{column}' is {row.get(column)!r}, not 0 or 1; fix the value.")
            attributes[column] = value
        row_split = split
        if row.get("split") not in (None, ""):
            row_split = SPLIT_VALUES.get(str(row["split"]).strip().lower())
            if row_split is None:
                raise UserError(f"{where}: split '{row['split']}' is not one of train, val, validation, test; fix the value.")
        # `class_name` (as `export` writes beside its integer `label`) names the class better than an index.
        label = row.get("class_name") if row.get("class_name") not in (None, "") else row.get("label")
        caption = row.get(caption_column) if caption_column else None
        samples.append(
            RawSample(
                path=image,
                source=where,
                label=None if label in (None, "") else str(label).strip(),
                caption=None if caption is None else str(caption),
                split=row_split,
                attributes=attributes,
            )
        )
    return samples


def _numeric_order(names: set[str]) -> list[str]:
    """Sorted names; integer labels (0, 1, …, 10) in numeric rather than string order."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


class ImageFolderDataModule(ImageFileDataModule):
    """A folder of your own images (layouts: see the module docstring).

    Args:
        root: the folder.
        classes: class names in label order; None takes the sorted names found (folders or the ``label`` column)
            in the training images. An image whose label is not among them is an error naming it.
        attribute_columns: metadata columns that are 0/1 attributes; None takes every 0/1 column.
        caption_template: captions for images the metadata gives none, e.g. ``a photo of a {name}``
            (``{name}`` = the class name); None leaves them without.
        Other arguments: see ImageFileDataModule (``val_fraction`` applies when there is no validation split).
    """

    dataset_name = "image_folder"

    def __init__(
        self,
        root: str,
        classes: Sequence[str] | None = None,
        attribute_columns: Sequence[str] | None = None,
        caption_template: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(root, **kwargs)
        if classes is not None and (not classes or len(set(classes)) != len(classes)):
            raise UserError(f"data.classes must list distinct class names or be null, got {list(classes)}.")
        if caption_template is not None and "{name}" not in caption_template:
            raise UserError(f"data.caption_template '{caption_template}' has no {{name}} placeholder; add one or set it to null.")
        self.classes = tuple(classes) if classes is not None else None
        self.attribute_columns = tuple(attribute_columns) if attribute_columns is not None else None
        self.caption_template = caption_template
        self._class_names: tuple[str, ...] = ()
        self._attribute_names: tuple[str, ...] = ()
        self._broken_links: set[Path] = set()

    def _image_files(self, folder: Path) -> list[Path]:
        """The image files under ``folder``; its dangling and looping links are gathered for one warning."""
        files, broken = scan_folder(folder, IMAGE_SUFFIXES)
        self._broken_links.update(broken)
        return files

    @property
    def facts(self) -> DataFacts:
        samples = self.samples  # lists the folder: the vocabulary comes from it
        return DataFacts(
            image_size=self.image_size,
            channels=3,
            class_names=self._class_names,
            attribute_names=self._attribute_names,
            has_captions=all(sample.caption is not None for sample in samples),
        )

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise UserError(
                f"data.root '{self.root}' is not a folder; point it at a folder of images (layouts: see ImageFolderDataModule)."
            )

    def _split_folders(self) -> dict[str, Path]:
        found = {SPLIT_FOLDERS[p.name]: p for p in sorted(self.root.iterdir()) if p.is_dir() and p.name in SPLIT_FOLDERS}
        return found if "train" in found and len(found) > 1 else {}

    def _list_folder(self, folder: Path, split: str | None) -> list[RawSample]:
        """The images of one folder: those its metadata table lists, else every image with its class folder as label."""
        tables = [folder / name for name in METADATA_NAMES if (folder / name).is_file()]
        if len(tables) > 1:
            raise UserError(f"{folder} holds both metadata.jsonl and metadata.csv; keep one.")
        if tables:
            samples = read_metadata(tables[0], split, self.attribute_columns)
            listed = {sample.path for sample in samples}
            unlisted = [p for p in self._image_files(folder) if p.resolve() not in listed]
            if unlisted:
                named = ", ".join(str(p.relative_to(folder)) for p in unlisted[:UNLISTED_NAMED_IN_WARNING])
                rank_zero_warn(
                    f"{len(unlisted)} images under {folder} are not in {tables[0].name} and are left out: {named}; list them to use them."
                )
            return samples
        files = self._image_files(folder)
        in_classes = [p.parent != folder for p in files]
        if any(in_classes) and not all(in_classes):
            loose = next(p for p, nested in zip(files, in_classes) if not nested)
            raise UserError(
                f"{folder} holds images both directly ({loose.name}) and in class folders; move every image into a class folder, "
                "or all into one folder for unlabelled data."
            )
        return [
            RawSample(path=p, source=str(p), label=p.relative_to(folder).parts[0] if nested else None, split=split)
            for p, nested in zip(files, in_classes)
        ]

    def list_samples(self) -> list[ImageSample]:
        self._broken_links = set()
        samples = self._list_samples()
        if self._broken_links:
            rank_zero_warn(broken_links_message(self.root, sorted(self._broken_links)), category=BrokenLinksWarning)
        return samples

    def _list_samples(self) -> list[ImageSample]:
        splits = self._split_folders()
        root_has_table = any((self.root / name).is_file() for name in METADATA_NAMES)
        if splits and not root_has_table:
            raw = [sample for split, folder in splits.items() for sample in self._list_folder(folder, split)]
        else:
            raw = self._list_folder(self.root, None)
            for sample in raw:  # a root table listing train/… and val/… files: the folder is the split
                if sample.split is None and splits:
                    sample.split = SPLIT_FOLDERS.get(sample.path.relative_to(self.root.resolve()).parts[0])
        return self._index(raw)

    def _index(self, raw: list[RawSample]) -> list[ImageSample]:
        """Labels become indices into the class vocabulary; every image must agree on what it carries."""
        if not raw:
            return []
        labelled = [sample.label is not None for sample in raw]
        if any(labelled) and not all(labelled):
            missing = raw[labelled.index(False)]
            raise UserError(f"{missing.source} has no label while other images have one; give every image a label, or none.")
        attribute_sets = {tuple(sample.attributes) for sample in raw}
        if len(attribute_sets) > 1:
            raise UserError(
                f"the metadata tables under {self.root} name different attribute columns "
                f"({sorted(attribute_sets)}); use the same columns in each."
            )
        self._attribute_names = attribute_sets.pop()
        labels = None
        if all(labelled):
            training = [s.label for s in raw if s.split in (None, "train")] or [s.label for s in raw]
            self._class_names = self.classes or tuple(_numeric_order(set(training)))
            index = {name: number for number, name in enumerate(self._class_names)}
            for sample in raw:
                if sample.label not in index:
                    where = "in the training images" if self.classes is None else "in data.classes"
                    raise UserError(
                        f"{sample.source}: label '{sample.label}' is not {where} ({', '.join(self._class_names)}); "
                        "fix the label, or list it in data.classes."
                    )
            labels = [index[sample.label] for sample in raw]
        elif self.classes is not None:
            raise UserError(
                f"data.classes is set but the images under {self.root} have no labels; add class folders or a "
                f"label column, or drop data.classes."
            )
        captions = [sample.caption for sample in raw]
        if self.caption_template is not None and labels is not None:
            captions = [
                c if c is not None else self.caption_template.format(name=self._class_names[label]) for c, label in zip(captions, labels)
            ]
        if any(c is not None for c in captions) and not all(c is not None for c in captions):
            missing = raw[[c is None for c in captions].index(True)]
            raise UserError(
                f"{missing.source} has no caption while other images have one; caption every image, or set data.caption_template."
            )
        return [
            ImageSample(
                path=sample.path,
                label=None if labels is None else labels[number],
                attributes=tuple(sample.attributes.values()) if self._attribute_names else None,
                caption=captions[number],
                split=sample.split,
            )
            for number, sample in enumerate(raw)
        ]
