"""CVAE: layer sizes per variant and injection, conditions from names and prompts, CLI linking, checkpoint vocabulary."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY_CONFIG, run_cli
from PIL import Image
from torchvision.utils import make_grid

from lightning_gen.checkpoints.loading import load_model
from lightning_gen.data import ShapesDataModule
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models import CVAE
from lightning_gen.models.condition_grid import shown_conditions
from lightning_gen.models.prompt_attributes import attributes_in_prompt

FACTS = ShapesDataModule(image_size=16).facts  # 24 classes, 12 attributes
FEATURES = 16 * 4 * 4  # channels (8, 16) on 16×16 images


def tiny(**kwargs) -> CVAE:
    return CVAE(FACTS, channels=(8, 16), latent_dim=4, **kwargs)


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("injection", ["concat", "add"])
@pytest.mark.parametrize("condition, size", [("class", 24), ("attributes", 12)])
def test_condition_widens_the_right_layers(variant, injection, condition, size):
    model = tiny(variant=variant, injection=injection, conditioning=condition)
    assert model.encoder_head.in_features == FEATURES + (size if variant == "v2" else 0)
    assert model.decoder.dense[0].in_features == 4 + (size if injection == "concat" else 0)
    assert (model.condition_projection is not None) == (injection == "add")
    batch = {"image": torch.rand(3, 3, 16, 16), "label": torch.tensor([0, 5, 23]), "attributes": torch.eye(12)[:3]}
    assert model.reconstruct(batch["image"], model.batch_condition(batch)).shape == (3, 3, 16, 16)
    assert model.losses(batch, sample_latent=True)["loss"].isfinite()


def test_the_condition_changes_the_decoded_image():
    model = tiny(variant="v1", injection="add")
    z = torch.randn(1, 4)
    assert not torch.allclose(model.decode(z, torch.tensor([0])), model.decode(z, torch.tensor([7])))
    # "add" injection: class c moves z by column c of the projection, so class 7 at z is class 0 at the moved z.
    weight = model.condition_projection.weight.detach()
    moved = z + (weight[:, 7] - weight[:, 0])
    torch.testing.assert_close(model.decode(z, torch.tensor([7])), model.decode(moved, torch.tensor([0])), rtol=1e-5, atol=1e-6)


def test_a_dataset_without_the_vocabulary_names_the_condition():
    with pytest.raises(UserError, match="model.conditioning is 'attributes'.*0 attributes"):
        CVAE(DataFacts(image_size=16, class_names=("a", "b")), conditioning="attributes", channels=(8, 16))


def test_condition_from_names():
    model = tiny(conditioning="attributes")
    vector = model.condition_from_names(["red", "cross"], 2)
    assert vector.shape == (2, 12) and vector[0].nonzero().view(-1).tolist() == [0, 9]
    classes = tiny(conditioning="class")
    assert classes.condition_from_names(["blue square"], 3).tolist() == [9, 9, 9]
    with pytest.raises(UserError, match="purple.*red, green"):
        model.condition_from_names(["purple"], 1)
    with pytest.raises(UserError, match="exactly one class"):
        classes.condition_from_names(["red circle", "blue square"], 1)


def test_prompt_maps_words_plurals_and_plus_names(capsys):
    vocabulary = ["black", "white", "small", "tail", "fast", "killer+whale", "Blond_Hair"]
    assert attributes_in_prompt("Small black animals with TAILS", vocabulary) == ["black", "small", "tail"]
    assert attributes_in_prompt("a killer whale with blond hair", vocabulary) == ["killer+whale", "Blond_Hair"]
    with pytest.raises(UserError, match="none of.*black, white"):
        attributes_in_prompt("a purple dragon", vocabulary)
    model = tiny(conditioning="attributes")
    assert model.condition_from_prompt("large red circles", 1)[0].nonzero().view(-1).tolist() == [0, 6, 11]


def test_condition_grid_has_a_row_per_condition():
    model = tiny(conditioning="attributes")
    batch = {"image": torch.rand(4, 3, 16, 16), "attributes": torch.eye(12)[[0, 1, 1, 2]]}
    grid = model.validation_grids(batch, torch.Generator().manual_seed(0))["conditions"]
    assert grid.shape == (3, 1 + 12 * 17, 1 + 8 * 17)  # every one of the 12 attributes alone × 8 fixed z
    classes = tiny(conditioning="class")
    grid = classes.validation_grids(batch, torch.Generator().manual_seed(0))["conditions"]
    assert grid.shape == (3, 1 + 24 * 17, 1 + 4 * 17)  # all 24 classes; 4 columns beyond 12 rows
    # Row r, column c decodes the c-th fixed z with class r: row 5 equals a decode of class 5 alone.
    z = classes.sample_latents(4, torch.Generator().manual_seed(0))
    row = make_grid(classes.decode(z, torch.full((4,), 5)), nrow=4, padding=1)
    assert torch.allclose(grid[:, 5 * 17 : 6 * 17 + 1], row, atol=1e-6)


def test_many_classes_show_a_fixed_evenly_spaced_subset():
    assert shown_conditions(40).tolist() == list(range(40))
    subset = shown_conditions(400).tolist()
    assert len(subset) == 40 and subset[0] == 0 and subset[-1] == 399 and subset == sorted(set(subset))
    assert all(10 <= b - a <= 11 for a, b in zip(subset, subset[1:]))


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> Path:
    """One epoch of a tiny attribute CVAE through the CLI: data facts are linked, not typed."""
    root = tmp_path_factory.mktemp("cvae")
    config = copy.deepcopy(TINY_CONFIG)
    config["model"] = {
        "class_path": "lightning_gen.models.CVAE",
        "init_args": {"variant": "v2", "injection": "add", "conditioning": "attributes", "channels": [8, 16], "latent_dim": 4},
    }
    config["trainer"]["max_epochs"] = 1
    (root / "tiny_cvae.yaml").write_text(yaml.safe_dump(config))
    run_cli("fit", "--config", root / "tiny_cvae.yaml", "--trainer.default_root_dir", root / "runs")
    run = root / "runs" / "tiny_cvae" / "version_0"
    assert (run / "images" / "conditions").is_dir()
    return run / "checkpoints" / "last.ckpt"


def test_checkpoint_round_trips_the_vocabulary(trained_checkpoint):
    model = load_model(trained_checkpoint)
    assert isinstance(model, CVAE) and model.data_facts.attribute_names == FACTS.attribute_names
    assert (model.variant, model.injection, model.conditioning) == ("v2", "add", "attributes")
    assert model.condition_from_names(["cyan"], 1)[0, 5] == 1


def test_sample_by_name_and_by_prompt(trained_checkpoint, tmp_path, capsys):
    def sample(name: str, *condition: str) -> np.ndarray:
        run_cli("sample", "--ckpt_path", trained_checkpoint, "--num", 4, "--out", tmp_path / name, *condition)
        return np.asarray(Image.open(tmp_path / name))

    named = sample("named.png", "--condition", "blue,square")
    prompted = sample("prompt.png", "--prompt", "two big blue squares")
    other = sample("other.png", "--condition", "red,small")
    assert np.array_equal(named, prompted)  # the prompt is understood as blue + square ("big" is no attribute word), same seed
    assert named.shape == other.shape and not np.array_equal(named, other)


def test_unknown_names_exit_2_listing_the_vocabulary(trained_checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("sample", "--ckpt_path", trained_checkpoint, "--out", tmp_path / "x.png", "--condition", "red,furry")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "furry" in err and "magenta" in err
    with pytest.raises(SystemExit) as exit_info:
        run_cli("sample", "--ckpt_path", trained_checkpoint, "--out", tmp_path / "x.png", "--prompt", "a dragon")
    assert exit_info.value.code == 2
    assert "red, green, blue" in capsys.readouterr().err
