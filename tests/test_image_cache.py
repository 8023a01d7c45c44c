"""The decode-once cache: preprocessing, reuse, rebuild on changes, and corrupt files skipped loudly."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_gen.data import image_cache
from lightning_gen.data.image_cache import (
    Preprocessing,
    SkippedImagesWarning,
    decode_image,
    default_cache_dir,
    open_image_cache,
)
from lightning_gen.errors import UserError

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def write_image(path: Path, size: tuple[int, int], colour: tuple[int, int, int], inner: tuple | None = None) -> Path:
    """A solid image; ``inner`` = (box, colour) paints a rectangle (left, top, right, bottom) in another colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if inner is not None:
        box, inner_colour = inner
        image.paste(inner_colour, box)
    image.save(path)
    return path


def write_folder(root: Path, count: int) -> list[Path]:
    return [write_image(root / f"{index:03d}.jpg", (70, 70), (index * 20, 100, 200 - index * 10)) for index in range(count)]


def assert_colour(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> None:
    assert image.dtype == np.uint8
    difference = np.abs(image.astype(int) - np.array(colour)[:, None, None])
    assert difference.max() <= tolerance, difference.max()


def test_default_is_largest_centre_square_resized(tmp_path):
    # 60 wide × 100 tall: the centred 60×60 square is rows 20..80, all green.
    path = write_image(tmp_path / "tall.png", (60, 100), RED, inner=((0, 20, 60, 80), GREEN))
    image = decode_image(path, Preprocessing(image_size=16))
    assert image.shape == (3, 16, 16)
    assert_colour(image, GREEN, tolerance=0)


def test_crop_size_is_taken_from_the_centre_before_resizing(tmp_path):
    path = write_image(tmp_path / "face.jpg", (178, 218), BLUE, inner=((15, 35, 163, 183), RED))
    image = decode_image(path, Preprocessing(image_size=32, crop_size=148))
    assert_colour(image[:, 2:-2, 2:-2], RED, tolerance=40)


def test_crop_box_is_cut_out_first(tmp_path):
    path = write_image(tmp_path / "bird.png", (100, 80), GREEN, inner=((40, 10, 70, 40), RED))
    image = decode_image(path, Preprocessing(image_size=8), crop_box=(40, 10, 30, 30))
    assert_colour(image, RED, tolerance=0)


def test_large_jpeg_decodes_to_the_requested_size(tmp_path):
    path = write_image(tmp_path / "big.jpg", (800, 600), BLUE)
    image = decode_image(path, Preprocessing(image_size=24))
    assert image.shape == (3, 24, 24)
    assert_colour(image, BLUE, tolerance=20)


def test_cache_is_built_once_then_reused_and_rebuilt_on_changes(tmp_path, monkeypatch):
    files = write_folder(tmp_path / "data", 6)
    calls = []
    real_decode = image_cache.decode_image
    monkeypatch.setattr(image_cache, "decode_image", lambda *args: calls.append(args[0]) or real_decode(*args))
    cache_dir = tmp_path / "cache"

    first = open_image_cache(files, tmp_path / "data", Preprocessing(16), "toy", cache_dir)
    assert len(calls) == 6
    assert first.images.shape == (6, 3, 16, 16)
    assert isinstance(first.images.array, np.memmap) and first.images.array.dtype == np.uint8
    assert first.kept.tolist() == list(range(6)) and first.skipped == ()
    assert_colour(np.asarray(first.images[2]), (40, 100, 180), tolerance=12)
    built_at = os.stat(first.location).st_mtime_ns

    again = open_image_cache(files, tmp_path / "data", Preprocessing(16), "toy", cache_dir)
    assert len(calls) == 6 and again.location == first.location
    assert os.stat(again.location).st_mtime_ns == built_at

    bigger = open_image_cache(files, tmp_path / "data", Preprocessing(24), "toy", cache_dir)
    assert len(calls) == 12 and bigger.images.shape == (6, 3, 24, 24) and bigger.location != first.location

    files.append(write_image(tmp_path / "data" / "new.jpg", (70, 70), RED))
    grown = open_image_cache(files, tmp_path / "data", Preprocessing(16), "toy", cache_dir)
    assert len(calls) == 19 and grown.images.shape[0] == 7


def test_corrupt_and_empty_files_are_skipped_with_one_warning_naming_them(tmp_path):
    root = tmp_path / "data"
    files = write_folder(root, 5)
    (root / "garbage.jpg").write_bytes(b"\xff\xd8 this is not a jpeg at all" * 10)
    (root / "empty.jpg").write_bytes(b"")
    truncated = root / "truncated.jpg"
    truncated.write_bytes(files[0].read_bytes()[:300])
    files = files[:2] + [root / "garbage.jpg"] + files[2:4] + [root / "empty.jpg", truncated] + files[4:]

    with pytest.warns(SkippedImagesWarning, match=r"3 of 8 toy images .*left out: garbage\.jpg.*empty\.jpg.*truncated\.jpg"):
        cached = open_image_cache(files, root, Preprocessing(16), "toy", tmp_path / "cache")

    assert cached.kept.tolist() == [0, 1, 3, 4, 7]
    assert_colour(np.asarray(cached.images[7]), (80, 100, 160), tolerance=12)  # source 7 is the 5th good image
    sidecar = json.loads(cached.location.with_suffix(".json").read_text())
    assert [entry["path"] for entry in sidecar["skipped"]] == ["garbage.jpg", "empty.jpg", "truncated.jpg"]
    assert len(sidecar["kept"]) == 5


def test_warning_names_ten_files_then_counts_the_rest(tmp_path):
    root = tmp_path / "data"
    good = write_folder(root, 1)
    bad = []
    for index in range(13):
        (root / f"bad{index:02d}.jpg").write_bytes(b"")
        bad.append(root / f"bad{index:02d}.jpg")
    with pytest.warns(SkippedImagesWarning, match=r"bad09\.jpg.* and 3 more") as record:
        open_image_cache(good + bad, root, Preprocessing(8), "toy", tmp_path / "cache")
    assert "bad10.jpg" not in str(record[0].message)


def test_no_decodable_image_is_a_user_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="None of the 1 toy images"):
        open_image_cache([tmp_path / "a.jpg"], tmp_path, Preprocessing(8), "toy", tmp_path / "cache")
    assert not list((tmp_path / "cache" / "toy").glob("*.npy"))


def test_mapped_images_pickle_as_their_path(tmp_path):
    files = write_folder(tmp_path / "data", 3)
    cached = open_image_cache(files, tmp_path / "data", Preprocessing(32), "toy", tmp_path / "cache")
    restored = pickle.loads(pickle.dumps(cached.images))
    assert len(pickle.dumps(cached.images)) < 1000
    np.testing.assert_array_equal(restored[1], cached.images[1])


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_GEN_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("LIGHTNING_GEN_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "lightning_gen"


def test_unwritable_cache_folder_is_a_user_error(tmp_path):
    files = write_folder(tmp_path / "data", 1)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(UserError, match=r"Cannot write the image cache to .*blocker.*LIGHTNING_GEN_CACHE"):
        open_image_cache(files, tmp_path / "data", Preprocessing(8), "toy", blocker)
