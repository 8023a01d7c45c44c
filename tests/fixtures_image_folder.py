"""Class folders of solid-colour images in several formats (<root>/<class>/<i>.<suffix>), for tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

COLOURS = {"blue": (0, 0, 255), "green": (0, 255, 0), "red": (255, 0, 0)}


def write_image(path: Path, colour: tuple[int, int, int], suffix_format: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 12), colour).save(path, format=suffix_format)


def class_folders(root: Path, per_class: int = 4, suffixes=(".png", ".jpg", ".webp", ".bmp")) -> Path:
    for name, colour in COLOURS.items():
        for number in range(per_class):
            write_image(root / name / f"{number}{suffixes[number % len(suffixes)]}", colour)
    return root
