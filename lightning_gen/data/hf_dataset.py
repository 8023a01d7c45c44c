"""HFDatasetDataModule: a Hugging Face ``datasets`` dataset, decoded once into the same image cache as image folders.

``path`` is a ``save_to_disk`` folder, local ``.parquet`` / ``.arrow`` files (a file, a folder of them or a
glob), or a hub name (``user/name``) when the hub is reachable. Splits come from the dataset
(``train`` and ``validation``/``val``/``test``); without a validation split a seeded ``val_fraction`` is held out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_gen.data.image_cache import ImageSource
from lightning_gen.data.image_files import ImageFileDataModule, ImageSample
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts

SPLIT_NAMES = {"train": "train", "validation": "val", "valid": "val", "val": "val", "test": "test"}
CAPTION_COLUMNS = ("caption", "text")
LOCAL_FORMATS = {".parquet": "parquet", ".arrow": "arrow"}


class DatasetImage(ImageSource):
    """Row ``index`` of a dataset's image column (cast to undecoded ``{"bytes", "path"}``), opened on demand."""

    def __init__(self, dataset: Any, column: str, index: int, key: str, name: str):
        self.dataset, self.column, self.index, self.key, self.name = dataset, column, index, key, name

    def open(self) -> Any:
        value = self.dataset[self.index][self.column]
        if value is None:
            raise ValueError("no image in this row")
        if value.get("bytes"):
            return io.BytesIO(value["bytes"])
        return open(value["path"], "rb")

    def __str__(self) -> str:
        return self.name


def import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError("HFDatasetDataModule needs the datasets package; pip install 'lightning-gen[hf]' (or datasets).") from None
    return datasets


def load_any(path: str, name: str | None) -> Any:
    """A Dataset or DatasetDict from a save_to_disk folder, local parquet/arrow files or the hub; UserError when none."""
    datasets = import_datasets()

    local = Path(path).expanduser()
    if local.is_dir() and any((local / marker).is_file() for marker in ("dataset_dict.json", "dataset_info.json", "state.json")):
        return datasets.load_from_disk(str(local))
    files = sorted(local.glob("**/*")) if local.is_dir() else sorted(Path().glob(path)) if any(c in path for c in "*?[") else [local]
    formats = {LOCAL_FORMATS[p.suffix] for p in files if p.suffix in LOCAL_FORMATS}
    if local.exists() or len(formats) == 1:
        if len(formats) != 1:
            raise UserError(
                f"data.path '{path}' holds no save_to_disk dataset and no single kind of .parquet or .arrow "
                f"files; point it at one of those."
            )
        kind = formats.pop()
        return datasets.load_dataset(kind, data_files=[str(p) for p in files if p.suffix == "." + kind])
    try:
        return datasets.load_dataset(path, name)
    except Exception as error:  # offline, unknown name, no access: datasets raises many kinds
        raise UserError(
            f"data.path '{path}' is no local dataset and could not be loaded from the Hugging Face hub "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}); "
            "save it with save_to_disk or as parquet files on a machine that is online and point data.path there."
        ) from None


