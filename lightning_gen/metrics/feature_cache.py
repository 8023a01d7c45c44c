"""Real-image features computed once per (dataset, split, image size, preprocessing, extractor) and kept on disk.

They live beside the image cache (``data.cache_dir``, else ``$LIGHTNING_GEN_CACHE`` or
``~/.cache/lightning_gen``) under ``features/``: one ``.npy`` (N×D float32) and one ``.json`` naming
what it holds. A second evaluation against the same data
extracts only the generated images' features.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_gen.data.image_cache import default_cache_dir

IGNORED_DATA_SETTINGS = {"batch_size", "num_workers", "prepare_data_per_node", "allow_zero_length_dataloader_with_multiple_devices"}


def describe_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, (str, int, float, bool)) for item in value):
        return list(value)
    return None


def describe_datamodule(datamodule: Any) -> dict[str, Any]:
    """The datamodule's class and its plain settings (root, image size, crop, seed, split fraction, ...)."""
    settings = {
        key: describe_value(value)
        for key, value in sorted(vars(datamodule).items())
        if not key.startswith("_") and key not in IGNORED_DATA_SETTINGS and describe_value(value) is not None
    }
    return {"class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}", "settings": settings}


def cache_key(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]


class FeatureCache:
    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir() / "features"

    def paths(self, description: dict[str, Any]) -> tuple[Path, Path]:
        key = cache_key(description)
        return self.directory / f"{key}.npy", self.directory / f"{key}.json"

    def load(self, description: dict[str, Any]) -> torch.Tensor | None:
        array_path, info_path = self.paths(description)
        if not (array_path.is_file() and info_path.is_file()):
            return None
        try:
            return torch.from_numpy(np.load(array_path)).double()
        except (OSError, ValueError):  # a half-written file from a killed process: compute again
            return None

    def save(self, description: dict[str, Any], features: torch.Tensor) -> Path:
        array_path, info_path = self.paths(description)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Written under a unique name and renamed: a killed process or another rank never leaves half a file.
        temporary = array_path.with_name(f".{uuid.uuid4().hex}.npy")
        np.save(temporary, features.cpu().float().numpy())
        os.replace(temporary, array_path)
        info_path.write_text(json.dumps({**description, "count": len(features), "dim": features.shape[1]}, indent=2))
        return array_path

    def get_or_compute(self, description: dict[str, Any], compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """(features, whether they came from the cache)."""
        cached = self.load(description)
        if cached is not None:
            return cached, True
        features = compute()
        self.save(description, features)
        return features.float().double(), False  # the precision the cache holds, so both paths give the same numbers
