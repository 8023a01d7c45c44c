"""What a model must know about its data, linked from the datamodule into the model by the CLI.

Both sides import this module; models never import datasets and datasets never import models.
The facts travel inside every checkpoint (as model hyperparameters), so a checkpoint alone
knows its image size and its condition vocabulary (class and attribute names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class DataFacts:
    image_size: int = 64
    channels: int = 3
    class_names: tuple[str, ...] = field(default_factory=tuple)
    attribute_names: tuple[str, ...] = field(default_factory=tuple)
    has_captions: bool = False
    # How the datamodule turned a source image into a training image, so user images get the same:
    # the centre crop side taken first (None: the largest centred square), then a resize to
    # image_size with this PIL filter. Checkpoints written before these existed get the defaults.
    crop_size: int | None = None
    resize_filter: str = "bicubic"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def to_dict(self) -> dict[str, Any]:
        facts = asdict(self)
        facts["class_names"] = list(self.class_names)
        facts["attribute_names"] = list(self.attribute_names)
        return facts

    @classmethod
    def coerce(cls, value: DataFacts | Mapping[str, Any] | None) -> DataFacts:
        """Accepts the dataclass, the plain dict stored in a checkpoint, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, DataFacts):
            return value
        known = {item.name for item in fields(cls)}
        value = {key: item for key, item in dict(value).items() if key in known}
        value["class_names"] = tuple(value.get("class_names") or ())
        value["attribute_names"] = tuple(value.get("attribute_names") or ())
        return cls(**value)
