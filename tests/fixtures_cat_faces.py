"""A cat-faces folder as the Kaggle archive unpacks it, for tests."""

from pathlib import Path

from PIL import Image


def write_cat_faces(root: Path, count: int = 12) -> None:
    nested = root / "cats" / "cats"  # the Kaggle archive unpacks one folder inside another
    nested.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (64, 64), (20 * index % 255, 100, 200 - 10 * index)).save(nested / f"{index}.jpg")
