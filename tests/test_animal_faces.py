"""AnimalFacesDataModule on a tiny copy of the AFHQ layout: afhq/{train,val}/{cat,dog,wild}/*.jpg."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_afhq import make, write_afhq

from lightning_gen.errors import MissingDatasetError, UserError


@pytest.fixture(scope="module")
def afhq_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "afhq"
    write_afhq(root)
    return root


def test_official_split_and_labels(afhq_root, tmp_path):
    datamodule = make(afhq_root, tmp_path)
    assert datamodule.facts.class_names == ("cat", "dog", "wild")
    datamodule.setup()
    assert len(datamodule.train_set) == 9 and len(datamodule.val_set) == 6
    labels = datamodule.train_set.labels[datamodule.train_set.rows].tolist()
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape == (4, 3, 8, 8) and batch["label"].tolist() == [0, 0, 1, 1]


def test_class_subset(afhq_root, tmp_path):
    datamodule = make(afhq_root, tmp_path, classes=["wild", "dog"])
    assert {(s.path.parent.name, s.label) for s in datamodule.samples} == {("wild", 0), ("dog", 1)}


def test_unknown_class_and_missing_folder(afhq_root, tmp_path):
    with pytest.raises(UserError, match="data.classes fox .*cat, dog, wild"):
        make(afhq_root, tmp_path, classes=["cat", "fox"])
    with pytest.raises(MissingDatasetError, match="kaggle.com/datasets/andrewmvd/animal-faces"):
        make(tmp_path / "afhq", tmp_path).samples