class HFDatasetDataModule(ImageFileDataModule):
    """Images, and optionally labels, captions and 0/1 attributes, from the columns of a ``datasets`` dataset.

    Args:
        path: a ``save_to_disk`` folder, ``.parquet``/``.arrow`` files (file, folder or glob), or a hub name.
        name: the hub dataset's configuration name, if it has several.
        image_column: the column of images (an ``Image`` feature).
        label_column: the class column (a ``ClassLabel`` gives the names; strings or integers are sorted);
            ``auto`` uses ``label`` when present, null uses none.
        caption_column: the caption column; ``auto`` uses ``caption`` or ``text`` when present, null none.
        attribute_columns: 0/1 (or boolean) columns to serve as ``attributes``.
        cache_dir, and the other arguments: see ImageFileDataModule.
    """

    dataset_name = "hf_dataset"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        image_column: str = "image",
        label_column: str | None = "auto",
        caption_column: str | None = "auto",
        attribute_columns: Sequence[str] = (),
        **kwargs: Any,
    ):
        super().__init__(path, **kwargs)
        self.path, self.name = path, name
        self.image_column, self.label_column, self.caption_column = image_column, label_column, caption_column
        self.attribute_columns = tuple(attribute_columns)
        self._class_names: tuple[str, ...] = ()

    @property
    def facts(self) -> DataFacts:
        samples = self.samples
        return DataFacts(
            image_size=self.image_size,
            channels=3,
            class_names=self._class_names,
            attribute_names=self.attribute_columns,
            has_captions=bool(samples) and samples[0].caption is not None,
        )

    def check_root(self) -> None:
        """Nothing to check before loading: load_any says what is wrong with ``path``."""

    def _splits(self) -> dict[str, Any]:
        datasets = import_datasets()

        loaded = load_any(self.path, self.name)
        if isinstance(loaded, datasets.Dataset):
            return {"train": loaded}
        splits = {}
        for split_name, dataset in loaded.items():
            split = SPLIT_NAMES.get(split_name)
            if split is None:
                raise UserError(f"data.path '{self.path}' has a split '{split_name}'; name its splits train, validation or test.")
            splits[split] = dataset
        if "train" not in splits:
            raise UserError(f"data.path '{self.path}' has no train split (splits: {', '.join(loaded)}); add one.")
        return splits

    def _column(self, dataset: Any, wanted: str | None, choices: Sequence[str], option: str) -> str | None:
        if wanted is None:
            return None
        if wanted != "auto":
            if wanted not in dataset.column_names:
                raise UserError(
                    f"data.{option} '{wanted}' is not a column of '{self.path}' (columns: "
                    f"{', '.join(dataset.column_names)}); set it to one of them or null."
                )
            return wanted
        return next((c for c in choices if c in dataset.column_names), None)

    def _class_names_of(self, train: Any, column: str) -> tuple[str, ...]:
        datasets = import_datasets()

        feature = train.features[column]
        if isinstance(feature, datasets.ClassLabel):
            return tuple(feature.names)
        values = {str(value) for value in train[column]}
        if all(value.lstrip("-").isdigit() for value in values):
            return tuple(sorted(values, key=int))
        return tuple(sorted(values))

    def list_samples(self) -> list[ImageSample]:
        datasets = import_datasets()

        splits = self._splits()
        train = splits["train"]
        if self.image_column not in train.column_names:
            raise UserError(
                f"data.image_column '{self.image_column}' is not a column of '{self.path}' (columns: "
                f"{', '.join(train.column_names)}); set it."
            )
        label_column = self._column(train, self.label_column, ("label",), "label_column")
        caption_column = self._column(train, self.caption_column, CAPTION_COLUMNS, "caption_column")
        for column in self.attribute_columns:
            self._column(train, column, (), "attribute_columns")
        self._class_names = self._class_names_of(train, label_column) if label_column else ()
        label_index = {name: number for number, name in enumerate(self._class_names)}
        samples = []
        for split, dataset in splits.items():
            key = getattr(dataset, "_fingerprint", None) or f"{self.path}:{split}"
            undecoded = dataset.cast_column(self.image_column, datasets.Image(decode=False))
            is_class_label = label_column is not None and isinstance(dataset.features[label_column], datasets.ClassLabel)
            metadata = dataset.remove_columns([self.image_column])  # reading labels must not decode images
            for index, row in enumerate(metadata):
                where = f"row {index} of the {split} split of '{self.path}'"
                label = None
                if label_column is not None:
                    value = row[label_column]
                    name = (
                        self._class_names[value]
                        if is_class_label and value is not None and 0 <= value < len(self._class_names)
                        else str(value)
                    )
                    if name not in label_index:
                        raise UserError(
                            f"{where}: label '{value}' is not in the training split's classes "
                            f"({', '.join(self._class_names)}); fix it or drop the row."
                        )
                    label = label_index[name]
                attributes = None
                if self.attribute_columns:
                    attributes = []
                    for column in self.attribute_columns:
                        value = row[column]
                        if value not in (0, 1, True, False):
                            raise UserError(
                                f"{where}: attribute '{column}' is {value!r}, not 0 or 1; fix the value or "
                                f"leave the column out of data.attribute_columns."
                            )
                        attributes.append(float(value))
                caption = None if caption_column is None else str(row[caption_column] or "")
                source = DatasetImage(undecoded, self.image_column, index, f"{key}:{index}", where)
                samples.append(ImageSample(path=source, label=label, attributes=attributes, caption=caption, split=split))  # type: ignore[arg-type]
        return samples
