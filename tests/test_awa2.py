"""AwA2DataModule on a tiny copy of the real layout: padded index files with '+' names, a 0/1 matrix, JPEGs per class."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_awa2 import CLASSES, IMAGES_PER_CLASS, make, write_awa2

from lightning_gen.errors import MissingDatasetError, UserError


@pytest.fixture(scope="module")
def awa2_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("awa2") / "Animals_with_Attributes2"
    write_awa2(root)
    return root


def test_subset_labels_and_attribute_rows(awa2_root, tmp_path):
    datamodule = make(awa2_root, tmp_path)
    assert datamodule.facts.class_names == ("horse", "skunk", "sheep", "bat")
    assert datamodule.facts.attribute_names == ("black", "white", "small", "tail", "fast", "strong")
    datamodule.setup()
    samples = datamodule.samples
    assert len(samples) == 4 * IMAGES_PER_CLASS
    assert [sample.label for sample in samples[::IMAGES_PER_CLASS]] == [0, 1, 2, 3]
    matrix = write_awa2(tmp_path / "expected")
    columns = [0, 1, 3, 4, 5, 6]
    for sample in samples:
        row = CLASSES.index(sample.path.parent.name)
        assert list(sample.attributes) == matrix[row, columns].tolist()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["attributes"].shape == (4, 6)


def test_plus_names_select_classes(awa2_root, tmp_path):
    datamodule = make(awa2_root, tmp_path, classes=["killer+whale"], attributes=["blue"])
    assert {sample.path.parent.name for sample in datamodule.samples} == {"killer+whale"}


@pytest.mark.parametrize("option, value, message", [
    ("classes", ["horse", "unicorn"], "data.classes unicorn not in .*classes.txt.*killer\\+whale"),
    ("attributes", ["furry"], "data.attributes furry not in .*predicates.txt.*flies"),
])  # fmt: skip
def test_unknown_names_list_the_valid_ones(awa2_root, tmp_path, option, value, message):
    with pytest.raises(UserError, match=message):
        make(awa2_root, tmp_path, **{option: value}).samples


def test_a_matrix_of_the_wrong_shape_is_named(tmp_path):
    root = tmp_path / "Animals_with_Attributes2"
    write_awa2(root, matrix_rows=5)
    with pytest.raises(UserError, match="predicate-matrix-binary.txt is 5×8 but .* 6 classes × 8 attributes"):
        make(root, tmp_path).samples


def test_a_missing_class_folder_is_named(tmp_path):
    root = tmp_path / "Animals_with_Attributes2"
    write_awa2(root)
    for path in (root / "JPEGImages" / "bat").iterdir():
        path.unlink()
    (root / "JPEGImages" / "bat").rmdir()
    with pytest.raises(MissingDatasetError, match="JPEGImages/bat"):
        make(root, tmp_path).samples


def test_a_missing_root_says_where_to_download(tmp_path):
    with pytest.raises(MissingDatasetError, match="cvml.ista.ac.at"):
        make(tmp_path / "nowhere", tmp_path).samples
