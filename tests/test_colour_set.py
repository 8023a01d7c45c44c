"""scripts/build_colour_set.py on a tiny fake icon theme laid out as a Debian package extracts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_gen.data import ImageFolderDataModule

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_colour_set.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_colour_set", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _icon(path: Path, size: int, rgba: tuple[int, int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (size, size), rgba).save(path)


@pytest.fixture
def theme(tmp_path: Path) -> Path:
    """apps: 8 distinct icons (+ a 48/128 px copy of one, a symlink alias, a same-picture copy, a 32 px-only icon);
    devices: 5; places: 2 (too few)."""
    root = tmp_path / "fake-icon-theme"
    icons = root / "usr/share/icons/fake"
    for n in range(7):
        _icon(icons / f"64x64/apps/app{n}.png", 64, (10 * n, 20, 30, 255))
    # app0 also at 48 and 128 px in another colour: only the 64 px drawing must be used
    _icon(icons / "48x48/apps/app0.png", 48, (200, 200, 200, 255))
    _icon(icons / "128x128/apps/app0.png", 128, (201, 201, 201, 255))
    # half-transparent red on one pixel, the rest transparent: composited on grey 128
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.putpixel((3, 5), (255, 0, 0, 128))
    image.save(icons / "64x64/apps/halfred.png")
    _icon(icons / "128x128/apps/big.png", 128, (0, 255, 0, 255))  # only large: downscaled
    (icons / "64x64/apps/alias.png").symlink_to("app1.png")  # a link: the same picture
    _icon(icons / "64x64/apps/zcopy.png", 64, (20, 20, 30, 255))  # same pixels as app2 under another name
    _icon(icons / "32x32/apps/tiny.png", 32, (1, 2, 3, 255))  # below min_size
    for n in range(5):
        _icon(icons / f"48x48/devices/dev{n}.png", 48, (0, 0, 40 * n, 255))
    for n in range(2):
        _icon(icons / f"64x64/places/place{n}.png", 64, (0, 90 + n, 0, 255))
    copyright_file = root / "usr/share/doc/fake-icon-theme/copyright"
    copyright_file.parent.mkdir(parents=True)
    copyright_file.write_text("Files: *\nLicense: LGPL-3+\n text\n")
    return root


def _build(builder, theme: Path, out: Path) -> dict:
    themes = [builder.Theme(root=theme, package="fake-icon-theme", version="1.0-1", licences=builder.licences_of(theme))]
    return builder.build(themes, out, min_per_class=5, val_fraction=0.2, test_fraction=0.2, seed=3)


def test_layout_dedup_and_counts(builder, theme: Path, tmp_path: Path):
    out = tmp_path / "out"
    summary = _build(builder, theme, out)
    files = {
        split: sorted(p.relative_to(out / split).as_posix() for p in (out / split).rglob("*.png")) for split in ("train", "val", "test")
    }
    every = sorted(name for names in files.values() for name in names)
    apps = [f"apps/fake__{name}.png" for name in ("app0", "app1", "app2", "app3", "app4", "app5", "app6", "big", "halfred")]
    devices = [f"devices/fake__dev{n}.png" for n in range(5)]
    assert every == sorted(apps + devices)  # no alias, zcopy, tiny or places; each image in one split
    assert summary["classes"] == ["apps", "devices"]
    assert summary["dropped_classes"] == {"places": 2}
    assert summary["duplicates_removed"] == 2  # alias → app1, zcopy → app2
    # 9 apps: round(1.8) = 2 val, 2 test, 5 train; 5 devices: 1, 1, 3
    assert summary["counts"] == {"apps": {"val": 2, "test": 2, "train": 5}, "devices": {"val": 1, "test": 1, "train": 3}}
    written = json.loads((out / "classes.json").read_text())
    assert written["packages"] == [{"package": "fake-icon-theme", "version": "1.0-1", "licences": ["LGPL-3+"]}]
    assert "| apps | 5 | 2 | 2 |" in (out / "SOURCE.md").read_text()
    # the split is seeded: a second build writes the same files
    again = tmp_path / "again"
    _build(builder, theme, again)
    assert files == {split: sorted(p.relative_to(again / split).as_posix() for p in (again / split).rglob("*.png")) for split in files}
    # the datamodule reads it as an official split with the contexts as classes
    datamodule = ImageFolderDataModule(root=str(out), image_size=64)
    assert datamodule.facts.class_names == ("apps", "devices")
    assert sorted(sample.split for sample in datamodule.samples).count("test") == 3


def test_pixels_compositing_and_size_choice(builder, theme: Path, tmp_path: Path):
    out = tmp_path / "out"
    _build(builder, theme, out)

    def pixels(name: str) -> np.ndarray:
        path = next(out.rglob(f"fake__{name}.png"))
        image = Image.open(path)
        assert image.mode == "RGB" and image.size == (64, 64)
        return np.asarray(image)

    half = pixels("halfred")
    # alpha 128/255 over grey 128: R = 255·a + 128·(1 − a) = 191.75 → 192, G = B = 128·(1 − a) = 63.75 → 64
    assert half[5, 3].tolist() == [192, 64, 64]
    assert (half[0, 0] == 128).all() and (half != 128).any(axis=2).sum() == 1
    assert (pixels("app0") == [0, 20, 30]).all()  # the 64 px drawing, not the 48 or 128 px one
    assert (pixels("big") == [0, 255, 0]).all()  # 128 px downscaled (a flat colour stays flat)
    assert (pixels("dev3") == [0, 0, 120]).all()  # 48 px upscaled when no larger drawing exists
