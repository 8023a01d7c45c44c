"""NABirdsDataModule on a tiny copy of the real NABirds layout: index files, class folders, hierarchy, boxes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_nabirds import CLASSES, make, write_nabirds

from lightning_gen.errors import MissingDatasetError, UserError

# (id, name) as in classes.txt: hierarchy nodes ("Birds", the species node) beside the leaf classes.
# Leaf class → (train, test) image counts.
MALE, FEMALE = CLASSES[3][1], CLASSES[4][1]


@pytest.fixture(scope="module")
def nabirds(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    root = tmp_path_factory.mktemp("data") / "nabirds"
    return root, write_nabirds(root)


def test_default_classes_are_seed_002s_hummingbirds_with_captions(nabirds, tmp_path):
    root, made = nabirds
    datamodule = make(root, tmp_path)
    assert datamodule.facts.class_names == (MALE, FEMALE) and datamodule.facts.has_captions
    samples = datamodule.samples
    assert len(samples) == 11  # Anna's Hummingbird is left out
    by_label = {sample.label: sample for sample in samples}
    assert by_label[0].caption == "a photo of a allen's hummingbird (adult male)"
    assert by_label[1].caption == "a photo of a allen's hummingbird (female, immature)"
    assert all(sample.path.is_file() and sample.crop_box is None for sample in samples)


def test_official_split_with_validation_from_train(nabirds, tmp_path):
    root, made = nabirds
    datamodule = make(root, tmp_path, val_fraction=0.25)
    datamodule.setup()
    assert len(datamodule.test_set) == 3 and len(datamodule.train_set) + len(datamodule.val_set) == 8
    assert len(datamodule.val_set) == 2
    samples = datamodule.samples
    test_uuids = {uuid for uuid, (class_id, split) in made.items() if split == "test" and class_id != 448}
    test_files = {samples[row].path.stem for row in datamodule.test_set.rows.tolist()}
    assert test_files == {image_id.replace("-", "") for image_id in test_uuids}
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["caption"][0].startswith("a photo of a allen's hummingbird")


def test_classes_chosen_by_name_get_labels_in_that_order(nabirds, tmp_path):
    root, _ = nabirds
    datamodule = make(root, tmp_path, classes=["Anna's Hummingbird", FEMALE], caption_template="{name}, a bird")
    labels = {(sample.path.parent.name, sample.label, sample.caption) for sample in datamodule.samples}
    assert labels == {("0448", 0, "anna's hummingbird, a bird"), ("0447", 1, "allen's hummingbird (female, immature), a bird")}


def test_a_hierarchy_node_gathers_its_descendants(nabirds, tmp_path):
    root, _ = nabirds
    datamodule = make(root, tmp_path, classes=["Allen's Hummingbird"])
    assert {sample.path.parent.name for sample in datamodule.samples} == {"0446", "0447"}
    assert {sample.label for sample in datamodule.samples} == {0}


def test_crop_to_bbox_keeps_only_the_bird(nabirds, tmp_path):
    root, _ = nabirds
    datamodule = make(root, tmp_path, crop_to_bbox=True, val_fraction=0.0)
    assert datamodule.samples[0].crop_box == (20, 10, 10, 10)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    red = batch["image"][batch["label"] == 0]
    assert red[:, 0].mean() > 0.7 and red[:, 1].mean() < 0.3  # all bird, no grey background
    uncropped = make(root, tmp_path / "plain", val_fraction=0.0)
    uncropped.setup()
    plain = next(iter(uncropped.test_dataloader()))["image"]
    assert (plain - 0.5).abs().min() < 0.05  # the grey background is still there


def test_unknown_class_name_lists_close_matches_and_the_file(nabirds, tmp_path):
    root, _ = nabirds
    with pytest.raises(UserError) as error:
        _ = make(root, tmp_path, classes=["Allens Hummingbird (adult male)"]).samples
    message = str(error.value)
    assert "Allens Hummingbird (adult male)" in message and str(root / "classes.txt") in message
    assert MALE in message


def test_missing_root_and_missing_index_file_name_the_path(nabirds, tmp_path):
    with pytest.raises(MissingDatasetError, match="dl.allaboutbirds.org/nabirds"):
        _ = make(tmp_path / "nowhere", tmp_path).samples
    partial = tmp_path / "partial"
    (partial / "images").mkdir(parents=True)
    for name in ("images.txt", "image_class_labels.txt", "classes.txt"):
        (partial / name).write_text("")
    with pytest.raises(MissingDatasetError) as error:
        _ = make(partial, tmp_path).samples
    assert str(partial / "train_test_split.txt") in str(error.value)
