"""CatFacesDataModule on a tiny copy of the Kaggle layout (JPEGs nested in cats/cats/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_gen.data import CatFacesDataModule
from lightning_gen.data.image_cache import SkippedImagesWarning
from lightning_gen.errors import MissingDatasetError, UserError


def write_cats(root: Path, count: int = 12) -> list[Path]:
    """Solid 64×64 JPEGs whose red channel encodes their number (number × 20); one upper-case suffix, one PNG."""
    folder = root / "cats" / "cats"
    folder.mkdir(parents=True)
    paths = []
    for number in range(count):
        suffix = ".JPG" if number == 3 else ".png" if number == 5 else ".jpg"
        path = folder / f"{number:02d}{suffix}"
        Image.new("RGB", (64, 64), (number * 20, 128, 64)).save(path)
        paths.append(path)
    (folder / "notes.txt").write_text("not an image")
    return paths


def make(root: Path, tmp_path: Path, **kwargs) -> CatFacesDataModule:
    options = {"batch_size": 4, "val_fraction": 0.25, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return CatFacesDataModule(root=str(root), **options)


def test_batches_are_float_images_in_unit_range(tmp_path):
    write_cats(tmp_path / "data")
    datamodule = make(tmp_path / "data", tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 3 and datamodule.test_set is None
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"image", "index"}
    assert batch["image"].shape == (4, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    # Each image's red channel says which file it came from: rows follow the sorted file order.
    red = batch["image"][:, 0].mean(dim=(1, 2)) * 255
    torch.testing.assert_close(red, batch["index"].float() * 20, atol=4.0, rtol=0.0)


def test_train_and_val_together_hold_every_image_once(tmp_path):
    write_cats(tmp_path / "data")
    datamodule = make(tmp_path / "data", tmp_path)
    datamodule.setup()
    rows = np.concatenate([datamodule.train_set.rows, datamodule.val_set.rows])
    assert sorted(rows.tolist()) == list(range(12))


def test_split_and_batch_order_depend_only_on_seed_and_epoch(tmp_path):
    write_cats(tmp_path / "data")

    def epoch_order(seed: int, epoch: int) -> tuple[list[int], list[int]]:
        datamodule = make(tmp_path / "data", tmp_path, seed=seed)
        datamodule.setup()
        loader = datamodule.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return datamodule.val_set.rows.tolist(), [row for batch in loader for row in batch["index"].tolist()]

    assert epoch_order(seed=1, epoch=0) == epoch_order(seed=1, epoch=0)
    assert epoch_order(seed=1, epoch=1) == epoch_order(seed=1, epoch=1)
    assert epoch_order(seed=1, epoch=0)[1] != epoch_order(seed=1, epoch=1)[1]
    assert epoch_order(seed=1, epoch=0) != epoch_order(seed=2, epoch=0)


def test_corrupt_and_empty_files_are_left_out_with_a_warning(tmp_path):
    write_cats(tmp_path / "data")
    folder = tmp_path / "data" / "cats" / "cats"
    (folder / "04.jpg").write_bytes(b"garbage bytes, not a JPEG" * 8)
    (folder / "07.jpg").write_bytes(b"")
    datamodule = make(tmp_path / "data", tmp_path, val_fraction=0.1)
    datamodule.prepare_data()
    with pytest.warns(SkippedImagesWarning, match=r"2 of 12 cat_faces images .*cats/cats/04\.jpg.*cats/cats/07\.jpg"):
        datamodule.setup()
    served = [row for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()) for batch in loader
              for row in batch["index"].tolist()]  # fmt: skip
    assert 4 not in served and 7 not in served
    assert datamodule.cache is not None and sorted(datamodule.cache.kept.tolist()) == [0, 1, 2, 3, 5, 6, 8, 9, 10, 11]


def test_cache_is_reused_by_a_second_datamodule(tmp_path, monkeypatch):
    write_cats(tmp_path / "data")
    make(tmp_path / "data", tmp_path).setup()
    from lightning_gen.data import image_cache

    def must_not_decode(*args):
        raise AssertionError("decoded again although the cache exists")

    monkeypatch.setattr(image_cache, "decode_image", must_not_decode)
    datamodule = make(tmp_path / "data", tmp_path)
    datamodule.setup()
    assert len(datamodule.train_set) == 9


def test_facts_need_no_files():
    facts = CatFacesDataModule(root="/nowhere/cats").facts
    assert facts.image_size == 64 and facts.channels == 3 and facts.num_classes == 0


def test_missing_root_names_path_and_download(tmp_path):
    datamodule = make(tmp_path / "absent", tmp_path)
    with pytest.raises(MissingDatasetError, match=r"absent.*kaggle\.com/datasets/spandan2/cats-faces-64x64"):
        datamodule.setup()


def test_root_without_images_says_so(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "readme.txt").write_text("nothing here")
    with pytest.raises(UserError, match=r"No images .* found under .*data"):
        make(tmp_path / "data", tmp_path).setup()
