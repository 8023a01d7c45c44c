"""A NABirds folder in the real layout (classes.txt, hierarchy.txt, images/, bounding boxes, the split), for tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from lightning_gen.data import NABirdsDataModule

CLASSES = [
    (0, "Birds"),
    (24, "Hummingbirds"),
    (392, "Allen's Hummingbird"),
    (446, "Allen's Hummingbird (Adult Male)"),
    (447, "Allen's Hummingbird (Female, immature)"),
    (448, "Anna's Hummingbird"),
]


HIERARCHY = [(24, 0), (392, 24), (446, 392), (447, 392), (448, 24)]


IMAGES_PER_CLASS = {446: (4, 2), 447: (4, 1), 448: (2, 1)}


COLOURS = {446: (220, 40, 40), 447: (40, 220, 40), 448: (40, 40, 220)}


def write_nabirds(root: Path) -> dict[str, tuple[int, str]]:
    """Writes the fixture; returns uuid → (class id, split). Each image is 40×30 grey with a coloured 10×10 bird box."""
    images, labels, splits, boxes = [], [], [], []
    made = {}
    number = 0
    for class_id, (train, test) in IMAGES_PER_CLASS.items():
        folder = root / "images" / f"{class_id:04d}"
        folder.mkdir(parents=True)
        for index in range(train + test):
            image_id = str(uuid.UUID(int=number + 1))
            number += 1
            relative = f"{class_id:04d}/{image_id.replace('-', '')}.jpg"
            picture = np.full((30, 40, 3), 128, dtype=np.uint8)
            picture[10:20, 20:30] = COLOURS[class_id]
            Image.fromarray(picture).save(root / "images" / relative, quality=95)
            split = "1" if index < train else "0"
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
            splits.append(f"{image_id} {split}")
            boxes.append(f"{image_id} 20 10 10 10")
            made[image_id] = (class_id, "train" if split == "1" else "test")
    files = {
        "images.txt": images,
        "image_class_labels.txt": labels,
        "train_test_split.txt": splits,
        "bounding_boxes.txt": boxes,
        "classes.txt": [f"{class_id} {name}" for class_id, name in CLASSES],
        "hierarchy.txt": [f"{child} {parent}" for child, parent in HIERARCHY],
    }
    for name, lines in files.items():
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return made


def make(root: Path, tmp_path: Path, **kwargs) -> NABirdsDataModule:
    return NABirdsDataModule(root=str(root), image_size=8, batch_size=4, cache_dir=str(tmp_path / "cache"), **kwargs)
