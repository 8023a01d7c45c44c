"""An AwA2 folder in the real layout (classes, predicates, the binary matrix, JPEGImages/<class>/), for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lightning_gen.data import AwA2DataModule

CLASSES = ["antelope", "horse", "killer+whale", "skunk", "sheep", "bat"]


ATTRIBUTES = ["black", "white", "blue", "small", "tail", "fast", "strong", "flies"]


IMAGES_PER_CLASS = 3


def write_awa2(root: Path, matrix_rows: int | None = None) -> np.ndarray:
    root.mkdir(parents=True, exist_ok=True)
    # The real files right-align the ids in a padded column and separate them from the name with a tab.
    (root / "classes.txt").write_text("".join(f"{i:>5}\t{name}\n" for i, name in enumerate(CLASSES, 1)))
    (root / "predicates.txt").write_text("".join(f"{i:>5}\t{name}\n" for i, name in enumerate(ATTRIBUTES, 1)))
    matrix = (np.arange(len(CLASSES))[:, None] + np.arange(len(ATTRIBUTES))[None]) % 2
    rows = matrix[: matrix_rows or len(CLASSES)]
    (root / "predicate-matrix-binary.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in rows))
    for index, name in enumerate(CLASSES):
        folder = root / "JPEGImages" / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(IMAGES_PER_CLASS):
            Image.new("RGB", (40, 30), (index * 40, number * 60, 90)).save(folder / f"{name}_{10001 + number}.jpg")
    return matrix


def make(root: Path, tmp_path: Path, **kwargs) -> AwA2DataModule:
    return AwA2DataModule(root=str(root), image_size=8, batch_size=4, val_fraction=0.25, cache_dir=str(tmp_path / "cache"), **kwargs)
