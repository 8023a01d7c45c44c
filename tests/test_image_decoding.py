"""The one image decoder (lightning_gen.data.preprocess): 16-bit images scaled, EXIF orientation applied,
big images refused over a stated pixel limit naming the file, and decoded without holding them whole twice."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, process_env
from PIL import Image, ImageOps

from lightning_gen.data.image_cache import Preprocessing, SkippedImagesWarning, decode_image, open_image_cache
from lightning_gen.data.preprocess import ImageTooLargeError, decode_file, load_user_image, preprocess_pil, read_upright
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.metrics.image_folders import load_folder

RED, BLUE = (255, 0, 0), (0, 0, 255)
GREY_16 = round(0.4 * 65535)  # 26214: 40 % grey in 16 bits, which is 102 in 8 bits (26214 / 257)


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv("LIGHTNING_GEN_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after tests that raise it


# -- 16-bit and 32-bit images -------------------------------------------------------------------------
def grey_16bit(mode: str) -> Image.Image:
    values = np.full((12, 20), GREY_16, dtype=np.uint16)
    if mode == "I;16":
        return Image.fromarray(values)
    if mode == "I;16B":
        return Image.frombytes("I;16B", (20, 12), values.astype(">u2").tobytes())
    if mode == "I":
        return Image.fromarray(values.astype(np.int32))
    return Image.fromarray(np.full((12, 20), 0.4, dtype=np.float32))  # F: 0…1


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I", "F"])
def test_high_bit_depth_grey_is_scaled_not_clipped(mode):
    image = grey_16bit(mode)
    assert image.mode == mode
    for channels in (3, 1):
        array = preprocess_pil(image.copy(), Preprocessing(image_size=8), channels=channels)
        assert array.shape == (channels, 8, 8)
        assert np.unique(array).tolist() == [102]  # PIL's own conversion makes this 255 (white)


def test_a_16bit_png_file_decodes_to_40_percent_grey(tmp_path):
    path = tmp_path / "grey16.png"
    grey_16bit("I;16").save(path)
    assert Image.open(path).mode == "I;16"
    assert np.unique(decode_image(path, Preprocessing(image_size=8))).tolist() == [102]
    white = tmp_path / "white16.png"
    Image.fromarray(np.full((12, 20), 65535, dtype=np.uint16)).save(white)
    assert np.unique(decode_image(white, Preprocessing(image_size=8))).tolist() == [255]
    assert np.unique(load_user_image(path, DataFacts(image_size=8))[0].mul(255).round().numpy()).tolist() == [102]


# -- EXIF orientation ---------------------------------------------------------------------------------
def with_orientation(image: Image.Image, path: Path, orientation: int, **options) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **options)
    return path


def top_red_bottom_blue(width: int = 30, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width, height // 2))
    return image


@pytest.mark.parametrize("orientation, left, right", [(6, BLUE, RED), (8, RED, BLUE)])
def test_a_jpeg_with_exif_orientation_decodes_upright(tmp_path, orientation, left, right):
    # Stored: red over blue. Orientation 6 turns it 90° clockwise to show it (red on the right), 8 anticlockwise.
    path = with_orientation(top_red_bottom_blue(), tmp_path / "phone.jpg", orientation, quality=95)
    assert Image.open(path).getexif()[0x0112] == orientation
    array = decode_image(path, Preprocessing(image_size=8)).astype(int)
    for columns, colour in ((slice(0, 3), left), (slice(5, 8), right)):
        difference = np.abs(array[:, :, columns] - np.array(colour)[:, None, None])
        assert difference.max() <= 40, (orientation, colour, difference.max())


def test_evaluates_folder_mode_decodes_16bit_and_exif_like_the_datasets(tmp_path):
    greys = tmp_path / "grey"
    greys.mkdir()
    grey_16bit("I;16").resize((8, 8)).save(greys / "grey16.png")
    assert load_folder(greys, 8).mul(255).round().unique().tolist() == [102.0]  # PIL's own conversion: 255
    # Stored red over blue, 8×6, with orientation 6: shown 6×8, turned clockwise (red on the right).
    upright = read_upright(with_orientation(top_red_bottom_blue(8, 6), tmp_path / "phone.png", 6))
    assert upright.size == (6, 8)
    assert upright.getpixel((5, 0)) == RED and upright.getpixel((0, 0)) == BLUE


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("size, image_size", [((37, 23), 8), ((400, 300), 16)])  # the second takes the box-reduce path
def test_every_orientation_and_crop_box_equals_decoding_the_upright_image(tmp_path, orientation, size, image_size):
    rng = np.random.default_rng(orientation)
    smooth = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    path = with_orientation(smooth, tmp_path / f"turned{orientation}.png", orientation)
    upright = ImageOps.exif_transpose(Image.open(path))
    width, height = upright.size
    crop_box = (width // 7, height // 5, width // 2, height // 2)
    preprocessing = Preprocessing(image_size=image_size)
    got = decode_file(path, preprocessing, crop_box).astype(int)
    expected = preprocess_pil(upright, preprocessing, crop_box).astype(int)
    assert np.abs(got - expected).max() <= 3


# -- big images ---------------------------------------------------------------------------------------
def test_an_image_over_the_limit_is_refused_naming_the_file_and_how_to_raise_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_GEN_MAX_IMAGE_PIXELS", "1000000")
    path = tmp_path / "poster.png"
    Image.new("RGB", (1001, 1000), RED).save(path)
    with pytest.raises(ImageTooLargeError) as caught:
        decode_file(path, Preprocessing(image_size=8))
    assert str(caught.value) == (
        f"{path} is 1001×1000 pixels, more than the limit of 1,000,000; set the environment variable "
        "LIGHTNING_GEN_MAX_IMAGE_PIXELS=1001000 (or more) to decode it, or downscale the file."
    )
    monkeypatch.setenv("LIGHTNING_GEN_MAX_IMAGE_PIXELS", "1001000")
    assert decode_file(path, Preprocessing(image_size=8)).shape == (3, 8, 8)
    monkeypatch.setenv("LIGHTNING_GEN_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UserError, match="LIGHTNING_GEN_MAX_IMAGE_PIXELS is 'lots', not a positive number of pixels"):
        decode_file(path, Preprocessing(image_size=8))


def test_a_10000_pixel_png_is_refused_by_default_without_pils_nameless_warning(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (10000, 10000)).save(path)  # 100 megapixels in a few kilobytes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError) as refused:
            load_user_image(path, DataFacts(image_size=8))
    assert str(refused.value) == (
        f"{path} is 10000×10000 pixels, more than the limit of 50,000,000; set the environment variable "
        "LIGHTNING_GEN_MAX_IMAGE_PIXELS=100000000 (or more) to decode it, or downscale the file."
    )
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_image_past_pils_own_hard_limit_is_refused_in_the_same_words(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("1", (20000, 10000)).save(path)  # PIL itself raises DecompressionBombError past 2 × 89 megapixels
    with pytest.raises(UserError) as refused:
        load_user_image(path, DataFacts(image_size=8))
    assert str(refused.value) == (
        f"{path} is 200,000,000 pixels, more than the limit of 50,000,000; set the environment variable "
        "LIGHTNING_GEN_MAX_IMAGE_PIXELS=200000000 (or more) to decode it, or downscale the file."
    )


def test_a_too_large_image_is_left_out_of_a_dataset_then_included_once_the_limit_is_raised(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    files = []
    for index in range(3):
        files.append(root / f"{index}.png")
        Image.new("RGB", (40, 30), (index * 80, 50, 50)).save(files[-1])
    files.insert(1, root / "poster.png")
    Image.new("RGB", (1200, 1000), RED).save(files[1])
    monkeypatch.setenv("LIGHTNING_GEN_MAX_IMAGE_PIXELS", "1000000")
    with pytest.warns(
        SkippedImagesWarning,
        match=(
            r"1 of 4 toy images could not be decoded and are left out: poster\.png \(1200×1000 pixels, more than the limit of "
            r"1,000,000; set the environment variable LIGHTNING_GEN_MAX_IMAGE_PIXELS=1200000 \(or more\) to "
            r"decode it, or downscale the file\)"
        ),
    ):
        cached = open_image_cache(files, root, Preprocessing(8), "toy", tmp_path / "cache")
    assert cached.kept.tolist() == [0, 2, 3]
    sidecar = json.loads(cached.location.with_suffix(".json").read_text())
    assert sidecar["skipped"][0]["pixels"] == 1_200_000

    monkeypatch.setenv("LIGHTNING_GEN_MAX_IMAGE_PIXELS", "1200000")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedImagesWarning)
        again = open_image_cache(files, root, Preprocessing(8), "toy", tmp_path / "cache")
    assert again.kept.tolist() == [0, 1, 2, 3]
    assert np.abs(np.asarray(again.images[1]).astype(int) - np.array(RED)[:, None, None]).max() == 0


# Loads preprocess.py alone (not the datamodules' package, which imports Lightning) to start fast, then
# resets the process's peak RSS (VmHWM, Linux ≥ 4.0) so that the peak read after decoding is the decode's own.
PEAK_PROBE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("preprocess", "lightning_gen/data/preprocess.py")
preprocess = sys.modules["preprocess"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(preprocess)
from PIL import Image
def status(key):
    return 1024 * int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(key)))
Image.open(sys.argv[1]).close()
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status("VmRSS")
array = preprocess.decode_file(sys.argv[1], preprocess.Preprocessing(image_size=32))
print(status("VmHWM") - before, int(array.mean()))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to read the peak RSS")
def test_a_big_png_is_decoded_without_holding_it_whole_twice(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (6000, 6000), (20, 120, 220)).save(path, compress_level=1)
    whole = 6000 * 6000 * 3
    result = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(path)], cwd=REPO, env=process_env(), capture_output=True, text=True, timeout=300, check=True
    )
    grown, mean = map(int, result.stdout.split())
    assert mean == (20 + 120 + 220) // 3
    assert grown < 1.5 * whole, f"peak memory grew by {grown / 1e6:.0f} MB decoding a {whole / 1e6:.0f} MB image"
