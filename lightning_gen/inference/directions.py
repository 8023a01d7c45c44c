"""A checkpoint's attribute directions (``edit`` and the app's Edit tab), from the cache or its training data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_gen.latent.directions import Directions, cached_directions, require_attributes
from lightning_gen.latent.reference_data import instantiate_data, training_batches


def load_directions(model: Any, ckpt_path: str, references: int, section: Mapping[str, Any]) -> tuple[Directions, bool]:
    """The directions over up to ``references`` images of the data ``section`` builds; also whether they were cached."""
    require_attributes(model)
    datamodule = instantiate_data(section)
    return cached_directions(model, ckpt_path, references, section, training_batches(datamodule))
