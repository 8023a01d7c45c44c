"""CelebADataModule on a tiny copy of the official layout: 178×218 JPEGs, the attribute table and the split file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_celeba import BLOND, attribute_signs, write_celeba

from lightning_gen.data import CelebADataModule
from lightning_gen.data.celeba import ATTRIBUTE_NAMES
from lightning_gen.data.image_cache import SkippedImagesWarning
from lightning_gen.errors import MissingDatasetError, UserError


def make(root: Path, tmp_path: Path, **kwargs) -> CelebADataModule:
    options = {"batch_size": 4, "image_size": 16, "cache_dir": str(tmp_path / "cache"), **kwargs}
    return CelebADataModule(root=str(root), **options)


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celeba")
    write_celeba(root)
    return root


def test_official_split_is_used(celeba_root, tmp_path):
    datamodule = make(celeba_root, tmp_path)
    datamodule.setup()
    assert datamodule.train_set.rows.tolist() == list(range(8))
    assert datamodule.val_set.rows.tolist() == [8, 9]
    assert datamodule.test_set is not None and datamodule.test_set.rows.tolist() == [10, 11]


def test_batches_carry_attributes_parsed_by_name(celeba_root, tmp_path):
    datamodule = make(celeba_root, tmp_path)
    datamodule.setup()
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["attributes"].shape == (2, 40) and set(batch["attributes"].unique().tolist()) <= {0.0, 1.0}
    for row, attributes in zip(batch["index"].tolist(), batch["attributes"]):
        expected = [1.0 if sign == 1 else 0.0 for sign in attribute_signs(row + 1)]
        assert attributes.tolist() == expected
    third = datamodule.train_set[2]  # 000003.jpg
    names = datamodule.facts.attribute_names
    assert third["attributes"][names.index("Blond_Hair")] == 1.0 and third["attributes"][names.index("Smiling")] == 1.0
    assert third["attributes"][names.index("Male")] == 0.0


def test_face_is_centre_cropped_before_resizing(celeba_root, tmp_path):
    datamodule = make(celeba_root, tmp_path)
    datamodule.setup()
    image = datamodule.train_set[4]["image"] * 255  # 000005.jpg: red = 100 inside the crop, blue frame outside
    # The outermost pixels are left out: JPEG's chroma subsampling blurs the colour edge itself.
    assert image[2, 1:-1, 1:-1].max() < 10, "the blue frame outside the 148×148 crop leaked in"
    torch.testing.assert_close(image[0].mean(), torch.tensor(100.0), atol=6.0, rtol=0.0)


def test_without_partition_file_val_fraction_splits(tmp_path):
    write_celeba(tmp_path / "data", partition=False)
    datamodule = make(tmp_path / "data", tmp_path, val_fraction=0.25, seed=3)
    datamodule.setup()
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 3 and datamodule.test_set is None
    again = make(tmp_path / "data", tmp_path, val_fraction=0.25, seed=3)
    again.setup()
    assert again.val_set.rows.tolist() == datamodule.val_set.rows.tolist()


def test_max_images_takes_the_first_files_and_holds_out_validation(celeba_root, tmp_path):
    datamodule = make(celeba_root, tmp_path, max_images=6, val_fraction=0.34)
    datamodule.setup()
    rows = np.concatenate([datamodule.train_set.rows, datamodule.val_set.rows])
    assert sorted(rows.tolist()) == list(range(6)) and len(datamodule.val_set) == 2
    assert datamodule.test_set is None


def test_kaggle_csv_layout_is_read(tmp_path):
    write_celeba(tmp_path / "data", count=6, kaggle_csv=True)
    datamodule = make(tmp_path / "data", tmp_path)
    datamodule.setup()
    assert datamodule.train_set.rows.tolist() == [0, 1] and datamodule.test_set.rows.tolist() == [4, 5]
    assert datamodule.train_set.attributes[2, BLOND] == 1.0


def test_unreadable_images_are_skipped_and_attributes_stay_aligned(tmp_path):
    write_celeba(tmp_path / "data")
    (tmp_path / "data" / "img_align_celeba" / "000004.jpg").write_bytes(b"\x00garbage" * 50)
    (tmp_path / "data" / "img_align_celeba" / "000006.jpg").write_bytes(b"")
    datamodule = make(tmp_path / "data", tmp_path)
    with pytest.warns(SkippedImagesWarning, match=r"2 of 12 celeba images .*000004\.jpg.*000006\.jpg"):
        datamodule.setup()
    assert datamodule.train_set.rows.tolist() == [0, 1, 2, 4, 6, 7]
    for batch in datamodule.train_dataloader():
        for row, image, attributes in zip(batch["index"].tolist(), batch["image"], batch["attributes"]):
            assert attributes.tolist() == [1.0 if sign == 1 else 0.0 for sign in attribute_signs(row + 1)]
            red = image[0, 4:-4, 4:-4].mean() * 255
            torch.testing.assert_close(red, torch.tensor((row + 1) * 20.0), atol=6.0, rtol=0.0)


def test_facts_need_no_files():
    facts = CelebADataModule(root="/nowhere/celeba").facts
    assert facts.attribute_names == ATTRIBUTE_NAMES and facts.num_attributes == 40 and facts.image_size == 64


def test_malformed_attribute_line_names_file_and_line(tmp_path):
    write_celeba(tmp_path / "data", count=4)
    attribute_file = tmp_path / "data" / "list_attr_celeba.txt"
    lines = attribute_file.read_text().splitlines()
    lines[4] = lines[4].rsplit(" ", 3)[0]  # 000003.jpg loses values
    attribute_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"list_attr_celeba\.txt line 5 "):
        make(tmp_path / "data", tmp_path).setup()


def test_missing_root_names_path_and_download(tmp_path):
    with pytest.raises(MissingDatasetError, match=r"absent.*mmlab\.ie\.cuhk\.edu\.hk/projects/CelebA\.html"):
        make(tmp_path / "absent", tmp_path).setup()


def test_missing_attribute_file_is_named(tmp_path):
    write_celeba(tmp_path / "data", count=2)
    (tmp_path / "data" / "list_attr_celeba.txt").unlink()
    with pytest.raises(MissingDatasetError, match=r"list_attr_celeba\.txt"):
        make(tmp_path / "data", tmp_path).setup()
